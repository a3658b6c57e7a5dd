// The block loop of `streamq quantize`: a job in a workdir (resumable when the
// user names one), one block at a time, each finished block made durable
// before the manifest says so, the checkpoint assembled at the end.
#include "src/pipeline/quantize.h"

#include <tbb/task_arena.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>

#include "src/core/error.h"
#include "src/core/large_blocks.h"
#include "src/core/kill_point.h"
#include "src/core/sysinfo.h"
#include "io/store/activation_store.h"
#include "io/file/file_hash.h"
#include "io/file/file_util.h"
#include "io/file/io_backend.h"
#include "io/formats/safetensors.h"
#include "kernels/cpu/cpu_ops.h"
#include "src/methods/loaq.h"
#include "src/methods/method.h"
#include "src/methods/quant_config_json.h"
#include "src/model/model.h"
#include "src/model/resident_block.h"
#include "src/job/block_files.h"
#include "src/pipeline/block_stats.h"
#include "src/pipeline/chunk_pass.h"
#include "src/export/compressed_tensors_export.h"
#include "src/export/gguf_export.h"
#include "src/export/gptq_export.h"
#include "src/export/model_source.h"
#include "src/export/quant_output.h"
#include "src/job/output_dir.h"
#include "src/report/profile.h"
#include "src/report/progress.h"
#include "src/pipeline/read_ahead.h"
#include "src/pipeline/rotated_ends.h"
#include "src/pipeline/traced_store.h"
#include "src/pipeline/weight_read_ahead.h"
#include "src/job/workdir.h"
#include "io/store/background_io_options.h"
#include "scheduler/memory_budget.h"
#include "src/pipeline/device_plan.h"
#include "src/pipeline/memory_plan.h"
#include "io/store/mirrored_store.h"
#include "io/store/prefetch_store.h"
#include "scheduler/task_graph.h"
#include "scheduler/trace.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

nlohmann::json act_quant_to_json(const ActQuantConfig& a) {
  return {{"bits", a.bits}, {"sym", a.sym}, {"clip", a.clip}};
}

// Every setting that decides the output, defaults included (whatever filled
// them: a flag, the --preset, the library's default), as the report and the
// checkpoint's metadata record them.
nlohmann::json effective_settings(const QuantizeJob& job, const std::string& arithmetic) {
  nlohmann::json calib{{"nsamples", job.nsamples}, {"seqlen", job.seqlen}, {"seed", job.seed}};
  if (!job.calib_samples_path.empty()) {
    calib["samples"] = job.calib_samples_path;
    calib["select"] = job.calib_select == SampleSelect::Random ? "random" : "first";
    calib["split"] = job.calib_split == TextSplit::Auto ? "auto" : (job.calib_split == TextSplit::Line ? "line" : "paragraph");
  } else if (!job.calib_text_path.empty()) {
    calib["text"] = job.calib_text_path;
  } else {
    calib["tokens"] = job.calib_path;
    calib["tokens_dtype"] = job.tokens_dtype == TokensDType::U16 ? "uint16" : "int32";
  }
  return {{"quantizer", std::string("streamq ") + STREAMQ_VERSION},
          {"preset", job.preset.empty() ? nlohmann::json(nullptr) : nlohmann::json(job.preset)},
          {"method", {{"quant", quant_config_to_json(job.quant)},
                      {"loaq", loaq_config_to_json(job.loaq)},
                      {"act", act_quant_to_json(job.act)},
                      {"kv", act_quant_to_json(job.kv)},
                      {"rotation", job.rotation.to_json()},
                      {"learn", job.learn.to_json()}}},
          {"calibration", calib},
          {"format", to_string(job.format)},
          {"chunk_tokens", job.chunk_tokens},
          {"arithmetic", arithmetic},
          {"blas_kernels", cpu::blas_kernels()}};
}

JobIdentity make_identity(const JobSpec& job, const std::string& model_dir, const CalibrationSet& calib_set,
                          const std::string& calib_name, const std::string& method_text,
                          const std::string& arithmetic) {
  const std::vector<int32_t>& calib = calib_set.ids;
  JobIdentity id;
  id.model = model_files_identity(model_dir);
  id.method = {{"quant", quant_config_to_json(job.quant)}, {"loaq", loaq_config_to_json(job.loaq)}};
  // Only when on: a job without them keeps the identity older manifests hold.
  if (job.act.enabled()) id.method["act"] = act_quant_to_json(job.act);
  if (job.kv.enabled()) id.method["kv"] = act_quant_to_json(job.kv);
  if (job.rotation.enabled()) id.method["rotation"] = job.rotation.to_json();
  if (job.learn.enabled()) id.method["learn"] = job.learn.to_json();
  id.calibration = {{"tokens_xxh64", hex64(XXH64(calib.data(), calib.size() * sizeof(int32_t), 0))},
                    {"nsamples", job.nsamples},
                    {"seqlen", job.seqlen},
                    {"seed", job.seed}};
  if (calib_set.from_samples)  // samples of their own lengths: the lengths are part of the calibration
    id.calibration["lengths_xxh64"] =
        hex64(XXH64(calib_set.lengths.data(), calib_set.lengths.size() * sizeof(int64_t), 0));
  // The BLAS kernel family rounds every GEMM: a job resumed under another
  // would not give the bytes of an uninterrupted run (Workdir::check_identity
  // names the OPENBLAS_CORETYPE that resumes it).
  id.output = {{"chunk_tokens", job.chunk_tokens},
               {"format", to_string(job.format)},
               {"arithmetic", arithmetic},
               {"blas_kernels", cpu::blas_kernels()}};
  id.info = {{"model_dir", fs::absolute(job.model_dir).string()}, {"method", method_text}, {"calibration", calib_name}};
  return id;
}


// The activation store of a job, as the memory plan places it: memory; the
// compressed store (the workdir's own, durable, for a resumable job) behind a
// read-ahead/write-behind stage; or, for a resumable job whose activations
// fit in memory, memory mirrored to that durable store. The loop holds only
// the outermost store: flush, read-ahead and adopt pass down the decorators.
// What decides the arithmetic, hence the bytes, beyond the method: the CPU
// path, or a device and where its sweep ran (frozen in a workdir's manifest:
// a job started on one device resumes only on the same).
std::string arithmetic_of(const Backend& be, const MethodBackends& bk, const QuantConfig& quant,
                          DeviceWeights weights) {
  if (be.host_addressable()) return "cpu";
  return be.name() + (weights == DeviceWeights::Bf16 ? " weights bf16" : "") +
         (bk.factor_on_device ? (bk.factor_precision == FactorPrecision::F32 ? " factor f32" : " factor f64")
                              : " factor host f64") +
         (bk.sweep_on_device(quant) ? std::string(" sweep ") + (bk.precision == SweepPrecision::F32 ? "f32" : "f64")
                                    : std::string(" sweep host f64"));
}

// The report's "device": the backend, its memory, and where each stage ran.
nlohmann::json device_report(Backend& be, const MethodBackends& bk, const QuantConfig& quant, DeviceWeights weights) {
  const bool on_device = !be.host_addressable();
  const uint64_t limit = be.memory().limit();
  return {{"backend", be.name()},
          {"memory_limit_bytes", limit == UINT64_MAX ? nlohmann::json(nullptr) : nlohmann::json(limit)},
          {"forward", be.name()},
          {"weights", on_device ? to_string(weights) : "f32 (host arrays)"},
          {"statistics", on_device ? be.name() + " float32 chunk products, float64 sums on the host"
                                   : std::string("cpu")},
          {"factor", bk.factor_on_device
                         ? be.name() + (bk.factor_precision == FactorPrecision::F32 ? " float32" : " float64")
                         : std::string("host float64")},
          {"sweep", bk.sweep_on_device(quant)
                        ? be.name() + (bk.precision == SweepPrecision::F32 ? " float32" : " float64")
                        : std::string("host float64")},
          {"arithmetic", arithmetic_of(be, bk, quant, weights)}};
}

