// The block loop of `streamq quantize`.
#include "pipeline/quantize.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>

#include "core/error.h"
#include "core/sysinfo.h"
#include "io/activation_store.h"
#include "io/io_backend.h"
#include "io/file_util.h"
#include "io/safetensors.h"
#include "methods/loaq.h"
#include "methods/method.h"
#include "methods/quant_config_json.h"
#include "model/model.h"
#include "pipeline/model_source.h"
#include "pipeline/output_dir.h"
#include "pipeline/profile.h"
#include "pipeline/progress.h"
#include "pipeline/traced_store.h"
#include "scheduler/trace.h"

namespace streamq {
namespace {

struct Chunking {
  int64_t seqs_per_chunk, nchunks;
  int64_t seqs(int64_t c, int64_t total) const { return std::min(seqs_per_chunk, total - c * seqs_per_chunk); }
};

// Collects one sub-layer group's input statistics over all chunks of the
// quantized flow, running the partly quantized block up to that group.
// With `fp_flow`, also the cross term against the FP flow's input of the same
// group: the original block run on the FP-flow chunk (token-aligned). With
// LoaQ on an output projection (o_proj, down_proj), both flows' tokens are
// first rescaled (loaq.norm) and the residual-stream term is accumulated too.
LinearStats collect_stats(Backend& be, const Model& model, const BlockWeights& w, const BlockWeights& wq,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, bool fp_flow,
                          const LoaqConfig& loaq, TraceRecorder* trace) {
  const ModelConfig& cfg = model.config();
  const int64_t in = sublayer_in_features(cfg, group), hidden = cfg.hidden;
  const bool out_proj = loaq.enabled && (group == SubLayer::O || group == SubLayer::Down);
  const Linear* w_out = nullptr;
  if (out_proj) w_out = &w.linears.at(group == SubLayer::O ? "self_attn.o_proj" : "mlp.down_proj");
  LinearStats stats(in);
  std::vector<float> x, x_fp, in_fp, res_fp, in_q, res_q;
  auto grab = [&](std::vector<float>* dst_in, std::vector<float>* dst_res) {
    return [&, dst_in, dst_res](SubLayer s, const float* input, const float* residual, int64_t tokens,
                                int64_t width) {
      if (s != group) return;
      dst_in->assign(input, input + tokens * width);
      if (out_proj) dst_res->assign(residual, residual + tokens * hidden);
    };
  };
  for (int64_t c = 0; c < ch.nchunks; ++c) {
    const int64_t nseq = ch.seqs(c, nsamples), tokens = nseq * seqlen;
    TraceSpan span(trace, std::string("stats ") + to_string(group), trace_cat::kStats);
    span.arg("block", block).arg("chunk", c).arg("tokens", tokens);
    if (fp_flow) {
      store.get(block, Flow::Fp, c, &x_fp);
      block_forward(be, cfg, w, rope, x_fp.data(), nseq, seqlen, grab(&in_fp, &res_fp), static_cast<int>(group));
    }
    store.get(block, Flow::Quant, c, &x);
    block_forward(be, cfg, wq, rope, x.data(), nseq, seqlen, grab(&in_q, &res_q), static_cast<int>(group));
    if (!out_proj) {
      if (fp_flow) stats.accumulate(be, in_q.data(), in_fp.data(), tokens, nseq);
      else stats.accumulate(be, in_q.data(), tokens, nseq);
      continue;
    }
    // Per-token scales of the sub-layer outputs h + W x (original W), or 1.
    std::vector<float> s_fp(tokens, 1.0f), s_q(tokens, 1.0f);
    if (loaq.norm) {
      std::vector<float> y(static_cast<size_t>(tokens * hidden));
      be.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, in_fp.data(), in, w_out->w.data(), in, 0.0f, y.data(),
              hidden);
      if (!w_out->b.empty()) be.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(res_fp.data(), y.data(), tokens, hidden, cfg.rms_eps, s_fp.data());
      be.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, in_q.data(), in, w_out->w.data(), in, 0.0f, y.data(),
              hidden);
      if (!w_out->b.empty()) be.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(res_q.data(), y.data(), tokens, hidden, cfg.rms_eps, s_q.data());
    }
    std::vector<float> r(static_cast<size_t>(tokens * hidden));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < in; ++i) {
        in_fp[t * in + i] *= s_fp[t];
        in_q[t * in + i] *= s_q[t];
      }
      for (int64_t o = 0; o < hidden; ++o) r[t * hidden + o] = s_fp[t] * res_fp[t * hidden + o] - s_q[t] * res_q[t * hidden + o];
    }
    stats.accumulate(be, in_q.data(), in_fp.data(), tokens, nseq);
    stats.accumulate_residual(be, r.data(), in_q.data(), tokens, hidden);
  }
  return stats;
}

