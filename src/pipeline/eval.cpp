// `streamq eval`: windowed perplexity.
#include "src/pipeline/eval.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/core/sysinfo.h"
#include "io/store/activation_store.h"
#include "io/formats/npy.h"
#include "kernels/cpu/vec_exp.h"
#include "src/model/model.h"
#include "src/model/resident_block.h"
#include "src/export/model_source.h"
#include "src/report/progress.h"

#include <filesystem>
#include <optional>

namespace streamq {

namespace {

// -log softmax(row)[target] in float64: max, then the sum of exp(x - max) in
// index order. The max is found in float (exact: it is one of the values).
double token_nll_reference(const float* row, int32_t target, int64_t vocab) {
  float mxf = row[0];
  for (int64_t v = 1; v < vocab; ++v) mxf = std::max(mxf, row[v]);
  const double mx = mxf;
  double se = 0;
  for (int64_t v = 0; v < vocab; ++v) se += std::exp(static_cast<double>(row[v]) - mx);
  return mx + std::log(se) - static_cast<double>(row[target]);
}

// The same with float terms: d = x - max rounded to float and exp(d) from the
// vectorized exp, summed in double (cpu::exp_shifted_sum). libm's double exp
// over vocab x tokens was 7% of `streamq eval` (issue 16). Its error against
// the reference: log(se) moves by at most se's relative error, and
//  - each term's relative error is <= 2^-24 |d| (d rounded) + kVecExpMaxUlp
//    ulp = 2^-23 (the exp), so se's is <= 2^-23 + 2^-24 E_p|d|, with p the
//    row's softmax;
//  - E_p|d| = H(p) - log(se) <= H(p) <= log(vocab) (log p_v = d_v - log se,
//    and se >= 1: the max's term is 1);
//  - terms under e^-87.3 come out 0: a relative loss under vocab e^-87 < 1e-33;
//    summing in double adds ~vocab 2^-53.
// So |token_nll - token_nll_reference| <= 2^-23 + 2^-24 log(vocab) + 1e-11:
// 7.6e-7 nats at SmolLM2's 49152, and the mean NLL no more, so the
// perplexity moves by at most 7.6e-7 of itself (tests/pipeline/test_eval_loss.cpp
// checks the bound; on 16 WikiText-2 windows the measured change is in
// bench/RESULTS.md). A non-finite result (NaN or Inf logits) is recomputed
// by the reference, so those agree exactly.
double token_nll(const float* row, int32_t target, int64_t vocab) {
  const float mx = cpu::max_of(row, vocab);
  const double se = cpu::exp_shifted_sum(row, mx, vocab, nullptr);
  const double nll = static_cast<double>(mx) + std::log(se) - static_cast<double>(row[target]);
  return std::isfinite(nll) ? nll : token_nll_reference(row, target, vocab);
}

template <typename RowNll>
double sum_rows(const float* logits, const int32_t* targets, int64_t tokens, int64_t vocab, RowNll row_nll) {
  // Tokens in parallel, each row's value computed exactly as the serial loop
  // would, then added in token order: the same double for any thread count.
  std::vector<double> nll(static_cast<size_t>(std::max<int64_t>(tokens, 0)));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, tokens, 8), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t t = r.begin(); t < r.end(); ++t) {
      nll[static_cast<size_t>(t)] = row_nll(logits + t * vocab, targets[t], vocab);
    }
  });
  double total = 0;
  for (double v : nll) total += v;
  return total;
}

}  // namespace

double sum_nll(const float* logits, const int32_t* targets, int64_t tokens, int64_t vocab) {
  return sum_rows(logits, targets, tokens, vocab, token_nll);
}

double sum_nll_reference(const float* logits, const int32_t* targets, int64_t tokens, int64_t vocab) {
  return sum_rows(logits, targets, tokens, vocab, token_nll_reference);
}