struct JobStore {
  std::unique_ptr<ActivationStore> top;  // what the loop uses (traced, kill points)
  bool on_disk = false;                  // boundaries are made durable (flushed) after each block
  ReadAheadHint hint;                    // the store's read-ahead (a no-op without a background reader)
  std::string description;
};

JobStore open_store(const QuantizeJob& job, const Workdir& wd, const MemoryPlan& plan, int64_t chunk_floats,
                    MemoryBudget* budget, TraceRecorder* trace) {
  JobStore s;
  std::unique_ptr<ActivationStore> inner;
  // The background I/O thread's limits, whichever store (mirror or read-ahead) runs it.
  BackgroundIoOptions background;
  background.depth = plan.prefetch_depth;
  background.budget = budget;
  background.chunk_bytes = static_cast<uint64_t>(chunk_floats) * sizeof(float);
  background.trace = trace;
  bool io_elsewhere = false;  // a background thread does the disk I/O
  if (plan.placement == Placement::Disk || plan.placement == Placement::MemoryMirrored) {
    CompressedStoreOptions opts;
    opts.dir = wd.acts_dir();
    opts.storage = DType::F32;  // lossless: every placement, and a resumed run, gives identical outputs
    opts.zstd_level = job.zstd_level;
    opts.io = job.io_path;
    opts.keep_files = !job.workdir.empty();  // a resumable job's boundary survives the process
    auto cs = open_compressed_store(opts, job.io_wrap);
    s.on_disk = true;
    const std::string io = cs->io_description();
    if (plan.placement == Placement::MemoryMirrored) {
      inner = std::make_unique<MirroredStore>(std::move(cs), MirrorOptions{background});
      io_elsewhere = true;
      s.description = "memory, mirrored to the workdir (" + io + ", write-behind depth " +
                      std::to_string(plan.prefetch_depth) + ")";
    } else {
      inner = std::move(cs);
      s.description = "disk (" + io + ")";
    }
    if (plan.placement == Placement::Disk && plan.prefetch_depth > 0) {
      inner = std::make_unique<PrefetchStore>(std::move(inner), PrefetchOptions{background});
      io_elsewhere = true;
      s.description += ", read-ahead/write-behind depth " + std::to_string(plan.prefetch_depth);
    }
  } else {
    inner = make_memory_store();
    s.description = "memory";
  }
  // With an asynchronous stage the disk I/O spans are on its own lane; the
  // loop's spans then measure how long compute waited for it (or copied).
  s.top = std::make_unique<TracedStore>(std::move(inner), trace, io_elsewhere);
  s.hint = [top = s.top.get()](int64_t b, Flow f, int64_t c) { return top->prefetch(b, f, c); };
  return s;
}

// The values of a block tensor rotated_block_tensors names: a norm, or
// "<linear>.bias" (W: BlockWeights, const or not).
template <class W>
auto& rotated_tensor(W& w, const std::string& rel) {
  if (rel == "input_layernorm.weight") return w.input_norm;
  if (rel == "post_attention_layernorm.weight") return w.post_norm;
  return w.linears.at(rel.substr(0, rel.size() - std::string(".bias").size())).b;
}

struct JobContext {
  const QuantizeJob& job;
  // be: the device (forwards, statistics' chunk products, the sweep where
  // its op covers the method); host: the float64 method math. The same
  // backend on the CPU device.
  Backend& be;
  Backend& host;
  MethodBackends backends;
  const Model& model;
  const RopeTable& rope;
  const Chunking& ch;
  Method& method;
  // The flows the method reads: the quantized one always, the FP one only
  // when needs.fp_flow (otherwise never run, stored or read).
  const MethodNeeds needs;
  const std::vector<Flow>& flows;
  JobStore& store;
  Workdir& wd;
  TraceRecorder* trace;
  std::ostream* progress;
  int linear_concurrency = 1;  // the memory plan's: linears of a group quantized at once
  // Each group's input computed once and kept (StagedFlows) instead of the
  // block rerun up to every group: same bytes, about a third of the forwards.
  bool staged = false;
  ActivationStore* spill = nullptr;  // staged inputs spilled through this store (null: kept in host memory)
  bool read_ahead_weights = true;  // the next block's weights into the page cache (--prefetch-depth > 0)
  const ModelRotation* rotation = nullptr;  // the job's rotations (never null in run_quantize; off when not asked)
};

// One linear of a sub-layer group in flight: filled by its task, emptied
// when it is written (so at most `linear_concurrency` results are alive).
struct LinearSlot {
  const LinearDesc* desc = nullptr;
  QuantResult result;
  LinearReport report;
};

// Quantizes one linear of the group against the group's shared inputs into
// its slot: result, objectives, timings. Runs as a task beside its group's
// other linears; it only reads shared state (w, stats, prepared) and writes
// its own slot. Backend calls come from several threads
// at once: the CPU backend is stateless (OpenBLAS single-threaded per call).
void quantize_linear(JobContext& c, int64_t b, const BlockWeights& w, const LinearStats& stats,
                     const PreparedInput& prepared, LinearSlot* slot) {
  const LinearDesc& l = *slot->desc;
  const Stopwatch t_lin;
  LinearReport& lr = slot->report;
  lr.name = block_prefix(b) + l.name;
  TraceSpan span(c.trace, "quantize " + l.name, trace_cat::kQuantize);
  span.arg("block", b).arg("linear", lr.name);
  const std::vector<float>& wf = w.linears.at(l.name).w;
  const std::vector<double> wd(wf.begin(), wf.end());
  slot->result = c.method.quantize(c.backends, wd.data(), l.out, l.in, prepared);
  const QuantResult& r = slot->result;
  lr.out = l.out;
  lr.in = l.in;
  lr.objective = layer_objective(c.host, wd.data(), r, stats.xx_sum(), stats.tokens());
  {
    QuantResult zero;  // ||W X||^2: the objective of an all-zero Q (only rows, cols, dequant are read)
    zero.rows = r.rows;
    zero.cols = r.cols;
    zero.dequant.assign(r.dequant.size(), 0.0);
    lr.weight_sq = layer_objective(c.host, wd.data(), zero, stats.xx_sum(), stats.tokens());
  }
  lr.cholesky_retries = r.cholesky_retries;
  lr.damp = r.damp;
  lr.dead_inputs = r.dead_inputs;
  lr.working_bytes = r.working_bytes;
  lr.seconds_sweep = r.seconds_sweep;
  lr.seconds = t_lin.seconds();
}

