// The training loop of --learn sde (block_learning.h): per step, every
// linear's W' = U (S + band) V^T is fake-quantized on the job's grid, the
// block runs forward on a mini-batch of the quantized flow with its tape,
// the loss is the MSE to the FP block's output (plus lambda times the MSE
// of the frozen next block's outputs), and the gradient comes back through
// the straight-through estimator to each band, which Adam updates.
#include "src/pipeline/block_learning.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "scheduler/trace.h"
#include "src/core/error.h"
#include "src/core/kill_point.h"
#include "src/methods/adam.h"
#include "src/methods/grid.h"
#include "src/methods/sde.h"
#include "src/model/block_backward.h"
#include "src/model/resident_block.h"
#include "src/core/sysinfo.h"

namespace streamq {
namespace {

// splitmix64: a portable, seedable stream (std::shuffle's draws are the
// library's choice, and the order decides the bytes).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// 0..n-1 in a Fisher-Yates order drawn from `rng`.
std::vector<int64_t> permutation(int64_t n, SplitMix& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.next() % static_cast<uint64_t>(i + 1)]);
  return p;
}

// sum((a - b)^2) / n in double, and d = scale * 2 (a - b) / n.
double mse_and_grad(const float* a, const float* b, int64_t n, double scale, float* d) {
  double s = 0;
  const double k = 2.0 * scale / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(a[i]) - b[i];
    s += e * e;
    d[i] = static_cast<float>(k * e);
  }
  return s / static_cast<double>(n);
}

// One linear in training: its SVD and band, the Adam state, and the step's
// arrays where be's ops read and write them: W', its fake quantization
// (which the quantized flow's view points at), the STE mask, dL/dW', and
// the epoch's grid parameters; W' comes to the host once per epoch (the
// grid's fit) and at the end (on the CPU it is there already).
struct TrainedLinear {
  std::string name;
  SdeLinear sde;
  Adam adam;
  std::vector<float> dparams;
  SteGrid grid;  // refit on W' at the start of each epoch
  std::unique_ptr<SdeOnBackend> factors;
  Buffer<float> w_prime, w_fq, dw;
  Buffer<uint8_t> mask;
  Buffer<double> grid_params;  // [rows, groups] x {scale, zero}
  std::vector<float> w_prime_host;  // a device's W', downloaded
  TrainedLinear(std::string n, SdeLinear s, const AdamConfig& ac)
      : name(std::move(n)), sde(std::move(s)), adam(ac, static_cast<int64_t>(sde.params.size())) {
    dparams.resize(sde.params.size());
  }
  // The arrays on be (after the SVD: `sde` stays where it is from here on).
  void place(Backend& be) {
    const size_t wn = static_cast<size_t>(sde.rows * sde.cols);
    factors = std::make_unique<SdeOnBackend>(be, sde, name);
    w_prime = be.alloc<float>(wn, "learn: W' of " + name);
    w_fq = be.alloc<float>(wn, "learn: fake-quantized W' of " + name);
    dw = be.alloc<float>(wn, "learn: dL/dW' of " + name);
    mask = be.alloc<uint8_t>(wn, "learn: STE mask of " + name);
    if (!be.host_addressable()) w_prime_host.resize(wn);
  }
  // W' = U (S + band) Vt on be; with `to_host`, also where host() reads it.
  void form_w_prime(Backend& be, bool to_host) {
    sde_weight(be, sde, *factors, w_prime.data());
    if (to_host && !w_prime_host.empty()) be.download(w_prime_host.data(), w_prime, w_prime_host.size());
    be.synchronize();
  }
  const float* host() const { return w_prime_host.empty() ? w_prime.data() : w_prime_host.data(); }
  uint64_t bytes() const {
    const SdeOnBackend& f = *factors;
    return 4 * (sde.u.size() + sde.s.size() + sde.vt.size() + 3 * sde.params.size() + dparams.size() +
                w_prime.size() + w_fq.size() + dw.size() + w_prime_host.size() + f.ud_host.size() + f.m_host.size()) +
           f.u.bytes() + f.s.bytes() + f.vt.bytes() + f.params.bytes() + f.dparams.bytes() + f.ud.bytes() +
           f.m.bytes() + mask.bytes() + grid_params.bytes();
  }
};