EvalResult run_eval(const EvalJob& job, Backend& be, std::ostream* progress) {
  const Stopwatch clock;
  const ModelSource source(job.model_dir, std::filesystem::temp_directory_path().string(), progress);
  Model model(source.dir());
  const ModelConfig& cfg = model.config();
  const std::vector<int32_t> stream =
      load_token_stream(job.data_path, job.tokens_dtype, job.text_path, source.dir(), cfg.vocab);
  EvalResult res;
  const std::vector<int32_t> toks = eval_windows(stream, job.seqlen, job.windows,
                                                 job.text_path.empty() ? job.data_path : job.text_path, &res.windows);
  const int64_t spc = std::max<int64_t>(1, job.chunk_tokens / job.seqlen);
  const int64_t nchunks = (res.windows + spc - 1) / spc;
  auto seqs = [&](int64_t c) { return std::min(spc, res.windows - c * spc); };
  // The model's tensors where the backend's ops read them: RoPE tables and
  // the head once, each block's weights once per block, each chunk once per
  // block (uploads on a device; the host arrays themselves on the CPU).
  const ResidentRope rope(be, model.rope_table(job.seqlen));
  ResidentChunk chunk(be, "eval: activation chunk");

  // A rotated streamq checkpoint carries its rotations in its weights; only
  // the activation sides (R4 before down_proj, the online Hadamard before
  // o_proj when its config names it, R3 on queries and keys) are left for the
  // forward, taken from its config. Rotating it again is refused.
  const bool rotated_checkpoint = !cfg.rotation.empty();
  if (rotated_checkpoint && job.rotation.enabled())
    throw InputError("--rotate/--online-hadamard/--head-hadamard: " + job.model_dir + " is already rotated (config.json " +
                     kRotationConfigKey + ": " + cfg.rotation + (cfg.online_hadamard ? ", online Hadamard" : "") +
                     (cfg.head_hadamard ? ", head Hadamard" : "") + "), which eval applies; evaluate it without them");
  RotationSpec spec = job.rotation;
  if (rotated_checkpoint) {
    spec.online_hadamard = cfg.online_hadamard;
    spec.online_hadamard_o_proj = cfg.online_hadamard_o_proj;
    spec.head_hadamard = cfg.head_hadamard;
    std::vector<std::string> applied;
    if (cfg.online_hadamard) applied.push_back("the online Hadamard applied to down_proj's input");
    if (cfg.online_hadamard_o_proj) applied.push_back("the online Hadamard applied to o_proj's input");
    if (cfg.head_hadamard) applied.push_back("queries and keys rotated per head");
    if (progress && !applied.empty()) {
      *progress << "eval: " << job.model_dir << " is rotated (config.json " << kRotationConfigKey << "): ";
      for (size_t i = 0; i < applied.size(); ++i) *progress << (i ? ", " : "") << applied[i];
      *progress << " in the forward\n";
    }
  }
  const ModelRotation rotation(be, cfg, spec, job.model_dir,
                               rotated_checkpoint ? ModelRotation::OnlineWeights::AlreadyFused
                                                  : ModelRotation::OnlineWeights::Fuse);
  auto store = make_memory_store();
  std::vector<float> x;
  for (int64_t c = 0; c < nchunks; ++c) {
    x.resize(static_cast<size_t>(seqs(c) * job.seqlen * cfg.hidden));
    model.embed(toks.data() + c * spc * job.seqlen, seqs(c) * job.seqlen, x.data());
    rotation.rotate_rows(x.data(), seqs(c) * job.seqlen);  // the rotated embedding's rows
    store->put(0, Flow::Fp, c, x.data(), static_cast<int64_t>(x.size()));
  }
  Progress prog(progress, "eval", cfg.layers);
  for (int64_t b = 0; b < cfg.layers; ++b) {
    BlockWeights w = model.load_block(b);
    rotation.rotate_block(w);
    const ResidentBlock weights(be, w, job.device_weights);
    BlockView view = weights.view();
    view.act = job.act;
    view.kv = job.kv;
    rotation.apply_online(view);
    for (int64_t c = 0; c < nchunks; ++c) {
      store->get(b, Flow::Fp, c, &x);
      block_forward(be, cfg, view, rope.table(), chunk.place(x), seqs(c), job.seqlen);
      chunk.fetch(x);
      store->put(b + 1, Flow::Fp, c, x.data(), static_cast<int64_t>(x.size()));
    }
    store->drop(b);
    prog.step("");
  }
  std::vector<float> logits(static_cast<size_t>(job.seqlen * cfg.vocab));
  std::vector<float> head_w, head_norm;
  if (rotation.residual()) {
    head_w = model.head_weight();
    head_norm = model.final_norm();
    rotation.rotate_head(head_w, head_norm);
  }
  const ResidentHead head = rotation.residual() ? ResidentHead(be, cfg, head_norm, head_w) : ResidentHead(be, model);
  ResidentChunk logits_slot(be, "eval: one window's logits");
  double total = 0;
  for (int64_t c = 0; c < nchunks; ++c) {
    store->get(cfg.layers, Flow::Fp, c, &x);
    const float* xc = chunk.place(x);
    for (int64_t s = 0; s < seqs(c); ++s) {
      // One window's logits at a time: [seqlen, vocab] stays small.
      head.logits(xc + s * job.seqlen * cfg.hidden, job.seqlen, logits_slot.output(logits));
      logits_slot.fetch(logits);
      if (c == 0 && s == 0 && !job.logits_out.empty())
        write_npy(job.logits_out, DType::F32, {job.seqlen, cfg.vocab}, logits.data());
      const int32_t* window = toks.data() + (c * spc + s) * job.seqlen;
      const double nll = sum_nll(logits.data(), window + 1, job.seqlen - 1, cfg.vocab);
      res.per_window_nll.push_back(nll / static_cast<double>(job.seqlen - 1));
      total += nll;
    }
  }
  res.predictions = res.windows * (job.seqlen - 1);
  res.mean_nll = total / static_cast<double>(res.predictions);
  res.ppl = std::exp(res.mean_nll);
  res.seconds = clock.seconds();
  res.peak_rss_bytes = peak_rss_bytes();
  return res;
}

}  // namespace streamq
