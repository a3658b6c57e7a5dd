// The run report as JSON, and back (a resumed job's report includes the
// blocks an earlier process quantized, read from its workdir manifest).
#include "src/pipeline/quantize.h"

namespace streamq {

nlohmann::json BlockReport::to_json() const {
  nlohmann::json jb{{"index", index},
                    {"seconds", seconds},
                    {"seconds_stats", seconds_stats},
                    {"seconds_quantize", seconds_quant},
                    {"seconds_propagate", seconds_propagate}};
  if (activation_raw_bytes > 0) {
    jb["activations_out"] = {{"raw_bytes", activation_raw_bytes},
                             {"compressed_bytes", activation_compressed_bytes},
                             {"ratio", static_cast<double>(activation_raw_bytes) /
                                           static_cast<double>(std::max<uint64_t>(1, activation_compressed_bytes))}};
  }
  jb["linears"] = nlohmann::json::array();
  for (const auto& l : linears)
    jb["linears"].push_back({{"name", l.name},
                             {"shape", {l.out, l.in}},
                             {"seconds", l.seconds},
                             {"seconds_factor", l.seconds_factor},
                             {"seconds_sweep", l.seconds_sweep},
                             {"objective", l.objective},
                             {"output_sq", l.weight_sq},
                             {"relative_objective", l.relative_objective()},
                             {"cholesky_retries", l.cholesky_retries},
                             {"damp", l.damp},
                             {"dead_inputs", l.dead_inputs},
                             {"working_bytes", l.working_bytes}});
  if (learn) jb["learn"] = learn->to_json();
  return jb;
}

double mean_relative_objective(std::span<const BlockReport> blocks) {
  double sum = 0;
  int64_t n = 0;
  for (const BlockReport& b : blocks)
    for (const LinearReport& l : b.linears) {
      sum += l.relative_objective();
      ++n;
    }
  return n ? sum / static_cast<double>(n) : 0.0;
}

BlockReport BlockReport::from_json(const nlohmann::json& jb) {
  BlockReport b;
  b.index = jb.at("index").get<int64_t>();
  b.seconds = jb.at("seconds").get<double>();
  b.seconds_stats = jb.at("seconds_stats").get<double>();
  b.seconds_quant = jb.at("seconds_quantize").get<double>();
  b.seconds_propagate = jb.at("seconds_propagate").get<double>();
  if (jb.contains("activations_out")) {
    b.activation_raw_bytes = jb["activations_out"].at("raw_bytes").get<uint64_t>();
    b.activation_compressed_bytes = jb["activations_out"].at("compressed_bytes").get<uint64_t>();
  }
  for (const auto& jl : jb.at("linears")) {
    LinearReport l;
    l.name = jl.at("name").get<std::string>();
    l.out = jl.at("shape").at(0).get<int64_t>();
    l.in = jl.at("shape").at(1).get<int64_t>();
    l.seconds = jl.at("seconds").get<double>();
    l.seconds_factor = jl.at("seconds_factor").get<double>();
    l.seconds_sweep = jl.at("seconds_sweep").get<double>();
    l.objective = jl.at("objective").get<double>();
    l.weight_sq = jl.at("output_sq").get<double>();
    l.cholesky_retries = jl.at("cholesky_retries").get<int>();
    l.damp = jl.at("damp").get<double>();
    l.dead_inputs = jl.at("dead_inputs").get<int64_t>();
    l.working_bytes = jl.at("working_bytes").get<uint64_t>();
    b.linears.push_back(l);
  }
  if (jb.contains("learn")) b.learn = LearnReport::from_json(jb["learn"]);
  return b;
}

nlohmann::json QuantizeReport::to_json() const {
  nlohmann::json j;
  j["model_dir"] = model_dir;
  j["out_dir"] = out_dir;
  j["method"] = method;
  j["nsamples"] = nsamples;
  j["seqlen"] = seqlen;
  j["seed"] = seed;
  if (!calibration.is_null()) j["calibration"] = calibration;
  if (!settings.is_null()) j["settings"] = settings;
  if (!process.is_null()) j["process"] = process;
  if (!group_inputs.empty()) j["group_inputs"] = group_inputs;
  j["total_seconds"] = total_seconds;
  j["peak_rss_bytes"] = peak_rss_bytes;
  if (!workdir.empty()) {
    j["workdir"] = workdir;
    j["job_id"] = job_id;
    j["resumed_at_block"] = resumed_at_block;
  }
  if (!activations.empty()) j["activations"] = activations;
  if (!flows.empty()) j["flows"] = flows;
  if (!profile.is_null()) j["profile"] = profile;
  if (!gptq_export.is_null()) j["gptq_export"] = gptq_export;
  if (!memory.is_null()) j["memory"] = memory;
  if (!device.is_null()) j["device"] = device;
  j["blocks"] = nlohmann::json::array();
  for (const auto& b : blocks) j["blocks"].push_back(b.to_json());
  return j;
}

QuantizeReport QuantizeReport::from_json(const nlohmann::json& j) {
  QuantizeReport r;
  r.model_dir = j.at("model_dir").get<std::string>();
  r.out_dir = j.at("out_dir").get<std::string>();
  r.method = j.at("method").get<std::string>();
  r.nsamples = j.at("nsamples").get<int64_t>();
  r.seqlen = j.at("seqlen").get<int64_t>();
  r.seed = j.at("seed").get<uint64_t>();
  r.calibration = j.value("calibration", nlohmann::json());
  r.settings = j.value("settings", nlohmann::json());
  r.process = j.value("process", nlohmann::json());
  r.group_inputs = j.value("group_inputs", std::string());
  r.total_seconds = j.at("total_seconds").get<double>();
  r.peak_rss_bytes = j.at("peak_rss_bytes").get<uint64_t>();
  r.workdir = j.value("workdir", "");
  r.job_id = j.value("job_id", "");
  r.resumed_at_block = j.value("resumed_at_block", int64_t{0});
  r.activations = j.value("activations", "");
  r.flows = j.value("flows", std::vector<std::string>{});
  if (j.contains("profile")) r.profile = j["profile"];
  if (j.contains("gptq_export")) r.gptq_export = j["gptq_export"];
  if (j.contains("memory")) r.memory = j["memory"];
  if (j.contains("device")) r.device = j["device"];
  for (const auto& jb : j.at("blocks")) r.blocks.push_back(BlockReport::from_json(jb));
  return r;
}

}  // namespace streamq