// The bytes a tape holds.
uint64_t bytes_of(const BlockTape& t) {
  uint64_t n = 0;
  for (const Buffer<float>* b : {&t.x_in, &t.h_attn, &t.q_raw, &t.k_raw, &t.q, &t.k, &t.v, &t.attn, &t.x_mid,
                                 &t.h_mlp, &t.gate, &t.up})
    n += b->bytes();
  return n;
}

}  // namespace

const char* to_string(LearnKind k) { return k == LearnKind::Sde ? "sde" : "none"; }

void LearnConfig::validate() const {
  if (!enabled()) return;
  if (band < 0) throw InputError("--sde-band " + std::to_string(band) + ": must be >= 0 (0 = the diagonal only)");
  if (!(cl_lambda >= 0) || !std::isfinite(cl_lambda))
    throw InputError("--cl-lambda: must be a finite value >= 0 (0 = no cross-layer term)");
  if (epochs < 1) throw InputError("--learn-epochs " + std::to_string(epochs) + ": must be >= 1");
  if (!(lr > 0) || !std::isfinite(lr)) throw InputError("--learn-lr: must be a finite value > 0");
  if (batch_seqs < 1) throw InputError("--learn-batch " + std::to_string(batch_seqs) + ": must be >= 1");
}

std::string LearnConfig::describe() const {
  if (!enabled()) return "none";
  std::ostringstream o;
  o << to_string(kind) << " band " << band << " cl " << cl_lambda << " epochs " << epochs << " lr " << lr << " batch "
    << batch_seqs;
  return o.str();
}

nlohmann::json LearnConfig::to_json() const {
  if (!enabled()) return {{"kind", "none"}};
  return {{"kind", to_string(kind)}, {"band", band},  {"cl_lambda", cl_lambda},
          {"epochs", epochs},        {"lr", lr},      {"batch_seqs", batch_seqs}};
}

nlohmann::json LearnReport::to_json() const {
  return {{"seconds", seconds},           {"seconds_svd", seconds_svd},         {"seconds_grid", seconds_grid}, {"steps", steps},
          {"loss_first", loss_first},     {"loss_last_epoch", loss_last_epoch}, {"params", params},
          {"working_bytes", working_bytes}};
}

LearnReport LearnReport::from_json(const nlohmann::json& j) {
  LearnReport r;
  r.seconds = j.value("seconds", 0.0);
  r.seconds_svd = j.value("seconds_svd", 0.0);
  r.seconds_grid = j.value("seconds_grid", 0.0);
  r.steps = j.value("steps", int64_t{0});
  r.loss_first = j.value("loss_first", 0.0);
  r.loss_last_epoch = j.value("loss_last_epoch", 0.0);
  r.params = j.value("params", int64_t{0});
  r.working_bytes = j.value("working_bytes", uint64_t{0});
  return r;
}