std::vector<TensorSpec> quant_results_plan(const ModelConfig& cfg, const QuantConfig& q) {
  std::vector<TensorSpec> plan;
  for (int64_t b = 0; b < cfg.layers; ++b) {
    for (const auto& l : block_linears(cfg)) {
      const std::string p = block_prefix(b) + l.name;
      const int64_t ngroups = q.group > 0 ? (l.in + q.group - 1) / q.group : 1;
      plan.push_back({p + ".codes", DType::U8, {l.out, l.in}});
      plan.push_back({p + ".scales", DType::F32, {ngroups, l.out}});
      plan.push_back({p + ".zeros", DType::F32, {ngroups, l.out}});
      plan.push_back({p + ".g_idx", DType::I32, {l.in}});
    }
  }
  return plan;
}

void write_quant_result(SafetensorsWriter& w, const std::string& p, const QuantResult& r) {
  w.write(p + ".codes", r.codes.data(), r.codes.size());
  std::vector<float> f(r.scales.begin(), r.scales.end());
  w.write_f32(p + ".scales", f.data(), static_cast<int64_t>(f.size()));
  f.assign(r.zeros.begin(), r.zeros.end());
  w.write_f32(p + ".zeros", f.data(), static_cast<int64_t>(f.size()));
  w.write(p + ".g_idx", r.g_idx.data(), r.g_idx.size() * sizeof(int32_t));
}

void copy_raw(SafetensorsWriter& w, const SafetensorsModel& st, const std::string& name) {
  const TensorInfo& t = st.info(name);
  w.write(name, st.file_of(name).data(t), t.nbytes);
}

}  // namespace

