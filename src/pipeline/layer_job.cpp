// The layer command's job: load, accumulate statistics chunk by chunk, quantize, write.
#include "src/pipeline/layer_job.h"

#include <algorithm>
#include <cmath>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/npy.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "src/model/resident_block.h"

namespace streamq {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}

// sum over tokens of ||A x~_t - B x_t||^2 with A, B [m, n], X, X~ [n, T].
double output_error(const std::vector<double>& a, const std::vector<double>& xa, const std::vector<double>& b,
                    const std::vector<double>& xb, int64_t m, int64_t n, int64_t t) {
  double total = 0;
  std::vector<double> y(static_cast<size_t>(t));
  for (int64_t r = 0; r < m; ++r) {
    std::fill(y.begin(), y.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const double wa = a[r * n + i], wb = b[r * n + i];
      const double* pa = &xa[i * t];
      const double* pb = &xb[i * t];
      for (int64_t k = 0; k < t; ++k) y[k] += wa * pa[k] - wb * pb[k];
    }
    for (double v : y) total += v * v;
  }
  return total;
}

}  // namespace

LayerResult run_layer(const LayerJob& job, Backend& be) {
  const auto method = make_method({job.quant, job.loaq});
  std::vector<int64_t> ws, xs, fs;
  const std::vector<double> w = read_matrix_f64(job.weight_path, &ws);
  const std::vector<double> x = read_matrix_f64(job.x_path, &xs);
  if (ws.size() != 2) throw InputError(job.weight_path + ": W must be 2-D (out, in), got " + shape_str(ws));
  if (xs.size() != 2 || xs[0] != ws[1])
    throw InputError(job.x_path + ": X must be (in, tokens) = (" + std::to_string(ws[1]) + ", T), got " +
                     shape_str(xs));
  std::vector<double> xfp = x;
  if (!job.xfp_path.empty()) {
    xfp = read_matrix_f64(job.xfp_path, &fs);
    if (fs != xs) throw InputError(job.xfp_path + ": X~ must have X's shape " + shape_str(xs) + ", got " + shape_str(fs));
  }
  const int64_t m = ws[0], n = ws[1], t = xs[1];
  for (double v : w)
    if (!std::isfinite(v)) throw InputError(job.weight_path + ": W has non-finite values");

  // Token chunks [tokens, in] in float32, exactly as the pipeline feeds LinearStats.
  const bool cross = method->needs().fp_flow;
  LinearStats stats(n);
  std::vector<float> cq, cf;
  ResidentChunk chunk_q(be, "layer: X chunk"), chunk_fp(be, "layer: X~ chunk");
  for (int64_t t0 = 0; t0 < t; t0 += job.chunk_tokens) {
    const int64_t tt = std::min(job.chunk_tokens, t - t0);
    cq.resize(static_cast<size_t>(tt * n));
    cf.resize(static_cast<size_t>(tt * n));
    for (int64_t k = 0; k < tt; ++k)
      for (int64_t i = 0; i < n; ++i) {
        cq[k * n + i] = static_cast<float>(x[i * t + t0 + k]);
        cf[k * n + i] = static_cast<float>(xfp[i * t + t0 + k]);
      }
    if (cross) stats.accumulate(be, chunk_q.place(cq), chunk_fp.place(cf), tt, 1);
    else stats.accumulate(be, chunk_q.place(cq), tt, 1);
  }

  // No residual streams here: LoaQ's target has its linear-layer term only.
  std::unique_ptr<Backend> own_host;
  if (!be.host_addressable()) own_host = make_cpu_backend();
  MethodBackends bk{own_host ? *own_host : be, be, job.sweep_precision};
  // One linear: its factor goes to the device whenever there is one (a pool
  // too small for it fails naming the buffer, as any allocation does).
  bk.factor_on_device = !be.host_addressable();
  bk.factor_precision = job.factor_precision;
  const auto prepared = method->prepare(bk, stats);
  const QuantResult r = method->quantize(bk, w.data(), m, n, *prepared);

  make_dirs(job.out_dir);
  const std::string d = job.out_dir + "/";
  write_npy(d + "q.npy", DType::F64, {m, n}, r.dequant.data());
  write_npy(d + "codes.npy", DType::U8, {m, n}, r.codes.data());
  write_npy(d + "scales.npy", DType::F64, {r.ngroups, m}, r.scales.data());
  write_npy(d + "zeros.npy", DType::F64, {r.ngroups, m}, r.zeros.data());
  write_npy(d + "g_idx.npy", DType::I32, {n}, r.g_idx.data());

  LayerResult res;
  res.rows = m;
  res.cols = n;
  res.tokens = t;
  res.factor = bk.factor_on_device
                   ? be.name() + (bk.factor_precision == FactorPrecision::F32 ? " float32" : " float64")
                   : std::string("cpu float64");
  res.objective_fp = output_error(w, xfp, r.dequant, x, m, n, t);
  res.objective_q = output_error(w, x, r.dequant, x, m, n, t);
  return res;
}

}  // namespace streamq