// What the stages of one block share: its weights (original, and quantized
// as far as the groups have gone), its block file and its report.
struct BlockState {
  BlockState(JobContext& c, int64_t block, BlockWeights weights)
      : b(block),
        w(std::move(weights)),
        wq(w),
        resident_q(c.be, wq, c.job.device_weights),
        file(c.wd.blocks_dir(),
             block_file_plan(c.model.config(), c.model.tensors(), c.job.quant, block, c.rotation->changed_tensors()),
             {{"format", "streamq-block"}, {"streamq", c.job.quant.describe()}}, UINT64_MAX, Workdir::block_base(block)) {
    report.index = block;
    resident_q.set_act_quant(c.job.act, c.job.kv);
    c.rotation->apply_online(resident_q);
    if (c.needs.fp_flow) {
      resident.emplace(c.be, w, c.job.device_weights);
      c.rotation->apply_online(*resident);
    }
    write_rotated_tensors(c);
  }
  // The tensors the rotations changed besides the linears' weights (R1: the
  // norms folded to ones, o_proj/down_proj biases; R2: v_proj's bias): into
  // the block file, so that the output's block holds them.
  void write_rotated_tensors(JobContext& c) {
    for (const std::string& rel : rotated_block_tensors(c.model.config(), c.rotation->changed_tensors())) {
      const std::vector<float>& v = rotated_tensor(w, rel);
      file.write_f32(block_prefix(b) + rel, v.data(), static_cast<int64_t>(v.size()));
    }
  }
  // What the method quantizes: the original block, or its trained weights (--learn).
  const BlockWeights& target() const { return learned ? *learned : w; }
  int64_t b;
  const BlockWeights w;  // the original block: the FP flow's, and what is quantized unless learned
  std::optional<BlockWeights> learned;  // --learn: the trained block (its linears' W')
  BlockWeights wq;       // filled with quantized linears in true-sequential order
  // Where the device's ops read them (uploaded once; on the CPU, views of w
  // and wq): the original only for a method that runs the FP flow.
  // resident_q follows wq linear by linear.
  std::optional<ResidentBlock> resident;
  ResidentBlock resident_q;
  SafetensorsWriter file;
  BlockReport report;
};

// Stage load: block b's weights from the mapped model, rotated when the job
// rotates (the rotated biases rounded to their stored dtype, as the output
// holds them; the norms become ones, exact in any dtype).
BlockWeights load_weights(JobContext& c, int64_t b) {
  TraceSpan span(c.trace, "load weights", trace_cat::kRead);
  span.arg("block", b).arg("bytes", c.model.block_stored_bytes(b));
  BlockWeights w = c.model.load_block(b);
  if (c.rotation->spec().enabled()) {
    TraceSpan rs(c.trace, "rotate block", trace_cat::kQuantize);
    rs.arg("block", b);
    c.rotation->rotate_block(w);
    for (const std::string& rel : rotated_block_tensors(c.model.config(), c.rotation->changed_tensors())) {
      std::vector<float>& v = rotated_tensor(w, rel);  // norms are ones: exact in any dtype
      round_through_dtype(c.model.tensors().info(block_prefix(b) + rel).dtype, v.data(), static_cast<int64_t>(v.size()));
    }
  }
  return w;
}

// Stage learn (--learn): the block's linears trained (block_learning.h) into
// the weights the method then quantizes; the quantized flow's block starts
// from them, the FP flow keeps the original. With CL the next block (FP,
// rotated as it will load) is held beside it.
void learn_stage(JobContext& c, BlockState& s) {
  const ModelConfig& cfg = c.model.config();
  std::optional<BlockWeights> next;
  std::optional<ResidentBlock> next_resident;
  if (c.job.learn.cl_lambda > 0 && s.b + 1 < cfg.layers) {
    next = load_weights(c, s.b + 1);
    next_resident.emplace(c.be, *next);
    c.rotation->apply_online(*next_resident);
  }
  if (!s.resident) throw InternalError("learn: the FP flow's block is not resident");
  const LearnInputs in{c.be,          c.host,            c.model.config(),  c.rope,
                       *c.store.top,  c.ch,              c.job.nsamples,
                       c.job.seqlen,  s.b,               c.job.seed,
                       c.job.quant,   s.resident_q.view(), s.resident->view(),
                       next_resident ? &next_resident->view() : nullptr, c.trace, c.store.hint};
  LearnReport rep;
  s.learned = learn_block(in, c.job.learn, s.w, &rep);
  for (auto& [name, l] : s.wq.linears) {
    l.w = s.learned->linears.at(name).w;
    s.resident_q.replace_weight(name, l.w);
  }
  s.report.learn = rep;
}

// Stage collect stats: the group's input statistics over every chunk (the
// partly quantized block on the quantized flow; the FP flow beside it when
// the method reads it); then the next pass's first chunks start loading.
LinearStats collect_group_stats(JobContext& c, BlockState& s, int g) {
  const SubLayer group = static_cast<SubLayer>(g);
  const Stopwatch t_stats;
  LinearStats stats = collect_stats(c.backends, c.model, StatsWeights{s.w, s.resident ? s.resident->view() : BlockView{}, s.resident_q.view()},
                                    c.rope, *c.store.top, s.b, group, c.ch,
                                    c.job.nsamples, c.job.seqlen, c.needs, c.trace, c.store.hint);
  kill_point(KillPoint::Stats);
  ReadAhead next(c.store.hint, s.b,
                 g + 1 < kNumSubLayers ? ReadAhead::stats_order(c.ch.nchunks, c.needs.fp_flow)
                                       : ReadAhead::propagate_order(c.ch.nchunks, c.needs.fp_flow));
  next.consumed(-1);
  s.report.seconds_stats += t_stats.seconds();
  return stats;
}

// Stage write: one linear's result into the quantized block and the block
// file, its report into the block's, in the fixed linear order.
void write_linear(JobContext& c, BlockState& s, LinearSlot& slot, bool first_of_group) {
  const Stopwatch t_write;
  const QuantResult& r = slot.result;
  LinearReport& lr = slot.report;
  lr.seconds_factor = first_of_group ? r.seconds_factor : 0.0;  // shared: counted once
  if (r.cholesky_retries > 0 && c.progress && first_of_group)
    *c.progress << "warning: " << lr.name << ": Hessian not positive definite; damping raised to " << r.damp
                << " after " << r.cholesky_retries << " retries\n";
  auto& lin_q = s.wq.linears.at(slot.desc->name).w;
  lin_q.assign(r.dequant.begin(), r.dequant.end());
  s.resident_q.replace_weight(slot.desc->name, lin_q);
  s.file.write_f32(lr.name + ".weight", lin_q.data(), static_cast<int64_t>(lin_q.size()));
  write_quant_result(s.file, lr.name, r);
  slot.result = QuantResult{};  // written: free it before the next linear's result arrives
  lr.seconds += t_write.seconds() + lr.seconds_factor;
  s.report.linears.push_back(std::move(lr));
  kill_point(KillPoint::Quantize);
}

void finish_block_file(JobContext& c, BlockState& s) {
  {
    TraceSpan span(c.trace, "write block file", trace_cat::kWrite);
    span.arg("block", s.b);
    s.file.finish();
  }
  kill_point(KillPoint::BlockFile);
}