QuantizeReport run_quantize(const QuantizeJob& job, Backend& be, std::ostream* progress) {
  const Stopwatch total;
  job.quant.validate();
  const auto method = make_method(job.quant);
  const std::string out_parent = std::filesystem::absolute(job.out_dir).parent_path().string();
  const ModelSource source(job.model_dir, out_parent, progress);
  Model model(source.dir());
  const ModelConfig& cfg = model.config();
  const SafetensorsModel& st = model.tensors();

  const std::vector<int32_t> stream =
      load_token_stream(job.calib_path, job.tokens_dtype, job.calib_text_path, source.dir(), cfg.vocab);
  const std::string calib_name = job.calib_text_path.empty() ? job.calib_path : job.calib_text_path;
  const std::vector<int32_t> calib = sample_windows(stream, job.nsamples, job.seqlen, job.seed, calib_name);
  const int64_t spc = std::max<int64_t>(1, job.chunk_tokens / job.seqlen);
  const Chunking ch{spc, (job.nsamples + spc - 1) / spc};
  const RopeTable rope = model.rope_table(job.seqlen);

  OutputDir out(job.out_dir, job.overwrite);
  const std::string tmp = out.staging_path();
  std::unique_ptr<TraceRecorder> trace;
  if (!job.trace_path.empty()) trace = std::make_unique<TraceRecorder>();
  std::unique_ptr<ActivationStore> inner_store;
  if (job.disk_store) {
    CompressedStoreOptions opts;
    opts.dir = tmp + "/.activations";
    opts.storage = DType::F32;  // lossless: memory and disk placements give identical outputs
    opts.zstd_level = job.zstd_level;
    opts.io = parse_io_path(job.io_path);
    inner_store = make_compressed_store(opts);
  } else {
    inner_store = make_memory_store();
  }
  std::unique_ptr<ActivationStore> store = std::make_unique<TracedStore>(std::move(inner_store), trace.get());

  // The fake-quant checkpoint mirrors the input's tensors, names and dtypes.
  std::vector<TensorSpec> plan;
  for (const auto& name : st.tensor_names()) {
    const TensorInfo& t = st.info(name);
    plan.push_back({name, t.dtype, t.shape});
  }
  const bool sharded_input = std::filesystem::exists(source.dir() + "/model.safetensors.index.json");
  SafetensorsWriter fq(tmp, plan, {{"format", "pt"}, {"streamq", job.quant.describe()}},
                       sharded_input ? (5ull << 30) : UINT64_MAX);
  SafetensorsWriter qr(tmp, quant_results_plan(cfg, job.quant),
                       {{"format", "streamq-quant"},
                        {"streamq", job.quant.describe()},
                        {"quant_config", quant_config_to_json(job.quant).dump()}}, UINT64_MAX,
                       "streamq_quant");
  std::vector<std::string> block_tensors;
  for (const auto& name : st.tensor_names())
    if (name.rfind("model.layers.", 0) != 0) copy_raw(fq, st, name);

  // Block 0's input: the embeddings, identical in both flows.
  {
    std::vector<float> x;
    for (int64_t c = 0; c < ch.nchunks; ++c) {
      const int64_t nseq = ch.seqs(c, job.nsamples);
      x.resize(static_cast<size_t>(nseq * job.seqlen * cfg.hidden));
      model.embed(calib.data() + c * spc * job.seqlen, nseq * job.seqlen, x.data());
      store->put(0, Flow::Fp, c, x.data(), static_cast<int64_t>(x.size()));
      store->put(0, Flow::Quant, c, x.data(), static_cast<int64_t>(x.size()));
    }
  }

  QuantizeReport report;
  report.model_dir = job.model_dir;
  report.out_dir = job.out_dir;
  report.method = job.quant.describe();
  if (job.loaq.enabled)
    report.method += " loaq(alpha=" + std::to_string(job.loaq.alpha) + ", beta=" + std::to_string(job.loaq.beta) +
                     (job.loaq.norm ? ", norm)" : ")");
  report.nsamples = job.nsamples;
  report.seqlen = job.seqlen;
  report.seed = job.seed;
  Progress prog(progress, "quantize", cfg.layers);

  for (int64_t b = 0; b < cfg.layers; ++b) {
    const Stopwatch block_time;
    BlockReport br;
    br.index = b;
    const BlockWeights w = model.load_block(b);
    BlockWeights wq = w;  // filled with quantized linears in true-sequential order
    const auto linears = block_linears(cfg);
    for (int g = 0; g < kNumSubLayers; ++g) {
      const SubLayer group = static_cast<SubLayer>(g);
      const Stopwatch t_stats;
      const LinearStats stats = collect_stats(be, model, w, wq, rope, *store, b, group, ch, job.nsamples, job.seqlen,
                                                job.quant.needs_fp_flow() || job.loaq.enabled, job.loaq,
                                                trace.get());
      br.seconds_stats += t_stats.seconds();
      const Stopwatch t_quant;
      // One factorization per shared input, reused by each linear of the group.
      const std::unique_ptr<PreparedInput> prepared = method->prepare(be, stats);
      bool first_of_group = true;
      for (const auto& l : linears) {
        if (l.group != group) continue;
        const Stopwatch t_lin;
        const std::string name = block_prefix(b) + l.name;
        TraceSpan span(trace.get(), "quantize " + l.name, trace_cat::kQuantize);
        span.arg("block", b).arg("linear", name);
        const std::vector<float>& wf = w.linears.at(l.name).w;
        const std::vector<double> wd(wf.begin(), wf.end());
        std::vector<double> target;
        if (job.loaq.enabled) {
          const std::vector<double> d1 = stats.cross(), e = stats.has_residual() ? stats.residual() : std::vector<double>{};
          target = loaq_target(be, wd.data(), l.out, l.in, stats.hessian(), &d1, e.empty() ? nullptr : &e,
                               job.loaq.alpha, job.loaq.beta, job.quant.percdamp);
        }
        const QuantResult r = method->quantize(be, target.empty() ? wd.data() : target.data(), l.out, l.in, *prepared);
        LinearReport lr;
        lr.name = name;
        lr.out = l.out;
        lr.in = l.in;
        lr.objective = layer_objective(be, wd.data(), r, stats.xx_sum(), stats.tokens());
        {
          QuantResult zero = r;  // ||W X||^2: the objective of an all-zero Q
          std::fill(zero.dequant.begin(), zero.dequant.end(), 0.0);
          lr.weight_sq = layer_objective(be, wd.data(), zero, stats.xx_sum(), stats.tokens());
        }
        lr.cholesky_retries = r.cholesky_retries;
        lr.damp = r.damp;
        lr.dead_inputs = r.dead_inputs;
        lr.working_bytes = r.working_bytes;
        lr.seconds_factor = first_of_group ? r.seconds_factor : 0.0;  // shared: counted once
        lr.seconds_sweep = r.seconds_sweep;
        if (r.cholesky_retries > 0 && progress && first_of_group)
          *progress << "warning: " << name << ": Hessian not positive definite; damping raised to " << r.damp
                    << " after " << r.cholesky_retries << " retries\n";
        auto& lin_q = wq.linears.at(l.name).w;
        lin_q.assign(r.dequant.begin(), r.dequant.end());
        fq.write_f32(name + ".weight", lin_q.data(), static_cast<int64_t>(lin_q.size()));
        write_quant_result(qr, name, r);
        lr.seconds = t_lin.seconds() + lr.seconds_factor;
        first_of_group = false;
        br.linears.push_back(lr);
      }
      br.seconds_quant += t_quant.seconds();
    }
    // Both flows through the whole block: the quantized one through the
    // quantized block, the FP one through the original.
    const Stopwatch t_prop;
    std::vector<float> x;
    for (int64_t c = 0; c < ch.nchunks; ++c) {
      const int64_t nseq = ch.seqs(c, job.nsamples);
      store->get(b, Flow::Quant, c, &x);
      {
        TraceSpan span(trace.get(), "forward quant", trace_cat::kForward);
        span.arg("block", b).arg("chunk", c);
        block_forward(be, cfg, wq, rope, x.data(), nseq, job.seqlen);
      }
      store->put(b + 1, Flow::Quant, c, x.data(), static_cast<int64_t>(x.size()));
      store->get(b, Flow::Fp, c, &x);
      {
        TraceSpan span(trace.get(), "forward fp", trace_cat::kForward);
        span.arg("block", b).arg("chunk", c);
        block_forward(be, cfg, w, rope, x.data(), nseq, job.seqlen);
      }
      store->put(b + 1, Flow::Fp, c, x.data(), static_cast<int64_t>(x.size()));
    }
    store->drop(b);
    br.seconds_propagate = t_prop.seconds();
    for (const auto& name : st.tensor_names()) {
      if (name.rfind(block_prefix(b), 0) != 0) continue;
      bool is_linear_weight = false;
      for (const auto& l : linears) is_linear_weight |= name == block_prefix(b) + l.name + ".weight";
      if (!is_linear_weight) copy_raw(fq, st, name);
    }
    br.seconds = block_time.seconds();
    double rel = 0;
    for (const auto& lr : br.linears) rel += lr.weight_sq > 0 ? lr.objective / lr.weight_sq : 0;
    rel /= static_cast<double>(br.linears.size());
    char extra[96];
    std::snprintf(extra, sizeof extra, "rel-err %.3e  rss %.0f MiB", rel, peak_rss_bytes() / 1048576.0);
    prog.step(extra);
    report.blocks.push_back(std::move(br));
  }
  store.reset();
  {
    TraceSpan span(trace.get(), "write checkpoint", trace_cat::kWrite);
    fq.finish();
    qr.finish();
  }
  out.copy_side_files(source.dir());
  report.total_seconds = total.seconds();
  report.peak_rss_bytes = peak_rss_bytes();
  if (trace) {
    trace->set_other("command", "streamq quantize");
    trace->set_other("method", job.quant.describe());
    const ProfileSummary summary = analyze_trace(trace->to_json(), job.trace_path);
    report.profile = summary_to_json(summary);
    report.profile_text = format_summary(summary);
    trace->write(job.trace_path);
  }
  atomic_write_file(tmp + "/streamq_report.json", report.to_json().dump(1) + "\n");
  out.commit();
  if (!job.report_path.empty()) atomic_write_file(job.report_path, report.to_json().dump(1) + "\n");
  return report;
}

