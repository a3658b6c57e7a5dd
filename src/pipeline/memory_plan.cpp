// The memory model of a quantization job, phase by phase, from the
// allocations the pipeline, the stats and the methods actually make.
//
// Calibrated against measured peak RSS: see MEASUREMENTS at the end of this file.
#include "src/pipeline/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "src/core/error.h"
#include "src/model/architecture.h"
#include "src/pipeline/chunk_pass.h"

namespace streamq {

const char* to_string(Placement p) {
  switch (p) {
    case Placement::Auto: return "auto";
    case Placement::Memory: return "memory";
    case Placement::Disk: return "disk";
    case Placement::MemoryMirrored: return "memory-mirrored";
  }
  return "?";
}

namespace {

using u64 = uint64_t;
using Parts = std::vector<std::pair<std::string, u64>>;

// Query rows per attention task (kernels/cpu/attention.cpp kTileRows): a
// worker's scores are kTileRows x seqlen floats, plus key/value panels.
constexpr u64 kAttentionTileRows = 64;
// Memory the allocator holds beyond what is live: freed blocks below the
// mmap threshold (fixed at kPlanMmapThresholdBytes at start-up) stay in the
// heap, and OpenBLAS/TBB touch per-thread buffers on first use. Measured (end
// of file): the live-byte sum alone underestimated by up to 12%; these cover
// that with room.
constexpr double kAllocatorSlack = 0.15;
constexpr u64 kPerThreadRuntimeBytes = 8ull << 20;
// A zstd level-1 compression context for a 1 MiB frame with its window, and
// a decompression context (measured with ZSTD_sizeof_CCtx: about 1.2 MiB).
constexpr u64 kZstdContextsBytes = 2ull << 20;

u64 f32(u64 n) { return 4 * n; }
u64 f64(u64 n) { return 8 * n; }

// Bytes of one block's float32 weights (linears, biases, norms).
u64 block_weight_bytes(const ModelConfig& c) {
  u64 n = 0;
  for (const auto& l : block_linears(c)) n += static_cast<u64>(l.out) * (l.in + (l.has_bias ? 1 : 0));
  n += 2 * static_cast<u64>(c.hidden);
  if (c.qk_norm) n += 2 * static_cast<u64>(c.head_dim);
  return f32(n);
}

// block_forward's buffers for a chunk of t tokens, at its widest point (the
// attention with q, k, v, out and the workers' score tiles, or the MLP with
// gate and up while h and the attention output are still alive).
u64 forward_scratch_bytes(const ModelConfig& c, u64 t, u64 seqlen, int threads) {
  const u64 d = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim, inter = c.intermediate;
  const u64 tile = kAttentionTileRows * seqlen + c.head_dim * (3 * kAttentionTileRows + 32);
  const u64 attention = f32(t * (d + 2 * qd + 2 * kvd) + static_cast<u64>(std::max(threads, 1)) * tile);
  const u64 mlp = f32(t * (d + qd + 2 * inter));
  return std::max(attention, mlp);
}

struct GroupShape {
  SubLayer group;
  u64 n = 0;                          // shared input width
  std::vector<std::pair<std::string, u64>> linears;  // name, out
};

std::vector<GroupShape> group_shapes(const ModelConfig& c) {
  std::vector<GroupShape> gs;
  for (int g = 0; g < kNumSubLayers; ++g) {
    GroupShape s;
    s.group = static_cast<SubLayer>(g);
    s.n = static_cast<u64>(sublayer_in_features(c, s.group));
    for (const auto& l : block_linears(c))
      if (l.group == s.group) s.linears.push_back({l.name, static_cast<u64>(l.out)});
    gs.push_back(std::move(s));
  }
  return gs;
}

bool out_projection(SubLayer g) { return g == SubLayer::O || g == SubLayer::Down; }

// LinearStats of a group across its accumulation: X^T X in float64, the float
// product of a chunk, the cross term and its difference buffer, LoaQ's
// residual term and its product.
u64 stats_bytes(const MemoryPlanInput& in, const GroupShape& g, u64 tokens) {
  const u64 n = g.n, hidden = in.model.hidden;
  u64 b = f64(n * n) + f32(n * n);
  if (in.fp_stats) b += f64(n * n) + f32(tokens * n);
  if (in.loaq && out_projection(g.group)) b += f64(hidden * n) + f32(hidden * n);
  return b;
}

// Method::prepare at its peak: the scaled copies stats.hessian() and
// cross(), factor_hessian's working copy, the factor, D1 and D2, the P
// matrices and compensation_matrix's temporary, two-stage's kept H and cross.
// Returns {peak during prepare, what stays for the linears}.
std::pair<u64, u64> prepare_bytes(const QuantConfig& q, bool fp_stats, u64 n) {
  if (q.method == MethodKind::Rtn) {
    const u64 kept = q.two_stage() ? f64(n * n) * (fp_stats ? 2 : 1) : 0;
    return {2 * kept, kept};
  }
  const u64 nn = f64(n * n);
  const bool gptaq = q.method == MethodKind::Gptaq;
  const bool d1 = gptaq || (q.cae && q.cae_source == CaeSource::Xfx);
  u64 kept = nn;  // U
  if (gptaq) kept += nn;
  if (q.cae) kept += nn;
  if (q.two_stage()) kept += nn * (fp_stats ? 2 : 1);
  u64 temps = nn + (fp_stats ? nn : 0) + nn;  // hessian(), cross(), h copy
  if (d1) temps += nn;
  if (q.cae) temps += nn;        // D2
  if (gptaq || q.cae) temps += nn;  // compensation_matrix's T
  return {kept + temps, kept};
}

// LoaQ's inputs, computed once per group and read by each of its linears:
// the scaled H and dX X^T, and on an output projection the residual term E.
u64 loaq_group_bytes(const MemoryPlanInput& in, SubLayer group, u64 hidden, u64 n) {
  if (!in.loaq) return 0;
  return f64(2 * n * n) + (out_projection(group) ? f64(hidden * n) : 0);
}

// One linear's quantization on top of the prepared input, as one task of
// quantize_block holds it: its float64 W (and LoaQ's target, whose
// computation holds M, the damped H and M L^-T), the sweep's W, W0,
// processing-order results, two-stage's target and the per-block panels, the
// result; then the objective's zeroed dequant and layer_objective's two m x n.
u64 linear_bytes(const MemoryPlanInput& in, u64 m, u64 n) {
  const QuantConfig& q = in.quant;
  const u64 mn = m * n;
  u64 caller = f64(mn);  // wd
  if (in.loaq) caller += f64(mn);  // the target
  const u64 loaq_temps = in.loaq ? f64(2 * mn + n * n) : 0;
  const u64 result = f64(mn) + mn;  // dequant + codes
  u64 sweep = result;
  if (q.method != MethodKind::Rtn) {
    sweep += f64(mn) + f64(mn) + mn;  // w, qp, codes_p
    if (q.cae || q.p1_original) sweep += f64(mn);
    const u64 panels = 1 + (q.method == MethodKind::Gptaq ? 1 : 0) + (q.cae ? 1 : 0);
    sweep += f64(m * static_cast<u64>(q.blocksize) * panels);
  }
  if (q.two_stage()) sweep += f64(mn);
  const u64 objective = result + f64(3 * mn);
  return caller + std::max({sweep, objective, loaq_temps});
}

void add(Parts* p, const std::string& name, u64 bytes) {
  if (bytes > 0) p->push_back({name, bytes});
}

u64 sum(const Parts& p) {
  u64 s = 0;
  for (const auto& [name, b] : p) s += b;
  return s;
}

}  // namespace

int max_group_linears(const ModelConfig& model) {
  int most = 1;
  for (const GroupShape& g : group_shapes(model)) most = std::max(most, static_cast<int>(g.linears.size()));
  return most;
}

MemoryPlan estimate_memory(const MemoryPlanInput& in, Placement placement, int64_t seqs_per_chunk, int depth,
                           int linear_concurrency) {
  if (placement == Placement::Auto) throw InternalError("estimate_memory: placement must not be auto");
  const ModelConfig& c = in.model;
  const u64 seqlen = static_cast<u64>(in.seqlen), hidden = static_cast<u64>(c.hidden);
  const u64 spc = static_cast<u64>(std::clamp<int64_t>(seqs_per_chunk, 1, std::max<int64_t>(in.nsamples, 1)));
  const u64 tokens = spc * seqlen;
  const u64 chunk = f32(tokens * hidden);
  const u64 boundary = f32(static_cast<u64>(in.nsamples) * seqlen * hidden) * static_cast<u64>(in.flows_stored);
  const bool disk = placement == Placement::Disk;
  // The mirror holds what memory holds and, beside it, runs the disk
  // placement's compressed store and write-behind queue.
  const bool store_on_disk = disk || placement == Placement::MemoryMirrored;
  const int threads = std::max(in.threads, 1);
  const int concurrency = std::clamp(linear_concurrency, 1, max_group_linears(c));

  Parts fixed;
  add(&fixed, "baseline (before the job)", in.baseline_bytes);
  add(&fixed, "runtime buffers (BLAS, TBB, per thread)", kPerThreadRuntimeBytes * static_cast<u64>(threads));
  add(&fixed, "mapped model pages (one block, embeddings, head)", in.mapped_block_bytes + in.mapped_other_bytes);
  add(&fixed, "calibration tokens", 4 * static_cast<u64>(in.calib_stream_tokens) +
                                        4 * static_cast<u64>(in.nsamples) * seqlen);
  if (in.learn.enabled())
    add(&fixed, "block weights (fp32 original + trained + quantized copy)", 3 * block_weight_bytes(c));
  else
    add(&fixed, "block weights (fp32 original + quantized copy)", 2 * block_weight_bytes(c));
  if (store_on_disk) {
    const u64 frames = static_cast<u64>(std::clamp(2 * threads, 2, 16));
    const u64 codecs = depth > 0 ? 2 : 1;  // the I/O thread's and a direct get's
    const u64 codec = frames * (3 * f32(in.store.frame_elems) + kZstdContextsBytes);
    add(&fixed, "compressed-store buffers (slabs + codec frames)",
        static_cast<u64>(in.store.slabs) * in.store.slab_bytes + codecs * codec);
    add(&fixed,
        disk ? "chunks in flight (read-ahead + write-behind)"
             : "chunks in flight (workdir write-behind + read-ahead)",
        2 * static_cast<u64>(depth) * chunk);
  }
  const bool spilled = in.spill != MemoryPlanInput::Spill::None;
  if (in.spill == MemoryPlanInput::Spill::Disk) {  // its own slabs and one codec (its calls are synchronous)
    const u64 frames = static_cast<u64>(std::clamp(2 * threads, 2, 16));
    add(&fixed, "spilled group inputs' compressed store (slabs + codec frames)",
        static_cast<u64>(kSpillStoreSlabs) * in.store.slab_bytes + frames * (3 * f32(in.store.frame_elems) + kZstdContextsBytes));
  }
  if (in.spill == MemoryPlanInput::Spill::Memory) add(&fixed, "group inputs spilled to memory", in.spilled_bytes);
  const u64 scratch = forward_scratch_bytes(c, tokens, seqlen, threads);

  MemoryPlan best;
  Parts worst;
  u64 worst_sum = 0;
  auto consider = [&](const std::string& phase, const Parts& phase_parts) {
    Parts p = fixed;
    p.insert(p.end(), phase_parts.begin(), phase_parts.end());
    const u64 s = sum(p);
    if (s >= worst_sum) {
      worst_sum = s;
      worst = std::move(p);
      best.peak_phase = phase;
    }
  };
  const u64 flows_in_stats = in.fp_stats ? 2 : 1;
  u64 n_prev = 0;  // the previous group's input width (a spilled pass reads it)
  for (const GroupShape& g : group_shapes(c)) {
    const u64 st = stats_bytes(in, g, tokens);
    if (spilled) {  // a spilled pass: slots of x and the wider input, the stage's input and output
      Parts p;
      add(&p, "activations held (boundary b)", disk ? 0 : boundary);
      const u64 slots = flows_in_stats * kStatsSlots * f32(tokens * (hidden + std::max(n_prev, g.n)));
      add(&p, in.pinned_staging ? "spilled chunk slots (pinned staging)" : "spilled chunk slots", slots);
      u64 bufs = in.pinned_staging ? 0 : f32(tokens * (n_prev + g.n));
      if (in.loaq && out_projection(g.group)) bufs += f32(tokens * hidden) * (flows_in_stats + 3);
      add(&p, "the stage's input and output", bufs);
      add(&p, "forward scratch", scratch);
      add(&p, "stats matrices", st);
      consider(std::string("stats ") + to_string(g.group), p);
    } else {  // collecting this group's statistics
      Parts p;
      add(&p, "activations held (boundary b)", disk ? 0 : boundary);
      // kStatsSlots chunks of every flow in flight (read, uploaded, computed;
      // on a device in pinned staging, which the store reads into) plus one
      // held by the read, and the captured inputs.
      const u64 slots = flows_in_stats * kStatsSlots * chunk;
      u64 chunk_bufs = flows_in_stats * (chunk + f32(tokens * g.n)) + (in.pinned_staging ? 0 : slots);
      if (in.loaq && out_projection(g.group)) chunk_bufs += f32(tokens * hidden) * (flows_in_stats + 3);
      add(&p, "chunk inputs and captured sub-layer inputs", chunk_bufs);
      if (in.pinned_staging) add(&p, "chunk slots (pinned staging)", slots);
      add(&p, "forward scratch", scratch);
      add(&p, "stats matrices", st);
      consider(std::string("stats ") + to_string(g.group), p);
    }
    n_prev = g.n;
    // quantizing its linears, up to `concurrency` at once: the largest
    // working sets are the ones that may coincide
    const auto [prepare_peak, kept] = prepare_bytes(in.quant, in.fp_stats, g.n);
    std::vector<std::pair<u64, std::string>> lins;
    for (const auto& [name, m] : g.linears) lins.push_back({linear_bytes(in, m, g.n), name});
    std::sort(lins.begin(), lins.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    const size_t live_lins = std::min(lins.size(), static_cast<size_t>(concurrency));
    u64 lin = 0;
    std::string lin_names;
    for (size_t i = 0; i < live_lins; ++i) {
      lin += lins[i].first;
      lin_names += (i ? " + " : "") + lins[i].second;
    }
    Parts p;
    add(&p, "activations held (boundary b)", disk ? 0 : boundary);
    add(&p, "stats matrices", st);
    add(&p, "method working set (" + lin_names + ")",
        std::max(prepare_peak, kept + loaq_group_bytes(in, g.group, hidden, g.n) + lin));
    consider("quantize " + lin_names, p);
  }
  if (in.learn.enabled()) {  // training the block (block_learning.cpp), before its first stats
    const u64 bt = static_cast<u64>(std::min<int64_t>(in.learn.batch_seqs, static_cast<int64_t>(spc))) * seqlen;
    const bool cl = in.learn.cl_lambda > 0;
    const u64 d = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim, inter = c.intermediate;
    u64 per_linear = 0;
    for (const auto& l : block_linears(c)) {
      const u64 r = static_cast<u64>(std::min(l.out, l.in)), w = static_cast<u64>(l.out * l.in);
      const u64 band = std::min<u64>(static_cast<u64>(in.learn.band), r ? r - 1 : 0);
      // U, S, V^T; band, its gradient and Adam's two moments; W', its fake
      // quantization and gradient (float), the STE mask (bytes); U D and
      // M = U^T dW' (SdeOnBackend's host sides); the grid's {scale, zero}
      // per row and group (float64)
      const u64 groups = in.quant.group > 0 ? (static_cast<u64>(l.in) + in.quant.group - 1) / in.quant.group : 1;
      per_linear += f32(static_cast<u64>(l.out) * r + r + r * static_cast<u64>(l.in) + 4 * (2 * band + 1) * r + 3 * w) + w +
                    f32(static_cast<u64>(l.out) * r + r * static_cast<u64>(l.in)) + 16 * static_cast<u64>(l.out) * groups;
    }
    // A tape keeps per token the block input, the normed inputs, q/k/v, the
    // attention output, gate, up and the activation; the backward's
    // temporaries are as large again.
    const u64 tape = 2 * f32(bt * (4 * d + 2 * qd + 2 * kvd + 3 * inter));
    Parts p;
    add(&p, "activations held (boundary b)", disk ? 0 : boundary);
    add(&p, "training: a chunk of both flows and the mini-batch's copies",
        2 * chunk + f32(bt * d) * (cl ? 7 : 3));
    add(&p, "training: SVD factors, W', gradients, band and Adam state", per_linear);
    add(&p, cl ? "training: tapes (block and next block)" : "training: tape", tape * (cl ? 2 : 1));
    if (cl) add(&p, "next block's weights (cross-layer term)", block_weight_bytes(c));
    add(&p, "forward scratch", forward_scratch_bytes(c, bt, seqlen, threads));
    consider("learn", p);
  }
  {  // propagating both flows to boundary b + 1
    Parts p;
    add(&p, "activations held (boundaries b and b+1)", disk ? 0 : 2 * boundary);
    // On a device the slots are pinned staging (the store reads into and
    // writes from it), on the host plain buffers.
    add(&p,
        "chunks being propagated (" + std::to_string(kPropagateSlots) + " in flight" +
            (in.pinned_staging ? ", pinned staging)" : ")"),
        kPropagateSlots * chunk);
    if (spilled) {  // each slot also holds down_proj's input, copied out for the stage
      const u64 inter = static_cast<u64>(c.intermediate);
      add(&p, "spilled down_proj inputs in the slots", kPropagateSlots * f32(tokens * inter));
      if (!in.pinned_staging) add(&p, "the stage's input", f32(tokens * inter));
    }
    add(&p, "forward scratch", scratch);
    consider("propagate", p);
  }
  const u64 live = sum(worst);
  worst.push_back({"allocator slack", static_cast<u64>(kAllocatorSlack * static_cast<double>(live - in.baseline_bytes))});

  best.placement = placement;
  best.seqs_per_chunk = static_cast<int64_t>(spc);
  best.chunk_tokens = static_cast<int64_t>(tokens);
  best.nchunks = (in.nsamples + best.seqs_per_chunk - 1) / best.seqs_per_chunk;
  best.prefetch_depth = store_on_disk ? depth : 0;
  best.linear_concurrency = concurrency;
  best.breakdown = std::move(worst);
  best.peak_bytes = sum(best.breakdown);
  best.host_limit = in.host_limit;
  return best;
}

MemoryPlan plan_memory(const MemoryPlanInput& in) {
  if (in.nsamples < 1 || in.seqlen < 1) throw InputError("memory plan: --nsamples and --seqlen must be positive");
  const int64_t want_spc = std::clamp<int64_t>(in.chunk_tokens / in.seqlen, 1, in.nsamples);
  const int want_depth = std::max(in.prefetch_depth, 0);
  const int most = max_group_linears(in.model);
  const int want_conc = in.linear_concurrency > 0 ? std::min(in.linear_concurrency, most) : most;
  auto fits = [&](const MemoryPlan& p) { return p.peak_bytes <= in.host_limit; };
  const Placement memory = in.mirror_to_workdir ? Placement::MemoryMirrored : Placement::Memory;
  std::vector<Placement> placements;
  if (in.placement != Placement::Disk) placements.push_back(memory);
  if (in.placement != Placement::Memory) placements.push_back(Placement::Disk);
  // Chunk size outermost: it is the only choice that changes the output
  // bytes, so every placement (disk before a smaller chunk) and depth is tried
  // with the requested chunk first.
  for (int64_t spc = want_spc; spc >= 1; --spc) {
    for (Placement pl : placements) {
      // Depth before chunk size: read-ahead buffers cost whole chunks, and
      // larger chunks keep the GEMMs efficient.
      std::vector<int> depths{want_depth};
      if (pl == Placement::Memory) depths = {0};  // nothing to hide: a memory get is a copy
      else for (int d : {1, 0}) if (d < want_depth) depths.push_back(d);
      // Concurrency innermost: it costs only speed, and never changes the
      // output bytes.
      for (int d : depths) for (int conc = want_conc; conc >= 1; --conc) {
        MemoryPlan p = estimate_memory(in, pl, spc, d, conc);
        if (!fits(p)) continue;
        std::vector<std::string> why;
        if (in.placement == Placement::Auto && pl == Placement::Disk)
          why.push_back("activations on disk: both boundaries in memory would need " +
                        format_size(estimate_memory(in, memory, spc, 0).peak_bytes));
        if (spc < want_spc)
          why.push_back(std::to_string(spc) + " sequences per chunk instead of " + std::to_string(want_spc));
        if (pl != Placement::Memory && d < want_depth)
          why.push_back("prefetch depth " + std::to_string(d) + " instead of " + std::to_string(want_depth));
        if (conc < want_conc)
          why.push_back("linear concurrency " + std::to_string(conc) + " instead of " + std::to_string(want_conc));
        for (size_t i = 0; i < why.size(); ++i) p.reason += (i ? "; " : "") + why[i];
        if (!p.reason.empty()) p.reason += " (to fit --host-mem-limit " + format_size(in.host_limit) + ")";
        return p;
      }
    }
  }
  const Placement least = placements.back();
  const MemoryPlan min = estimate_memory(in, least, 1, 0);
  std::string parts;
  for (const auto& [name, b] : min.breakdown) parts += (parts.empty() ? "" : ", ") + name + " " + format_size(b);
  const std::string msg = "memory plan: needs at least " + format_size(min.peak_bytes) + " (" + parts +
                          "; 1 sequence per chunk, activations " + to_string(least) + ", during " +
                          min.peak_phase + "), --host-mem-limit is " + format_size(in.host_limit);
  if (in.placement == Placement::Memory) throw BudgetError(msg + "; try --activations disk");
  throw BudgetError(msg);
}

std::string MemoryPlan::describe() const {
  std::ostringstream o;
  o << "memory plan: activations " << to_string(placement)
    << (placement == Placement::MemoryMirrored ? " (in memory, each boundary written behind to the workdir)" : "")
    << ", " << seqs_per_chunk << " sequences ("
    << chunk_tokens << " tokens) per chunk, " << nchunks << " chunks, prefetch depth " << prefetch_depth
    << ", linear concurrency " << linear_concurrency << "\n";
  if (!reason.empty()) o << "  " << reason << "\n";
  o << "  estimated peak " << format_size(peak_bytes) << " of " << format_size(host_limit) << ", during "
    << peak_phase << ":\n";
  o << format_breakdown(breakdown);
  return o.str();
}

PlanCheck check_plan(const MemoryPlan& plan, uint64_t measured_peak_rss, double max_ratio) {
  PlanCheck c;
  c.estimate = plan.peak_bytes;
  c.measured = measured_peak_rss;
  c.ratio = measured_peak_rss ? static_cast<double>(plan.peak_bytes) / static_cast<double>(measured_peak_rss) : 0.0;
  c.upper_bound = plan.peak_bytes >= measured_peak_rss;
  c.within = c.upper_bound && c.ratio <= max_ratio;
  return c;
}

std::string PlanCheck::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "memory plan estimate %s vs measured peak RSS %s: %.2fx%s",
                format_size(estimate).c_str(), format_size(measured).c_str(), ratio,
                upper_bound ? "" : " (UNDER the measured peak)");
  return buf;
}