// Stage propagate: the flows through the whole block into boundary b+1: the
// quantized one through the quantized block, the FP one (when the method
// reads it) through the original. A chunk pass (chunk_pass.h): the next
// chunk's read and upload and the last one's download and write overlap
// this one's forward.
void propagate(JobContext& c, const BlockState& s) {
  const QuantizeJob& job = c.job;
  const int64_t b = s.b;
  const bool fp_flow = c.needs.fp_flow;
  ActivationStore& store = *c.store.top;
  auto ahead = std::make_shared<ReadAhead>(c.store.hint, b, ReadAhead::propagate_order(c.ch.nchunks, fp_flow));
  const int64_t per_chunk = fp_flow ? 2 : 1;
  std::vector<ChunkPassItem> items;
  for (int64_t ck = 0; ck < c.ch.nchunks; ++ck) {
    const int64_t nseq = c.ch.seqs(ck, job.nsamples);
    const std::vector<int64_t> lens = c.ch.lens(ck);  // samples of their own lengths; empty: nseq x seqlen
    const int64_t floats = c.ch.tokens(ck, job.nsamples, job.seqlen) * c.model.config().hidden;
    for (const Flow flow : {Flow::Quant, Flow::Fp}) {
      if (flow == Flow::Fp && !fp_flow) continue;
      const ResidentBlock& bw = flow == Flow::Quant ? s.resident_q : *s.resident;
      const int64_t order = per_chunk * ck + (flow == Flow::Fp ? 1 : 0);
      ChunkPassItem item;
      item.floats = floats;
      item.read = [&store, ahead, b, flow, ck, order](std::span<float> x) {
        store.get_into(b, flow, ck, x);
        ahead->consumed(order);
      };
      item.compute = [&c, &job, &bw, b, ck, nseq, lens, flow](float* x) {
        TraceSpan span(c.trace, flow == Flow::Quant ? "forward quant" : "forward fp", trace_cat::kForward);
        span.arg("block", b).arg("chunk", ck);
        if (lens.empty()) block_forward(c.be, c.model.config(), bw.view(), c.rope, x, nseq, job.seqlen);
        else block_forward(c.be, c.model.config(), bw.view(), c.rope, x, lens);
      };
      item.write = [&store, b, flow, ck](std::span<const float> x) {
        store.put(b + 1, flow, ck, x.data(), static_cast<int64_t>(x.size()));
      };
      items.push_back(std::move(item));
    }
  }
  run_chunk_pass(c.be, std::move(items), {.slots = kPropagateSlots, .what = "propagate: activation chunk"});
}

// Boundary b+1 durable on disk (before the manifest names it; run_quantize
// commits the block), with its stored sizes in the report.
void flush_boundary(JobContext& c, BlockState& s) {
  if (!c.store.on_disk) return;
  TraceSpan span(c.trace, "flush activations", trace_cat::kWait);
  span.arg("block", s.b + 1);
  c.store.top->flush();
  const StoreStats st = c.store.top->stats(s.b + 1);
  s.report.activation_raw_bytes = st.raw_bytes;
  s.report.activation_compressed_bytes = st.compressed_bytes;
  kill_point(KillPoint::Flush);
}

// Block b as a task graph (scheduler/task_graph.h), its order and overlap
// declared here in one place:
//
//   load -> [learn] -> per sub-layer group, true-sequential (as block_forward
//   reads): stats -> factor -> the group's linears' sweeps (up to
//   linear_concurrency at once, each result held until written) -> their
//   writes, in linear order -> { block file || propagate } -> flush
//
// The stats and propagate stages are chunk passes, graphs of their own
// (chunk_pass.h). The block file's footer and fsync overlap the propagation.
// Outputs never depend on the overlap: every stage reads what its
// predecessors finished, and the writes run in a fixed order. Load and learn
// run before the graph (nothing is ready to overlap them); the next block's
// weights come into the page cache on a thread of their own
// (WeightReadAhead), whose blocking reads would otherwise take a compute
// worker. run_quantize commits the block to the manifest after it returns.
BlockReport quantize_block(JobContext& c, int64_t b) {
  // First, so released last: a block's freed buffers (its sweep's, its
  // rotation's) are not held into the next block or the checkpoint's writing
  // (large_blocks.h).
  const LargeBlockStage block_stage;
  const Stopwatch block_time;
  BlockState s(c, b, load_weights(c, b));
  WeightReadAhead next_weights(c.model, c.read_ahead_weights ? b + 1 : -1, c.trace);
  if (c.job.learn.enabled()) learn_stage(c, s);
  std::optional<StagedFlows> staged;
  if (c.staged)
    staged.emplace(c.backends, c.model, c.rope, c.ch, c.job.nsamples, c.job.seqlen, c.needs.fp_flow, c.spill);
  // The views follow the weights: resident_q's is updated as each linear is written.
  const BlockView no_original;
  const StatsWeights views{s.w, s.resident ? s.resident->view() : no_original, s.resident_q.view()};

  // Per group: its statistics, its prepared input (one factorization shared
  // by the group's linears; likewise LoaQ's statistics), its linears' slots.
  struct GroupWork {
    std::optional<LinearStats> stats;
    std::unique_ptr<PreparedInput> prepared;
    std::vector<LinearSlot> slots;
    Stopwatch quant_clock;
  };
  std::vector<GroupWork> groups(kNumSubLayers);
  const auto linears = block_linears(c.model.config());
  for (const auto& l : linears) groups[static_cast<size_t>(l.group)].slots.push_back({&l, {}, {}});

  using TaskId = TaskGraph::TaskId;
  TaskGraph graph;
  // Sweeps in flight bound the live working sets (the memory plan counts
  // linear_concurrency of them): each is held from its sweep to its write.
  const auto working_sets =
      graph.resource("linear working sets", static_cast<uint64_t>(std::max(c.linear_concurrency, 1)));
  auto after = [](std::initializer_list<TaskId> ids) {
    std::vector<TaskId> out;
    for (const TaskId id : ids)
      if (id >= 0) out.push_back(id);
    return out;
  };
  TaskId last_write = -1;
  for (int g = 0; g < kNumSubLayers; ++g) {
    GroupWork& gw = groups[static_cast<size_t>(g)];
    const SubLayer group = static_cast<SubLayer>(g);
    const TaskId stats = graph.add({std::string("stats ") + to_string(group), trace_cat::kStats, ""}, [&, g, group] {
      GroupWork& w = groups[static_cast<size_t>(g)];
      if (!staged) {
        w.stats.emplace(collect_group_stats(c, s, g));
        return;
      }
      const Stopwatch t_stats;
      w.stats.emplace(staged->collect(views, *c.store.top, b, group, c.needs, c.trace));
      kill_point(KillPoint::Stats);
      s.report.seconds_stats += t_stats.seconds();
    }, after({last_write}));
    const TaskId factor = graph.add({std::string("factor ") + to_string(group), trace_cat::kQuantize, ""}, [&, g, group] {
      GroupWork& w = groups[static_cast<size_t>(g)];
      w.quant_clock = Stopwatch();
      TraceSpan span(c.trace, std::string("factor ") + to_string(group), trace_cat::kQuantize);
      span.arg("block", b).arg("n", w.stats->in_features());
      w.prepared = c.method.prepare(c.backends, *w.stats);
    }, {stats});
    TaskId prev = -1;
    for (size_t i = 0; i < gw.slots.size(); ++i) {
      const std::string& name = gw.slots[i].desc->name;
      const TaskId sweep = graph.add({"sweep " + name, trace_cat::kQuantize, ""}, [&, g, i] {
        GroupWork& w = groups[static_cast<size_t>(g)];
        quantize_linear(c, b, s.target(), *w.stats, *w.prepared, &w.slots[i]);
      }, {factor});
      const TaskId write = graph.add({"write " + name, trace_cat::kWrite, ""}, [&, g, i] {
        GroupWork& w = groups[static_cast<size_t>(g)];
        write_linear(c, s, w.slots[i], i == 0);
        if (i + 1 == w.slots.size()) {  // the group is done: its n x n matrices go
          s.report.seconds_quant += w.quant_clock.seconds();
          w.prepared.reset();
          w.stats.reset();
        }
      }, after({sweep, prev}));
      graph.hold(sweep, write, {working_sets, 1});
      prev = write;
    }
    last_write = prev;
  }
  graph.add({"write block file", trace_cat::kWrite, ""}, [&] { finish_block_file(c, s); }, {last_write});
  graph.add({"propagate", trace_cat::kForward, ""}, [&] {
    const Stopwatch t_prop;
    if (staged) staged->propagate(views, *c.store.top, b, c.trace);
    else propagate(c, s);
    // Block b's mapped pages are read for the last time: drop them so the job
    // holds about one block of the mapped model (the memory plan counts one).
    c.model.release_block(b);
    s.report.seconds_propagate = t_prop.seconds();
  }, {last_write});
  graph.run();
  const Stopwatch t_flush;
  next_weights.join();
  flush_boundary(c, s);
  s.report.seconds_propagate += t_flush.seconds();
  s.report.seconds = block_time.seconds();
  return std::move(s.report);
}