nlohmann::json QuantizeReport::to_json() const {
  nlohmann::json j;
  j["model_dir"] = model_dir;
  j["out_dir"] = out_dir;
  j["method"] = method;
  j["nsamples"] = nsamples;
  j["seqlen"] = seqlen;
  j["seed"] = seed;
  j["total_seconds"] = total_seconds;
  j["peak_rss_bytes"] = peak_rss_bytes;
  if (!profile.is_null()) j["profile"] = profile;
  j["blocks"] = nlohmann::json::array();
  for (const auto& b : blocks) {
    nlohmann::json jb{{"index", b.index},
                      {"seconds", b.seconds},
                      {"seconds_stats", b.seconds_stats},
                      {"seconds_quantize", b.seconds_quant},
                      {"seconds_propagate", b.seconds_propagate}};
    jb["linears"] = nlohmann::json::array();
    for (const auto& l : b.linears)
      jb["linears"].push_back({{"name", l.name},
                               {"shape", {l.out, l.in}},
                               {"seconds", l.seconds},
                               {"seconds_factor", l.seconds_factor},
                               {"seconds_sweep", l.seconds_sweep},
                               {"objective", l.objective},
                               {"output_sq", l.weight_sq},
                               {"relative_objective", l.weight_sq > 0 ? l.objective / l.weight_sq : 0.0},
                               {"cholesky_retries", l.cholesky_retries},
                               {"damp", l.damp},
                               {"dead_inputs", l.dead_inputs},
                               {"working_bytes", l.working_bytes}});
    j["blocks"].push_back(jb);
  }
  return j;
}

}  // namespace streamq