// MEASUREMENTS (2026-11-24, 2 cores, --threads 2, build-sched Release):
// `streamq synth` model hidden 512, intermediate 1536, 2 layers, 8/8 heads,
// vocab 512, f32 (29.4 MB file); calibration 400000 random uint16 tokens;
// --bits 4 --group 128. Estimate: baseline 12 MiB (RSS of `streamq quantize
// --help` is 8.8 MiB), mapped model = file size, depth 0 (no prefetch in the
// pipeline yet). Peak RSS from streamq_report.json.
//   nsamples seqlen chunk-tokens activations method   measured   estimate  ratio  peak phase
//   16       256    1024         memory      gptq     171.3 MiB  205.9 MiB 1.20x  quantize down_proj
//   64       512    4096         memory      gptq     423.8 MiB  471.6 MiB 1.11x  propagate
//   64       512    4096         disk        gptq     285.6 MiB  295.7 MiB 1.04x  stats down
//   64       512    16384        memory      gptaq    949.2 MiB  992.6 MiB 1.05x  stats down
//   128      512    8192         disk        gptaq    512.8 MiB  555.7 MiB 1.08x  stats down
//   128      1024   32768        memory      gptq     1.78 GiB   1.89 GiB  1.06x  propagate
//   32       512    2048         disk        rtn      199.8 MiB  240.4 MiB 1.20x  stats down
// heaptrack of the smallest job (1 x 16 tokens, gptq): peak heap 114 MB, of
// which factor_hessian 37.8 MB (h copy + U for down_proj's n = 1536),
// prepare's hessian() copy 18.9 MB, X^T X 18.9 MB, the chunk product 9.4 MB,
// the two block weight copies 13.6 MB each: the terms modelled above. Without
// the allocator slack the sums came to 0.89-1.04x of the measured peaks.
// Remeasured the same day with linear concurrency, one block's mapped pages
// and the fixed 1 MiB mmap threshold (bench/RESULTS.md, second table): 10
// jobs of 31-336 MiB on stories260K and synth 256/512 models, estimate
// 1.07-2.33x the measured peak, never under. With glibc's dynamic threshold
// the 32 x 256 memory job had peaked at 260 MiB (293 MiB at concurrency 3)
// against this 254 MiB estimate.

}  // namespace streamq