// Block 0's input: the embeddings, identical in every flow. Rotated: the
// rotated embedding's rows as the output stores them (rotated_ends.h's
// values, rounded to the embedding's dtype).
void write_first_boundary(const Model& model, const ModelRotation& rotation, const std::vector<int32_t>& calib,
                          const Chunking& ch, const QuantizeJob& job, const std::vector<Flow>& flows,
                          JobStore& store) {
  std::vector<float> x;
  const DType embed_dtype = model.tensors().info("model.embed_tokens.weight").dtype;
  for (int64_t c = 0; c < ch.nchunks; ++c) {
    const int64_t tokens = ch.tokens(c, job.nsamples, job.seqlen);
    x.resize(static_cast<size_t>(tokens * model.config().hidden));
    model.embed(calib.data() + ch.first_token(c, job.seqlen), tokens, x.data());
    if (rotation.residual()) {
      rotation.rotate_rows(x.data(), tokens);
      round_through_dtype(embed_dtype, x.data(), static_cast<int64_t>(x.size()));
    }
    for (const Flow f : flows) store.top->put(0, f, c, x.data(), static_cast<int64_t>(x.size()));
  }
  store.top->flush();
}

// A workdir boundary written by a streamq that stored the FP flow for every
// method: chunks this job never reads, removed so they do not outlive it.
void remove_unread_flow(const Workdir& wd, int64_t block, int64_t nchunks, const MethodNeeds& needs) {
  if (needs.fp_flow) return;
  std::error_code ec;
  for (int64_t c = 0; c < nchunks; ++c) fs::remove(compressed_chunk_path(wd.acts_dir(), block, Flow::Fp, c), ec);
}

// The output of a finished job that is already in place: its report.
bool finished_output(const Workdir& wd, const std::string& out, QuantizeReport* report) {
  const std::string path = out + "/streamq_report.json";
  if (!wd.has_job() || !wd.finished() || !fs::exists(path)) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(read_file(path));
    if (j.value("job_id", "") != wd.job_id()) return false;
    *report = QuantizeReport::from_json(j);
  } catch (const std::exception&) {
    return false;
  }
  report->already_complete = true;
  return true;
}

}  // namespace

const char* to_string(OutputFormat f) {
  switch (f) {
    case OutputFormat::Fake: return "fake";
    case OutputFormat::Gptq: return "gptq";
    case OutputFormat::CompressedTensors: return "compressed-tensors";
    case OutputFormat::Gguf: return "gguf";
  }
  return "?";
}

OutputFormat parse_output_format(const std::string& s) {
  for (const OutputFormat f : {OutputFormat::Fake, OutputFormat::Gptq, OutputFormat::CompressedTensors,
                               OutputFormat::Gguf})
    if (s == to_string(f)) return f;
  throw InputError("--format '" + s + "': expected fake, gptq, compressed-tensors or gguf");
}

