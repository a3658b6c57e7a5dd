// CPU benchmark of one GPTQ layer: Hessian accumulation, factorization and the
// column sweep, each as seconds and achieved GFLOP/s next to the machine's
// sgemm/dgemm rate measured in the same run.
//
// usage: bench_gptq_layer [rows cols tokens]   (default 4096 4096 8192)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/sysinfo.h"
#include "kernels/backend.h"
#include "methods/gptq.h"
#include "methods/linear_stats.h"

using namespace streamq;

template <typename T>
double gemm_gflops(Backend& be, int64_t n) {
  std::vector<T> a(n * n, T(0.5)), b(n * n, T(0.25)), c(n * n);
  be.gemm(Trans::N, Trans::N, n, n, n, T(1), a.data(), n, b.data(), n, T(0), c.data(), n);  // warm-up
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const Stopwatch t;
    be.gemm(Trans::N, Trans::N, n, n, n, T(1), a.data(), n, b.data(), n, T(0), c.data(), n);
    best = std::max(best, 2.0 * n * n * n / t.seconds() / 1e9);
  }
  return best;
}

int main(int argc, char** argv) {
  const int64_t m = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 4096;
  const int64_t tokens = argc > 3 ? std::atoll(argv[3]) : 8192;
  const int64_t chunk = 2048;
  auto be = make_cpu_backend();
  const double sgemm = gemm_gflops<float>(*be, 2048), dgemm = gemm_gflops<double>(*be, 2048);

  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(chunk * n));
  for (auto& v : x) v = nd(rng);
  // Each chunk is a fresh view of the same random tokens, shifted by one
  // feature, so H stays full rank without timing a random generator.
  LinearStats stats(n);
  const Stopwatch t_h;
  for (int64_t done = 0, shift = 0; done < tokens; done += chunk, ++shift) {
    const int64_t t = std::min(chunk, tokens - done);
    stats.accumulate(*be, x.data() + shift, t - 1, 1);
  }
  const double sec_h = t_h.seconds();
  std::vector<double> w(static_cast<size_t>(m * n));
  std::normal_distribution<double> ndd;
  for (auto& v : w) v = ndd(rng) * 0.02;
  QuantConfig cfg;
  cfg.bits = 4;
  cfg.group = 128;
  cfg.act_order = true;
  const Stopwatch t_q;
  const QuantResult r = gptq_quantize(*be, w.data(), m, n, stats.hessian(), cfg);
  const double sec_total = t_q.seconds();

  const double flop_h = 2.0 * n * n * tokens;
  const double flop_f = 4.0 / 3.0 * n * n * n;  // potrf + potri + potrf
  // Cross-block GEMMs sum to ~m n^2 multiply-adds; in-block rank-1 updates m n B.
  const double flop_s = 2.0 * m * n * n / 2.0 + 2.0 * m * n * cfg.blocksize / 2.0;
  std::printf("GPTQ layer benchmark: W %lldx%lld, %lld tokens, w4 g128 act-order, float64 sweep\n",
              (long long)m, (long long)n, (long long)tokens);
  std::printf("measured peaks: sgemm %.1f GFLOP/s, dgemm %.1f GFLOP/s (2048^3)\n", sgemm, dgemm);
  std::printf("%-24s %9s %10s %12s %10s\n", "stage", "seconds", "GFLOP", "GFLOP/s", "of peak");
  auto row = [&](const char* name, double sec, double flop, double peak) {
    std::printf("%-24s %9.3f %10.1f %12.1f %9.0f%%\n", name, sec, flop / 1e9, flop / sec / 1e9,
                100.0 * flop / sec / 1e9 / peak);
  };
  row("hessian (f32 gemm)", sec_h, flop_h, sgemm);
  row("damp+cholesky+inverse", r.seconds_factor, flop_f, dgemm);
  row("sweep (f64)", r.seconds_sweep, flop_s, dgemm);
  std::printf("%-24s %9.3f\n", "gptq total (factor+sweep+io)", sec_total);
  std::printf("floor at peak: hessian %.3f s, factor %.3f s, sweep %.3f s\n", flop_h / sgemm / 1e9,
              flop_f / dgemm / 1e9, flop_s / dgemm / 1e9);
  std::printf("peak RSS %.1f MiB\n", peak_rss_bytes() / 1048576.0);

  // GPTQ vs GPTAQ vs GPTAQ+CAE on the same layer, each timed whole: statistics
  // (H alone, or H and the cross term dX X^T from an FP flow), factorization
  // with P1/P2 precompute, and the sweep.
  std::vector<float> x_fp(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_fp[i] = 1.05f * x[i] + 0.1f * nd(rng);
  std::printf("\n%-14s %9s %9s %9s %9s %8s\n", "method", "stats s", "factor s", "sweep s", "total s", "vs gptq");
  double base = 0;
  for (int variant = 0; variant < 3; ++variant) {
    QuantConfig c = cfg;
    c.method = variant == 0 ? MethodKind::Gptq : MethodKind::Gptaq;
    c.cae = variant == 2;
    LinearStats st(n);
    const Stopwatch t_s;
    for (int64_t done = 0, shift = 0; done < tokens; done += chunk, ++shift) {
      const int64_t t = std::min(chunk, tokens - done);
      if (variant == 0) st.accumulate(*be, x.data() + shift, t - 1, 1);
      else st.accumulate(*be, x.data() + shift, x_fp.data() + shift, t - 1, 1);
    }
    const double sec_s = t_s.seconds();
    const std::vector<double> cross = variant == 0 ? std::vector<double>{} : st.cross();
    const QuantResult q = gptq_quantize(*be, w.data(), m, n, st.hessian(), c, variant == 0 ? nullptr : &cross);
    const double total_v = sec_s + q.seconds_factor + q.seconds_sweep;
    if (variant == 0) base = total_v;
    std::printf("%-14s %9.3f %9.3f %9.3f %9.3f %7.2fx\n", variant == 0 ? "gptq" : (variant == 1 ? "gptaq" : "gptaq+cae"),
                sec_s, q.seconds_factor, q.seconds_sweep, total_v, total_v / base);
  }
  // The extra work is arithmetic the method needs: a second n^2 T product for
  // dX X^T, two n^3 products per P matrix, and one more cross-block GEMM per term.
  const double flop_gptq = flop_h + flop_f + flop_s;
  const double flop_cae = 2 * flop_h + flop_f + 2 * 4.0 * n * n * n + 3 * flop_s;
  std::printf("FLOP ratio gptaq+cae / gptq: %.2f (floor of the time ratio at equal efficiency)\n", flop_cae / flop_gptq);
  return 0;
}