BlockWeights learn_block(const LearnInputs& in, const LearnConfig& cfg, const BlockWeights& w, LearnReport* report) {
  // run_quantize refuses it with the flags' names before anything is written.
  if (!in.ch.seq_lens.empty()) throw InternalError("learn_block: needs sequences of one length");
  const Stopwatch total;
  LearnReport rep;
  const ModelConfig& c = in.cfg;
  // be runs the block's forwards and backwards and every SDE op (U D, the
  // GEMMs, the band's gradient, the fake quantization with its mask, the
  // mask on the gradient): a device too, where the per-linear arrays live;
  // the host, the SVD once per block, the grid's fit once per epoch, the
  // MSE and Adam. ResidentChunk copies nothing on a host-addressable backend.
  Backend& be = in.be;
  AdamConfig ac;
  ac.lr = cfg.lr;
  // The grid the training fake-quantizes on: the job's, except that
  // two-stage scales need the group's Hessian, which exists only after the
  // training (the method then fits them on W'): the MSE clip search stands
  // in (measured closer than min/max: bench/RESULTS.md, LoaQ two-stage +SDE
  // on stories260K W3 g32 5.71 against 5.84, per-channel 5.95 against 6.17).
  QuantConfig grid = in.quant;
  if (grid.two_stage()) grid.clip = ClipSearch::Mse;

  const std::vector<LinearDesc> descs = block_linears(c);
  std::vector<TrainedLinear> lins;
  lins.reserve(descs.size());  // SdeOnBackend reads each one's factors in place: no reallocation
  {
    TraceSpan span(in.trace, "learn: svd", trace_cat::kQuantize);
    span.arg("block", in.block);
    const Stopwatch t_svd;
    for (const LinearDesc& d : descs) {
      const Linear& l = w.linears.at(d.name);
      lins.emplace_back(d.name, sde_decompose(in.host, l.w.data(), d.out, d.in, cfg.band), ac);
      rep.params += static_cast<int64_t>(lins.back().sde.params.size());
    }
    rep.seconds_svd = t_svd.seconds();
  }
  for (TrainedLinear& t : lins) t.place(be);
  const int32_t maxq = Grid(grid).maxq();
  BlockView qview = in.quant_view;  // the quantized flow's view, with the fake-quantized W'
  std::map<std::string, float*> dw;
  for (TrainedLinear& t : lins) {
    LinearView& lv = qview.linears.at(t.name);
    lv.w = t.w_fq.data();
    lv.w_bf16 = nullptr;
    dw[t.name] = t.dw.data();
  }
  const bool cl = in.next_fp_view && cfg.cl_lambda > 0;

  const int64_t hidden = c.hidden;
  const int64_t seq_floats = in.seqlen * hidden;
  std::vector<float> chunk_q, chunk_fp, xq, xfp, d, zq, zfp, dz;
  ResidentChunk xq_be(be, "learn: quantized flow's mini-batch"), xfp_be(be, "learn: FP flow's mini-batch"),
      d_be(be, "learn: dL/d(block output)"), zq_be(be, "learn: next block on the quantized flow"),
      zfp_be(be, "learn: next block on the FP flow"), dz_be(be, "learn: dL/d(next block output)");
  SplitMix rng{in.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(in.block) * 0x632be59bd9b4e019ull + 1};
  double last_epoch_sum = 0;
  int64_t last_epoch_steps = 0;
  uint64_t tape_bytes = 0;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    last_epoch_sum = 0;
    last_epoch_steps = 0;
    // The grid is fit on W' once per epoch and fixed through it (scales are
    // constants to the STE anyway; an MSE fit costs about a hundred
    // quantizations of the weight, which every step would pay).
    const Stopwatch t_grid;
    for (TrainedLinear& t : lins) {
      t.form_w_prime(be, true);
      t.grid = fit_ste_grid(grid, t.host(), t.sde.rows, t.sde.cols);
      std::vector<double> p;
      p.reserve(2 * t.grid.params.size());
      for (const GridParams& g : t.grid.params) p.insert(p.end(), {g.scale, g.zero});
      t.grid_params = be.upload_new(p, "learn: grid of " + t.name);
      be.synchronize();  // p is the upload's source
    }
    rep.seconds_grid += t_grid.seconds();
    bool w_prime_current = true;  // W' was just formed: the epoch's first step reuses it
    const std::vector<int64_t> chunks = permutation(in.ch.nchunks, rng);
    ReadAhead::Order order;
    for (const int64_t ck : chunks) order.insert(order.end(), {{Flow::Quant, ck}, {Flow::Fp, ck}});
    ReadAhead ahead(in.hint, in.block, std::move(order));
    ahead.consumed(-1);
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const int64_t ck = chunks[ci];
      const int64_t nseq = in.ch.seqs(ck, in.nsamples);
      in.store.get(in.block, Flow::Quant, ck, &chunk_q);
      in.store.get(in.block, Flow::Fp, ck, &chunk_fp);
      ahead.consumed(static_cast<int64_t>(2 * ci + 1));
      const int64_t nbatches = (nseq + cfg.batch_seqs - 1) / cfg.batch_seqs;
      for (const int64_t mb : permutation(nbatches, rng)) {
        TraceSpan span(in.trace, "learn: step", trace_cat::kQuantize);
        span.arg("block", in.block).arg("chunk", ck);
        const int64_t s0 = mb * cfg.batch_seqs;
        const int64_t ns = std::min(cfg.batch_seqs, nseq - s0);
        const int64_t n = ns * seq_floats;
        xq.assign(chunk_q.begin() + s0 * seq_floats, chunk_q.begin() + s0 * seq_floats + n);
        xfp.assign(chunk_fp.begin() + s0 * seq_floats, chunk_fp.begin() + s0 * seq_floats + n);
        for (TrainedLinear& t : lins) {
          if (!w_prime_current) t.form_w_prime(be, false);
          be.fake_quant_ste(t.w_prime.data(), t.sde.rows, t.sde.cols, t.grid.group, t.grid_params.data(), maxq,
                            grid.free_min, t.w_fq.data(), t.mask.data());
        }
        // The target: the FP block on the FP flow.
        float* xfp_d = xfp_be.place(xfp);
        block_forward(be, c, in.fp_view, in.rope, xfp_d, ns, in.seqlen);
        BlockTape tape;
        float* xq_d = xq_be.place(xq);
        block_forward_tape(be, c, qview, in.rope, xq_d, ns, in.seqlen, &tape);
        be.synchronize();
        xfp_be.fetch(xfp);
        xq_be.fetch(xq);
        d.resize(static_cast<size_t>(n));
        double loss = mse_and_grad(xq.data(), xfp.data(), n, 1.0, d.data());
        if (cl) {  // through the frozen FP next block: its outputs from both
          zfp = xfp;
          float* zfp_d = zfp_be.place(zfp);
          block_forward(be, c, *in.next_fp_view, in.rope, zfp_d, ns, in.seqlen);
          zq = xq;
          float* zq_d = zq_be.place(zq);
          BlockTape next_tape;
          block_forward_tape(be, c, *in.next_fp_view, in.rope, zq_d, ns, in.seqlen, &next_tape);
          be.synchronize();
          zfp_be.fetch(zfp);
          zq_be.fetch(zq);
          dz.resize(static_cast<size_t>(n));
          loss += cfg.cl_lambda * mse_and_grad(zq.data(), zfp.data(), n, cfg.cl_lambda, dz.data());
          block_backward(be, c, *in.next_fp_view, in.rope, next_tape, dz_be.place(dz), nullptr);
          be.synchronize();
          dz_be.fetch(dz);
          for (int64_t i = 0; i < n; ++i) d[i] += dz[i];
          tape_bytes = std::max(tape_bytes, bytes_of(next_tape));
        }
        tape_bytes = std::max(tape_bytes, bytes_of(tape));
        block_backward(be, c, qview, in.rope, tape, d_be.place(d), &dw);
        be.synchronize();
        for (TrainedLinear& t : lins) {
          be.ste_mask_grad(t.mask.data(), t.dw.data(), static_cast<int64_t>(t.dw.size()));
          sde_band_grad(be, t.sde, *t.factors, t.dw.data(), t.dparams.data());
          t.adam.step(t.sde.params.data(), t.dparams.data());
        }
        w_prime_current = false;
        if (!std::isfinite(loss))
          throw InputError("--learn sde: block " + std::to_string(in.block) +
                           ": the training loss is not finite at step " + std::to_string(rep.steps + 1) +
                           "; lower --learn-lr");
        if (rep.steps == 0) rep.loss_first = loss;
        ++rep.steps;
        last_epoch_sum += loss;
        ++last_epoch_steps;
        kill_point(KillPoint::Learn);
      }
    }
  }
  rep.loss_last_epoch = last_epoch_steps ? last_epoch_sum / static_cast<double>(last_epoch_steps) : 0.0;

  BlockWeights out = w;
  for (TrainedLinear& t : lins) {
    t.form_w_prime(be, true);
    out.linears.at(t.name).w.assign(t.host(), t.host() + t.sde.rows * t.sde.cols);
    rep.working_bytes += t.bytes();
  }
  rep.working_bytes += tape_bytes + 4 * static_cast<uint64_t>(chunk_q.size() + chunk_fp.size() + xq.size() +
                                                              xfp.size() + d.size() + zq.size() + zfp.size() + dz.size());
  rep.seconds = total.seconds();
  if (report) *report = rep;
  return out;
}

}  // namespace streamq