QuantizeReport run_quantize(const QuantizeJob& job, Backend& be, std::ostream* progress) {
  const Stopwatch total;
  const ProcessTimes times_at_start = process_times();
  const uint64_t baseline_rss = peak_rss_bytes();  // binary, libraries, thread pools
  job.quant.validate();
  job.act.validate("--abits");
  job.kv.validate("--kv-bits");
  if ((job.act.enabled() || job.kv.enabled()) && !be.host_addressable())
    throw InputError("activation/KV quantization (--abits, --kv-bits) runs on --device cpu only so far; the " +
                     be.name() + " device has no such op yet");
  job.learn.validate();
  if (job.learn.enabled() && !job.calib_samples_path.empty())
    throw InputError("--learn sde needs calibration sequences of one length (--calib or --calib-text windows), "
                     "not --calib-samples");
  if (job.activations == Placement::MemoryMirrored)
    throw InternalError("quantize: memory-mirrored is the plan's placement for a workdir job, not a request");
  if (job.format == OutputFormat::CompressedTensors && job.quant.bits != 2 && job.quant.bits != 4 && job.quant.bits != 8)
    throw InputError("--bits " + std::to_string(job.quant.bits) +
                     ": --format compressed-tensors holds 2, 4 or 8 bits (docs/compressed-tensors-format.md)");
  if (job.format == OutputFormat::CompressedTensors && job.quant.free_min)
    throw InputError("--format compressed-tensors stores integer zero points, not a free-min grid");
  if (job.format == OutputFormat::Gguf) {  // the GGUF type follows from the grid (the CLI applies --gguf-type)
    const GgufQuantType t = gguf_type_of(job.quant);
    const std::string conflict = gguf_grid_conflict(t, job.quant);
    if (!conflict.empty()) throw InputError(conflict + " conflicts with --format gguf --gguf-type " + to_string(t));
  }
  if (job.rotation.online() && job.format != OutputFormat::Fake)
    throw InputError(std::string("--online-hadamard with --format ") + to_string(job.format) +
                     ": no stock loader of that format applies the online Hadamards to down_proj's and o_proj's "
                     "inputs, so the checkpoint would compute wrong outputs there; use --format fake (streamq eval "
                     "applies them), "
                     "or --rotate alone (an offline rotation any loader serves)");
  const MethodSpec spec(job.quant, job.loaq);
  const auto method = make_method(spec);
  // --learn trains against the FP flow: run and stored whatever the method reads.
  const MethodNeeds needs = [&] {
    MethodNeeds n = method->needs();
    n.fp_flow = n.fp_flow || job.learn.enabled();
    return n;
  }();
  const std::vector<Flow> flows = needs.fp_flow ? kAllFlows : std::vector<Flow>{Flow::Quant};
  const std::string out_parent = fs::absolute(job.out_dir).parent_path().string();
  const ModelSource source(job.model_dir, out_parent, progress);
  Model model(source.dir());
  const ModelConfig& cfg = model.config();
  const SafetensorsModel& st = model.tensors();
  if (!cfg.rotation.empty() && job.rotation.enabled())
    throw InputError("--rotate/--online-hadamard: " + job.model_dir + " is already rotated (config.json " +
                     kRotationConfigKey + "); quantize the unrotated model");
  // The matrices are built (and a size with no Hadamard refused) before
  // anything is written.
  const ModelRotation rotation(be, cfg, job.rotation, job.model_dir);

  // Calibration: samples of their own lengths (--calib-samples), or windows
  // of seqlen drawn from a token stream (--calib, --calib-text).
  std::vector<int32_t> stream;
  CalibrationSet calib_set;
  const std::string calib_name = !job.calib_samples_path.empty() ? job.calib_samples_path
                                 : job.calib_text_path.empty()    ? job.calib_path
                                                                  : job.calib_text_path;
  if (!job.calib_samples_path.empty()) {
    calib_set = load_calibration_samples(job.calib_samples_path, source.dir(),
                                         {job.nsamples, job.seqlen, job.seed, job.calib_select, job.calib_split},
                                         cfg.vocab);
  } else {
    stream = load_token_stream(job.calib_path, job.tokens_dtype, job.calib_text_path, source.dir(), cfg.vocab);
    calib_set = windows_calibration_set(sample_windows(stream, job.nsamples, job.seqlen, job.seed, calib_name),
                                        job.seqlen);
  }
  const std::vector<int32_t>& calib = calib_set.ids;
  if (progress && calib_set.from_samples)
    *progress << "quantize: calibration: " << calib_set.sequences() << " samples of " << calib_set.samples_available
              << " in " << calib_name << ", " << calib_set.tokens() << " tokens, " << calib_set.truncated
              << " truncated to --seqlen " << job.seqlen << "\n";
  const std::string method_desc = spec.describe();
  // A device that is not the host gets a CPU backend beside it for the
  // float64 method math.
  std::unique_ptr<Backend> own_host;
  if (!be.host_addressable()) own_host = make_cpu_backend();
  Backend& host = own_host ? *own_host : be;
  MethodBackends backends{host, be, job.sweep_precision};
  backends.factor_precision = job.factor_precision;

  // The memory plan for a chunk size: placement, chunking and I/O depth under
  // --host-mem-limit. A resumable job keeps its activations in its workdir.
  auto plan_for = [&](int64_t chunk_tokens, MemoryPlanInput::Spill spill = MemoryPlanInput::Spill::None,
                      uint64_t spilled_bytes = 0, Placement placement = Placement::Auto) {
    MemoryPlanInput in;
    in.spill = spill;
    in.spilled_bytes = spilled_bytes;
    in.model = cfg;
    in.nsamples = job.nsamples;
    in.seqlen = job.seqlen;
    in.chunk_tokens = chunk_tokens;
    in.prefetch_depth = job.prefetch_depth;
    in.quant = job.quant;
    in.loaq = job.loaq.enabled;
    in.fp_stats = needs.fp_flow;
    in.flows_stored = static_cast<int>(flows.size());
    in.placement = placement == Placement::Auto ? job.activations : placement;
    in.mirror_to_workdir = !job.workdir.empty();  // in memory, each boundary also durable in the workdir
    in.threads = tbb::this_task_arena::max_concurrency();
    in.baseline_bytes = baseline_rss;
    // One block's mapped pages at a time (released after each block), plus
    // the tensors outside the blocks, which embedding and assembly touch.
    uint64_t blocks_bytes = 0;
    for (int64_t b = 0; b < cfg.layers; ++b) {
      const uint64_t bytes = model.block_stored_bytes(b);
      in.mapped_block_bytes = std::max(in.mapped_block_bytes, bytes);
      blocks_bytes += bytes;
    }
    in.mapped_other_bytes = st.total_bytes() - blocks_bytes;
    in.linear_concurrency = job.linear_concurrency;
    in.calib_stream_tokens = static_cast<int64_t>(stream.size());
    in.host_limit = job.host_mem_limit;
    in.pinned_staging = !be.host_addressable();
    in.learn = job.learn;
    return plan_memory(in);
  };
  MemoryPlan plan;
  // On a device, its plan too: it may lower the chunk the host plan chose
  // (a fresh job), and it refuses a --gpu-mem-limit too small before
  // anything is written.
  std::optional<DevicePlan> device_plan;
  auto device_plan_input = [&] {
    DevicePlanInput di;
    di.model = cfg;
    di.seqlen = job.seqlen;
    di.fp_flow = needs.fp_flow;
    di.output_terms = needs.residual || needs.token_scales;
    di.sweep_on_device = backends.sweep_on_device(job.quant);
    di.factor_on_device = backends.factor_on_device;
    di.factor_bytes_per_element = backends.factor_precision == FactorPrecision::F32 ? 4 : 8;
    di.p1 = job.quant.method == MethodKind::Gptaq;
    di.p2 = job.quant.cae;
    di.group = job.quant.group;
    di.weights_bf16 = job.device_weights == DeviceWeights::Bf16;
    di.limit = be.memory().limit();
    di.staged_spill = !job.recompute_group_inputs;  // a device spills its group inputs unless told not to
    di.learn = job.learn.enabled();
    di.learn_batch_seqs = job.learn.batch_seqs;
    di.learn_next_block = job.learn.cl_lambda > 0;
    return di;
  };
  // The factor goes to the device when its n x n buffers fit there beside the
  // weights (decided before the identity, which records it).
  if (!be.host_addressable() && job.quant.method != MethodKind::Rtn)
    backends.factor_on_device = device_factor_fits(device_plan_input());
  auto plan_device = [&](int64_t seqs_per_chunk, bool resumed) {
    if (be.host_addressable()) return;
    DevicePlanInput di = device_plan_input();
    di.max_seqs_per_chunk = seqs_per_chunk;
    di.linear_concurrency = plan.linear_concurrency;
    di.resumed = resumed;
    device_plan = plan_device_memory(di);
    if (!resumed && device_plan->seqs_per_chunk < plan.seqs_per_chunk)
      plan = plan_for(device_plan->seqs_per_chunk * job.seqlen);
  };

  // The workdir first: a finished job's output may already be in place.
  std::unique_ptr<Workdir> wd;
  std::unique_ptr<OutputDir> out;
  if (!job.workdir.empty()) {
    wd = std::make_unique<Workdir>(job.workdir, job.restart, true);
    const JobIdentity id = make_identity(job, source.dir(), calib_set, calib_name, method_desc,
                                         arithmetic_of(be, backends, job.quant, job.device_weights));
    if (wd->has_job()) {
      wd->check_identity(id);
      QuantizeReport done;
      if (finished_output(*wd, job.out_dir, &done)) {
        if (progress) *progress << "quantize: the job in " << job.workdir << " is complete; output at " << job.out_dir << "\n";
        return done;
      }
      wd->verify_block_files();
      // Its chunks are on disk already cut: keep them, whatever the plan prefers.
      const JobLayout stored = wd->layout();
      plan = plan_for(stored.seqs_per_chunk * job.seqlen);
      plan_device(stored.seqs_per_chunk, true);
      if (plan.seqs_per_chunk != stored.seqs_per_chunk && progress)
        *progress << "quantize: note: the job was started with " << stored.seqs_per_chunk
                  << " sequences per chunk; the memory plan would now pick " << plan.seqs_per_chunk
                  << "; keeping " << stored.seqs_per_chunk << " (a resumed job cannot re-cut its chunks)\n";
      if (progress && wd->completed_blocks() > 0)
        *progress << "quantize: resuming the job in " << job.workdir << " after block " << wd->completed_blocks()
                  << "/" << cfg.layers << "\n";
    } else {
      plan = plan_for(job.chunk_tokens);
      plan_device(plan.seqs_per_chunk, false);
      wd->begin(id, {cfg.layers, job.nsamples, job.seqlen, plan.seqs_per_chunk, plan.nchunks});
    }
    if (!wd->discarded_job_id().empty())
      OutputDir::remove_abandoned_staging(job.out_dir, "job-" + wd->discarded_job_id());
    out = std::make_unique<OutputDir>(job.out_dir, job.overwrite, "job-" + wd->job_id());
  } else {
    plan = plan_for(job.chunk_tokens);
    plan_device(plan.seqs_per_chunk, false);
    out = std::make_unique<OutputDir>(job.out_dir, job.overwrite);
    wd = std::make_unique<Workdir>(out->staging_path() + "/.work", false, false);
    wd->begin({}, {cfg.layers, job.nsamples, job.seqlen, plan.seqs_per_chunk, plan.nchunks});
  }
  const JobLayout layout = wd->layout();
  const Chunking ch{layout.seqs_per_chunk, layout.nchunks,
                    calib_set.uniform(job.seqlen) ? std::vector<int64_t>{} : calib_set.lengths};
  // The device holds the RoPE tables for the whole job.
  const ResidentRope rope(be, model.rope_table(job.seqlen));

  std::unique_ptr<TraceRecorder> trace;
  if (!job.trace_path.empty()) trace = std::make_unique<TraceRecorder>();
  // The device's own lane in the trace, detached before the trace goes.
  be.set_trace(trace.get());
  struct DetachTrace {
    Backend& be;
    ~DetachTrace() { be.set_trace(nullptr); }
  } detach_trace{be};
  // Where each group's input is kept for staged statistics (StagedFlows),
  // faster than the recompute path, which reruns the block up to every group
  // one chunk at a time (bench/bench_group_inputs.sh on SmolLM2: kept, 0.56x
  // its time; spilled to disk, 0.85x):
  //  - kept in host memory (StagedFlows::bytes_needed) on a host-addressable
  //    backend whose activations are in memory, where the plan's peak plus
  //    those bytes fits --host-mem-limit;
  //  - else spilled through a store of their own, like any chunk, at the
  //    plan's chunking and placement: a device's into host memory where
  //    that fits (the chunk passes upload and download them), else to disk,
  //    compressed and lossless (measured against recomputing: RESULTS.md);
  //  - else, or with --recompute-group-inputs, recomputed.
  const uint64_t kept_bytes = StagedFlows::bytes_needed(cfg, calib_set.tokens(), needs.fp_flow);
  const uint64_t spilled_bytes = StagedFlows::spilled_bytes(cfg, calib_set.tokens(), needs.fp_flow);
  const bool limited = job.host_mem_limit != UINT64_MAX;
  auto fits_host = [&](uint64_t bytes) { return !limited || bytes <= job.host_mem_limit; };
  using Spill = MemoryPlanInput::Spill;
  enum class GroupInputs { Kept, Spilled, Recomputed } group_inputs = GroupInputs::Recomputed;
  Spill spill = Spill::None;
  std::string recompute_reason;
  if (job.recompute_group_inputs) {
    recompute_reason = "--recompute-group-inputs";
  } else if (be.host_addressable() && plan.placement != Placement::Disk && fits_host(plan.peak_bytes + kept_bytes)) {
    group_inputs = GroupInputs::Kept;
  } else {
    // The same chunking and placement (the output bytes and the job's
    // layout do not change), with the spilled passes' buffers.
    auto spilled_plan = [&](Spill sp) -> std::optional<MemoryPlan> {
      // (a workdir job's memory placement is asked as memory: the plan mirrors it)
      const Placement same = plan.placement == Placement::Disk ? Placement::Disk : Placement::Memory;
      MemoryPlan p = plan_for(plan.seqs_per_chunk * job.seqlen, sp, spilled_bytes, same);
      if (p.seqs_per_chunk != plan.seqs_per_chunk || p.placement != plan.placement || !fits_host(p.peak_bytes))
        return std::nullopt;
      return p;
    };
    for (const Spill sp : {Spill::Memory, Spill::Disk}) {
      if (sp == Spill::Memory && (be.host_addressable() || plan.placement == Placement::Disk)) continue;
      if (auto p = spilled_plan(sp)) {
        plan = *p;
        spill = sp;
        group_inputs = GroupInputs::Spilled;
        break;
      }
    }
    if (group_inputs != GroupInputs::Spilled)
      recompute_reason = "spilling them would pass --host-mem-limit at this chunking";
  }
  if (group_inputs == GroupInputs::Kept) plan.add_part("group inputs kept (staged statistics)", kept_bytes);
  MemoryBudget budget(job.host_mem_limit);
  JobStore store = open_store(job, *wd, plan, ch.seqs_per_chunk * job.seqlen * cfg.hidden, &budget, trace.get());
  // The spill store: never part of a resumed job (a block restarts from its
  // boundary), so whatever an earlier process left there goes first,
  // whether or not this one spills.
  const std::string spill_dir = wd->dir() + "/group-inputs";
  {
    std::error_code ec;
    std::filesystem::remove_all(spill_dir, ec);
  }
  std::unique_ptr<ActivationStore> spill_store;
  std::string spill_description;
  if (spill == Spill::Memory) {
    spill_store = std::make_unique<TracedStore>(make_memory_store(), trace.get());
    spill_description = "spilled to host memory (" + memory_size_text(spilled_bytes) + " at most)";
  } else if (spill == Spill::Disk) {
    CompressedStoreOptions opts;
    opts.dir = spill_dir;
    opts.storage = DType::F32;  // lossless: the same bytes as keeping them
    opts.zstd_level = job.zstd_level;
    opts.io = job.io_path;
    opts.slabs = kSpillStoreSlabs;
    auto cs = open_compressed_store(opts, job.io_wrap);
    spill_description = "spilled to disk (" + cs->io_description() + ", float32 zstd)";
    spill_store = std::make_unique<TracedStore>(std::move(cs), trace.get());
  }
  if (progress && job.host_mem_limit != UINT64_MAX) *progress << plan.describe() << "\n";
  if (progress && device_plan) *progress << device_plan->describe();

  QuantizeReport report;
  report.model_dir = job.model_dir;
  report.out_dir = job.out_dir;
  report.method = method_desc;
  report.nsamples = job.nsamples;
  report.seqlen = job.seqlen;
  report.seed = job.seed;
  report.calibration = calib_set.to_json();
  report.settings = effective_settings(job, arithmetic_of(be, backends, job.quant, job.device_weights));
  report.activations = store.description;
  report.device = device_report(be, backends, job.quant, job.device_weights);
  if (device_plan) {
    report.device["seqs_per_chunk"] = device_plan->seqs_per_chunk;
    report.device["predicted_peak_bytes"] = device_plan->peak_bytes;
    report.device["predicted_peak_phase"] = device_plan->peak_phase;
  }
  for (const Flow f : flows) report.flows.push_back(to_string(f));
  switch (group_inputs) {
    case GroupInputs::Kept:
      report.group_inputs = "staged: each group's input computed once and kept (" + memory_size_text(kept_bytes) + ")";
      break;
    case GroupInputs::Spilled:
      report.group_inputs = "staged: each group's input computed once and " + spill_description;
      break;
    case GroupInputs::Recomputed:
      report.group_inputs = "recomputed: the block rerun up to each group, one chunk at a time (" + recompute_reason + ")";
      break;
  }
  report.memory_text = plan.describe();
  report.memory = {{"host_limit_bytes", job.host_mem_limit == UINT64_MAX ? nlohmann::json(nullptr)
                                                                          : nlohmann::json(job.host_mem_limit)},
                   {"placement", to_string(plan.placement)},
                   {"seqs_per_chunk", ch.seqs_per_chunk},
                   {"prefetch_depth", plan.prefetch_depth},
                   {"linear_concurrency", plan.linear_concurrency},
                   {"estimated_peak_bytes", plan.peak_bytes},
                   {"estimated_peak_phase", plan.peak_phase}};
  if (!job.workdir.empty()) {
    report.workdir = job.workdir;
    report.job_id = wd->job_id();
    report.resumed_at_block = wd->completed_blocks();
  }
  for (const auto& jb : wd->block_reports()) report.blocks.push_back(BlockReport::from_json(jb));

  const int64_t first = wd->completed_blocks();
  if (first < cfg.layers) {
    if (wd->boundary_ready()) {
      store.top->adopt(first, ch.nchunks, flows);  // read from disk; memory (if mirrored) takes over from the next boundary
      remove_unread_flow(*wd, first, ch.nchunks, needs);
    } else {
      const LargeBlockStage first_boundary_stage;  // the rotated panels' and the embedding's buffers end here
      std::vector<std::string> boundary_files;
      if (rotation.residual()) {
        TraceSpan span(trace.get(), "rotate embedding and head", trace_cat::kWrite);
        write_rotated_ends(model, rotation, wd->dir(), {{"format", "streamq-rotated-ends"}});
        boundary_files.push_back(kRotatedEndsFile);
      }
      write_first_boundary(model, rotation, calib, ch, job, flows, store);
      wd->boundary_written(boundary_files);
    }
  }
  Progress prog(progress, "quantize", cfg.layers, first);
  JobContext ctx{job, be, host, backends, model, rope.table(), ch, *method, needs, flows, store, *wd, trace.get(),
                 progress};
  ctx.linear_concurrency = plan.linear_concurrency;
  ctx.read_ahead_weights = job.prefetch_depth > 0;
  ctx.staged = group_inputs != GroupInputs::Recomputed;
  ctx.spill = spill_store.get();
  ctx.rotation = &rotation;
  for (int64_t b = first; b < cfg.layers; ++b) {
    BlockReport br = quantize_block(ctx, b);
    wd->commit_block(b, br.to_json(), br.seconds);
    store.top->drop(b);
    kill_point(KillPoint::Drop);
    report.blocks.push_back(std::move(br));
    char extra[200];
    const BlockReport& last = report.blocks.back();
    if (last.learn)  // the training's loss, first step (RTN fake-quant) to its last epoch's mean
      std::snprintf(extra, sizeof extra, "learn loss %.3e -> %.3e (%lld steps, %.1f s; svd %.1f s, grids %.1f s)  rel-err %.3e  rss %.0f MiB",
                    last.learn->loss_first, last.learn->loss_last_epoch, static_cast<long long>(last.learn->steps),
                    last.learn->seconds, last.learn->seconds_svd, last.learn->seconds_grid, mean_relative_objective(std::span(report.blocks).last(1)),
                    peak_rss_bytes() / 1048576.0);
    else
      std::snprintf(extra, sizeof extra, "rel-err %.3e  rss %.0f MiB",
                    mean_relative_objective(std::span(report.blocks).last(1)), peak_rss_bytes() / 1048576.0);
    prog.step(extra);
  }
  if (spill_store) {  // every block dropped what it spilled: the empty directory goes too
    spill_store.reset();
    std::error_code ec;
    std::filesystem::remove(spill_dir, ec);
  }
  store.top.reset();

  // The checkpoint, from the block files and the source's other tensors: a
  // stage whose peak is mapped file pages, with no kept buffers beside them.
  const LargeBlockStage checkpoint_stage;
  const std::string tmp = out->staging_path();
  // A GPTQ export is packed from the fake-quant checkpoint, assembled beside it.
  // Packed formats (gptq, compressed-tensors) are packed from it.
  const bool gptq = job.format == OutputFormat::Gptq || job.format == OutputFormat::CompressedTensors;
  const std::string fq_dir = gptq ? tmp + "/.fakequant" : tmp;
  if (gptq) make_dirs(fq_dir);
  {
    TraceSpan span(trace.get(), "write checkpoint", trace_cat::kWrite);
    AssembleInput in;
    in.cfg = &cfg;
    in.source = &st;
    in.quant = job.quant;
    in.block_path = [&](int64_t b) { return wd->block_path(b); };
    if (rotation.residual()) in.ends_path = wd->dir() + "/" + kRotatedEndsFile;
    const std::string settings = report.settings.dump();
    in.fq_metadata = {{"format", "pt"}, {"streamq", job.quant.describe()}, {kSettingsMetadataKey, settings}};
    in.qr_metadata = {{"format", "streamq-quant"},
                      {"streamq", job.quant.describe()},
                      {"quant_config", quant_config_to_json(job.quant).dump()},
                      {kSettingsMetadataKey, settings}};
    const bool sharded_input = fs::exists(source.dir() + "/model.safetensors.index.json");
    in.max_shard_bytes = sharded_input ? (5ull << 30) : UINT64_MAX;
    in.on_tensor = [&] { kill_point(KillPoint::Assemble); };
    assemble_checkpoint(in, fq_dir);
  }
  out->copy_side_files(source.dir());
  if (job.rotation.enabled()) {  // the outputs hold the rotated weights: say so, and untie a rotated tied head
    nlohmann::json config = nlohmann::json::parse(read_file(tmp + "/config.json"));
    config[kRotationConfigKey] = job.rotation.to_json();
    if (rotation.residual() && cfg.tie_word_embeddings) config["tie_word_embeddings"] = false;
    atomic_write_file(tmp + "/config.json", config.dump(2) + "\n");
  }
  if (gptq) {
    TraceSpan span(trace.get(), "write GPTQ checkpoint", trace_cat::kWrite);
    atomic_write_file(fq_dir + "/config.json", read_file(tmp + "/config.json"));
    if (job.format == OutputFormat::CompressedTensors) {
      report.gptq_export = write_compressed_tensors_checkpoint(fq_dir, tmp, {}, progress).to_json();
    } else {
      GptqExportOptions opts;
      opts.format = job.quant.checkpoint_format;
      const GptqExportReport ex = write_gptq_checkpoint(fq_dir, tmp, opts, progress);
      report.gptq_export = ex.to_json();
    }
    fs::remove_all(fq_dir);
  }
  if (job.format == OutputFormat::Gguf) {  // <out>/model.gguf beside the fake-quant output it is made from
    TraceSpan span(trace.get(), "write GGUF", trace_cat::kWrite);
    GgufExportOptions go;
    go.type = gguf_type_of(job.quant);
    export_gguf(tmp, tmp + "/model.gguf", go, progress);
  }
  report.device["high_water_bytes"] = be.memory().high_water();
  report.device["pinned_high_water_bytes"] = be.pinned_memory().high_water();
  report.total_seconds = total.seconds();
  report.peak_rss_bytes = peak_rss_bytes();
  const ProcessTimes used = process_times() - times_at_start;
  const LargeBlockCounts large = large_block_counts();
  report.process = {{"user_seconds", used.user_seconds},
                    // src/core/large_blocks.h: buffers of a MiB and more served from freed ones
                    // (no page faults) against fresh pages, over the process's life
                    {"large_blocks_reused", large.reused},
                    {"large_blocks_fresh", large.fresh},
                    {"system_seconds", used.system_seconds},
                    {"minor_page_faults", used.minor_faults},
                    {"major_page_faults", used.major_faults},
                    {"cpu_per_wall", report.total_seconds > 0
                                         ? (used.user_seconds + used.system_seconds) / report.total_seconds
                                         : 0.0}};
  report.memory["measured_peak_rss_bytes"] = report.peak_rss_bytes;
  if (trace) {
    trace->set_other("command", "streamq quantize");
    trace->set_other("method", job.quant.describe());
    const ProfileSummary summary = analyze_trace(trace->to_json(), job.trace_path);
    report.profile = summary_to_json(summary);
    report.profile_text = format_summary(summary);
    trace->write(job.trace_path);
  }
  if (job.workdir.empty()) {
    wd.reset();
    fs::remove_all(tmp + "/.work");
  }
  atomic_write_file(tmp + "/streamq_report.json", report.to_json().dump(1) + "\n");
  if (wd) wd->mark_finished(fs::absolute(job.out_dir).string());
  kill_point(KillPoint::Commit);
  out->commit();
  if (!job.report_path.empty()) atomic_write_file(job.report_path, report.to_json().dump(1) + "\n");
  return report;
}

}  // namespace streamq
