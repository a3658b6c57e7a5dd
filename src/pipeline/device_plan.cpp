// The device memory plan: the device path's buffers (src/model/resident_block.h,
// src/model/block_forward.cpp, src/pipeline/block_stats.cpp,
// src/methods/linear_stats.cpp, src/methods/sweep_problem.cpp) counted phase
// by phase, each phase an upper bound of what is live at once.
#include "src/pipeline/device_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "scheduler/memory_budget.h"
#include "src/core/error.h"
#include "src/model/architecture.h"
#include "src/pipeline/chunk_pass.h"

namespace streamq {
namespace {

constexpr uint64_t kF32 = 4;

using Parts = std::vector<std::pair<std::string, uint64_t>>;

uint64_t sum(const Parts& p) {
  uint64_t s = 0;
  for (const auto& [name, b] : p) s += b;
  return s;
}

// A block's weights as ResidentBlock uploads them: every linear's weight
// (float32, or bf16 with --device-weights bf16), biases and norms float32.
uint64_t block_bytes(const ModelConfig& c, bool weights_bf16) {
  uint64_t small = 2 * c.hidden, weights = 0;  // input and post-attention norms
  if (c.qk_norm) small += 2 * c.head_dim;
  for (const LinearDesc& l : block_linears(c)) {
    weights += static_cast<uint64_t>(l.out * l.in);
    small += l.has_bias ? l.out : 0;
  }
  return small * kF32 + weights * (weights_bf16 ? 2 : kF32);
}

// block_forward's intermediates at their peak: at attention h, q, k, v and
// the attention output; in the MLP h, the attention output (kept to the
// end), gate and up; with bf16 weights, the float32 scratch each linear is
// widened into (the largest linear's, held for the whole forward).
uint64_t forward_bytes(const ModelConfig& c, int64_t tokens, bool weights_bf16) {
  const int64_t qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  const int64_t per_token = std::max(c.hidden + 2 * qd + 2 * kvd, c.hidden + qd + 2 * c.intermediate);
  const uint64_t widened = weights_bf16 ? static_cast<uint64_t>(std::max({qd, kvd, c.intermediate}) * c.hidden) : 0;
  return (static_cast<uint64_t>(tokens * per_token) + widened) * kF32;
}

// One linear's sweep buffers (sweep_problem.cpp): W, Q (float), codes (u8),
// U and the P matrices (float n x n), order and dead flags, scales and zeros.
uint64_t sweep_bytes(const LinearDesc& l, const DevicePlanInput& in) {
  const uint64_t m = l.out, n = l.in;
  const uint64_t groups = in.group > 0 ? (n + in.group - 1) / in.group : 1;
  return m * n * (kF32 + kF32 + 1) + n * n * kF32 * (1 + (in.p1 ? 1 : 0) + (in.p2 ? 1 : 0)) + n * (4 + 1) +
         2 * groups * m * kF32;
}

// factor_hessian's buffers on a device (src/methods/gptq.cpp): U, plus T and
// D-then-P when a compensation matrix is formed.
uint64_t factor_bytes(int64_t n, const DevicePlanInput& in) {
  return static_cast<uint64_t>(n * n) * static_cast<uint64_t>(in.factor_bytes_per_element) * (in.p1 || in.p2 ? 3 : 1);
}

// What stays on the device for the whole block.
Parts resident_parts(const DevicePlanInput& in) {
  const ModelConfig& c = in.model;
  Parts resident = {{"RoPE tables", static_cast<uint64_t>(2 * in.seqlen * (c.head_dim / 2)) * kF32},
                    {std::string("quantized block's weights (") + (in.weights_bf16 ? "bf16" : "float32") + ")",
                     block_bytes(c, in.weights_bf16)}};
  if (in.fp_flow)
    resident.push_back({std::string("original block's weights (") + (in.weights_bf16 ? "bf16" : "float32") +
                            ", FP flow)",
                        block_bytes(c, in.weights_bf16)});
  return resident;
}

}  // namespace

bool device_factor_fits(const DevicePlanInput& in) {
  int64_t widest = 0;
  for (int g = 0; g < kNumSubLayers; ++g)
    widest = std::max(widest, sublayer_in_features(in.model, static_cast<SubLayer>(g)));
  return sum(resident_parts(in)) + factor_bytes(widest, in) <= in.limit;
}

DevicePlan estimate_device_memory(const DevicePlanInput& in, int64_t seqs) {
  const ModelConfig& c = in.model;
  const int64_t t = seqs * in.seqlen, d = c.hidden;
  const uint64_t flows = in.fp_flow ? 2 : 1;
  const Parts resident = resident_parts(in);

  DevicePlan best;
  auto consider = [&](const std::string& phase, Parts parts) {
    parts.insert(parts.begin(), resident.begin(), resident.end());
    const uint64_t total = sum(parts);
    if (total >= best.peak_bytes) {
      best.peak_bytes = total;
      best.peak_phase = phase;
      best.breakdown = std::move(parts);
    }
  };
  // Statistics of each group: the chunks of the flows, the captured group
  // inputs of both flows (and residual streams), then either the forward's
  // intermediates or the statistics' own buffers (dX, the chunk products,
  // LoaQ's rescaled inputs and residual difference).
  for (int g = 0; g < kNumSubLayers; ++g) {
    const SubLayer s = static_cast<SubLayer>(g);
    const int64_t n = sublayer_in_features(c, s);
    const int64_t n_prev = g > 0 ? sublayer_in_features(c, static_cast<SubLayer>(g - 1)) : 0;
    const bool out_terms = in.output_terms && (s == SubLayer::O || s == SubLayer::Down);
    const uint64_t captures = flows * static_cast<uint64_t>(t * (n + (out_terms ? d : 0))) * kF32;
    // LinearStats::accumulate with the cross term holds dX and both chunk
    // products (dX^T X, then X^T X) at once; LoaQ's output terms add the
    // rescaled inputs, the residual difference and r^T x.
    uint64_t stats = static_cast<uint64_t>(in.fp_flow ? t * n + 2 * n * n : n * n) * kF32;
    if (out_terms) stats += static_cast<uint64_t>(2 * t * n + t * d + d * n) * kF32;
    // A spilled pass: slots of x and the wider of the two inputs, then one
    // flow's stage (its input copied out of the slot, its intermediates and
    // output: within the forward's peak, which holds a sub-layer's input
    // beside its intermediates; the output is copied into the slot and
    // freed before the statistics run) or the statistics.
    if (in.staged_spill)
      consider(std::string("statistics ") + to_string(s) + " (spilled group inputs)",
               {{"spilled chunks (" + std::to_string(flows) + " flow" + (flows > 1 ? "s" : "") + ", " +
                     std::to_string(kStatsSlots) + " in flight)",
                 kStatsSlots * flows * static_cast<uint64_t>(t * (d + std::max(n, n_prev))) * kF32},
                {"one stage's buffers or chunk statistics", std::max(forward_bytes(c, t, in.weights_bf16), stats)}});
    consider(std::string("statistics ") + to_string(s),
             {{"activation chunks (" + std::to_string(flows) + " flow" + (flows > 1 ? "s" : "") + ", " +
                   std::to_string(kStatsSlots) + " in flight)",
               kStatsSlots * flows * static_cast<uint64_t>(t * d) * kF32},
              {"captured group inputs", captures},
              {"forward intermediates or chunk statistics", std::max(forward_bytes(c, t, in.weights_bf16), stats)}});
  }
  consider("propagate", {{"activation chunks in flight (" + std::to_string(kPropagateSlots) + ")",
                          static_cast<uint64_t>(kPropagateSlots * t * d) * kF32},
                         {"forward intermediates", forward_bytes(c, t, in.weights_bf16)}});
  if (in.staged_spill)
    consider("propagate (spilled group inputs)",
             {{"spilled chunks in flight (" + std::to_string(kPropagateSlots) + ")",
               static_cast<uint64_t>(kPropagateSlots * t * (d + c.intermediate)) * kF32},
              {"down_proj's stage (its input copied out of the slot, the output)",
               forward_bytes(c, t, in.weights_bf16)}});
  if (in.learn) {
    const int64_t bt = std::min(in.learn_batch_seqs, seqs) * in.seqlen;
    const int64_t qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
    uint64_t per_linear = 0;
    for (const LinearDesc& l : block_linears(c)) {
      const uint64_t r = static_cast<uint64_t>(std::min(l.out, l.in));
      // U D and U [out, r], Vt and M = U^T dW' [r, in]; W', its fake
      // quantization, dL/dW' [out, in]; the STE mask (bytes); the grid's
      // {scale, zero} per row and group (float64)
      const uint64_t groups = in.group > 0 ? static_cast<uint64_t>((l.in + in.group - 1) / in.group) : 1;
      per_linear += (2 * static_cast<uint64_t>(l.out) * r + 2 * r * static_cast<uint64_t>(l.in) +
                     3 * static_cast<uint64_t>(l.out * l.in)) * kF32 +
                    static_cast<uint64_t>(l.out * l.in) + static_cast<uint64_t>(l.out) * groups * 16;
    }
    // A tape: the block input, the normed inputs, q/k/v (and before
    // QK-norm), the attention output, the residual after attention, gate
    // and up; the backward's temporaries are counted as large again.
    const uint64_t tape =
        2 * static_cast<uint64_t>(bt * (4 * d + 2 * qd + 2 * kvd + 2 * c.intermediate + (c.qk_norm ? qd + kvd : 0))) * kF32;
    const uint64_t next = in.learn_next_block ? 1 : 0;
    Parts parts = {{"training: SDE factors, W', fake-quantized W', gradients", per_linear},
                   {"training: the mini-batch's flows and output gradients",
                    static_cast<uint64_t>(bt * d) * kF32 * (3 + 3 * next)},
                   {next ? "training: tapes (block and next block)" : "training: tape", tape * (1 + next)},
                   {"training: the FP block's forward", forward_bytes(c, bt, in.weights_bf16)}};
    if (next) parts.push_back({"next block's weights (cross-layer term)", block_bytes(c, in.weights_bf16)});
    consider("learn", parts);
  }
  if (in.factor_on_device)
    for (int g = 0; g < kNumSubLayers; ++g) {
      const SubLayer s = static_cast<SubLayer>(g);
      consider(std::string("factor ") + to_string(s),
               {{std::string("factor of the ") + to_string(s) + " input (" +
                     (in.factor_bytes_per_element == 4 ? "float32" : "float64") + " n x n)",
                 factor_bytes(sublayer_in_features(c, s), in)}});
    }
  if (in.sweep_on_device) {
    const std::vector<LinearDesc> linears = block_linears(c);
    for (int g = 0; g < kNumSubLayers; ++g) {
      std::vector<std::pair<uint64_t, const LinearDesc*>> group;
      for (const LinearDesc& l : linears)
        if (l.group == static_cast<SubLayer>(g)) group.push_back({sweep_bytes(l, in), &l});
      if (group.empty()) continue;
      std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      Parts parts;
      for (size_t i = 0; i < group.size() && i < static_cast<size_t>(std::max(in.linear_concurrency, 1)); ++i)
        parts.push_back({"sweep " + group[i].second->name, group[i].first});
      consider("sweep " + group.front().second->name, parts);
    }
  }
  best.seqs_per_chunk = seqs;
  best.limit = in.limit;
  return best;
}

DevicePlan plan_device_memory(const DevicePlanInput& in) {
  if (in.seqlen < 1 || in.max_seqs_per_chunk < 1) throw InternalError("plan_device_memory: empty chunks");
  const int64_t most = in.max_seqs_per_chunk;
  DevicePlan plan = estimate_device_memory(in, most);
  if (plan.peak_bytes <= in.limit) return plan;
  const DevicePlan one = estimate_device_memory(in, 1);
  if (in.resumed || one.peak_bytes > in.limit) {
    const DevicePlan& need = in.resumed ? plan : one;
    std::string what = need.peak_phase;
    if (what.rfind("sweep ", 0) == 0) what = "the GPTQ sweep of the largest linear (" + what.substr(6) + ")";
    else what += in.resumed ? " with the resumed job's " + std::to_string(most) + " sequences per chunk"
                            : " of one sequence of " + std::to_string(in.seqlen) + " tokens";
    throw InputError("--gpu-mem-limit " + format_size(in.limit) + " is too small: " + what + " needs " +
                     format_size(need.peak_bytes) + " of device memory; the smallest limit that works is " +
                     format_size(need.peak_bytes) + " (" + std::to_string(need.peak_bytes) + " bytes)");
  }
  // The largest chunk that fits (the estimate grows with the chunk).
  int64_t lo = 1, hi = most;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (estimate_device_memory(in, mid).peak_bytes <= in.limit ? lo : hi) = mid;
  }
  plan = estimate_device_memory(in, lo);
  plan.reason = "chunk lowered from " + std::to_string(most) + " to " + std::to_string(lo) +
                " sequences to fit --gpu-mem-limit";
  return plan;
}

std::string DevicePlan::describe() const {
  std::ostringstream o;
  o << "device plan: " << seqs_per_chunk << " sequences per chunk on the device";
  if (!reason.empty()) o << " (" << reason << ")";
  o << "\n  predicted device peak " << format_size(peak_bytes) << " of " << format_size(limit) << ", during "
    << peak_phase << ":\n";
  o << format_breakdown(breakdown);
  return o.str();
}

}  // namespace streamq
