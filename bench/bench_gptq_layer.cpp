// CPU benchmark of one GPTQ layer: Hessian accumulation, factorization and the
// column sweep, each as seconds and achieved GFLOP/s next to the machine's
// sgemm/dgemm rate measured in the same run; then GPTQ against GPTAQ and CAE
// (exact variant) per layer and per group of linears sharing one input.
//
// usage: bench_gptq_layer [rows cols tokens rounds]   (default 4096 4096 8192 1)
// rounds > 1 repeats the method comparison round-robin (every method once per
// round, so that a machine's changing load hits them alike) and ends with the
// median and range of each ratio over the rounds.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "src/core/sysinfo.h"
#include "kernels/backend.h"
#include "src/methods/compensation.h"
#include "src/methods/gptq.h"
#include "src/methods/linear_stats.h"

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
  const int rounds = argc > 4 ? std::max(1, std::atoi(argv[4])) : 1;
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
  const double flop_f = 2.0 / 3.0 * n * n * n;  // potrf of J H J + trtri (kernels/cpu/linalg.cpp)
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

  // GPTQ vs GPTQ+CAE vs GPTAQ vs GPTAQ+CAE (exact variant) on the same
  // input, each timed whole: statistics (H alone, or H and the cross term
  // dX X^T from an FP flow), factorization with the compensation matrix, and
  // the sweep. "layer" is one linear (W m x n); "group" adds the linears that
  // share the input's statistics, factor and P (q,k,v at Llama's GQA 4:1:
  // k and v have m/4 rows each). "unfolded" is the previous formulation (P1
  // and P2 by full GEMMs, three sweep terms), for comparison in the same run.
  std::vector<float> x_fp(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_fp[i] = 1.05f * x[i] + 0.1f * nd(rng);
  const int64_t m_kv = std::max<int64_t>(1, m / 4);
  std::vector<double> w_kv(static_cast<size_t>(m_kv * n));
  for (auto& v : w_kv) v = ndd(rng) * 0.02;
  struct Variant_ {
    const char* name;
    MethodKind method;
    bool cae;
    CompensationForm form;
    int sweep_terms;     // cross-block GEMM terms (U, PD, ...)
    int stats_products;  // n^2 T products: X X^T, dX X^T
    int p_matrices;      // 0, 1 (triangular panels) or 2 (unfolded, full GEMMs)
  };
  const Variant_ variants[] = {
      {"gptq", MethodKind::Gptq, false, CompensationForm::Folded, 1, 1, 0},
      {"gptq+cae", MethodKind::Gptq, true, CompensationForm::Folded, 1, 1, 0},
      {"gptaq", MethodKind::Gptaq, false, CompensationForm::Folded, 2, 2, 1},
      {"gptaq+cae", MethodKind::Gptaq, true, CompensationForm::Folded, 2, 2, 1},
      {"gptaq+cae unf", MethodKind::Gptaq, true, CompensationForm::Unfolded, 3, 2, 2},
  };
  const CompensationPanels panels = compensation_panels(n);
  const double flop_p_tri = compensation_flops_blocked(n, panels), flop_p_full = 4.0 * n * n * n;
  auto sweep_flops = [&](int64_t rows, int terms) {
    return terms * (2.0 * rows * n * n / 2.0 + 2.0 * rows * n * cfg.blocksize / 2.0);
  };
  auto flops_of = [&](const Variant_& v, bool group) {
    const double p = v.p_matrices == 0 ? 0.0 : (v.p_matrices == 1 ? flop_p_tri : 2 * flop_p_full);
    const double sw = sweep_flops(m, v.sweep_terms) + (group ? 2 * sweep_flops(m_kv, v.sweep_terms) : 0.0);
    return v.stats_products * flop_h + flop_f + p + sw;
  };
  std::printf("\nexact variant; layer: W %lldx%lld; group: + 2 x W %lldx%lld sharing stats, factor and P\n",
              (long long)m, (long long)n, (long long)m_kv, (long long)n);
  std::printf("%-14s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "method", "stats s", "factor s", "sweep s", "kv sw s",
              "layer s", "vs gptq", "group s", "vs gptq", "flop x");
  const size_t nv = std::size(variants);
  std::vector<std::vector<double>> layer_ratio(nv), group_ratio(nv);
  for (int round = 0; round < rounds; ++round) {
  if (rounds > 1) std::printf("round %d\n", round + 1);
  double base_layer = 0, base_group = 0;
  for (size_t vi = 0; vi < nv; ++vi) {
    const Variant_& v = variants[vi];
    QuantConfig c = cfg;
    c.method = v.method;
    c.cae = v.cae;
    const bool fp = c.needs_fp_flow();
    LinearStats st(n);
    const Stopwatch t_s;
    for (int64_t done = 0, shift = 0; done < tokens; done += chunk, ++shift) {
      const int64_t t = std::min(chunk, tokens - done);
      if (!fp) st.accumulate(*be, x.data() + shift, t - 1, 1);
      else st.accumulate(*be, x.data() + shift, x_fp.data() + shift, t - 1, 1);
    }
    const double sec_s = t_s.seconds();
    const std::vector<double> cross = fp ? st.cross() : std::vector<double>{};
    const FactoredHessian f = factor_hessian(*be, st.hessian(), fp ? &cross : nullptr, n, c, v.form);
    const QuantResult q = gptq_quantize(*be, w.data(), m, n, f, c);
    double sec_kv = 0;
    for (int rep = 0; rep < 2; ++rep) sec_kv += gptq_quantize(*be, w_kv.data(), m_kv, n, f, c).seconds_sweep;
    const double layer = sec_s + f.seconds + q.seconds_sweep, group = layer + sec_kv;
    if (base_layer == 0) base_layer = layer, base_group = group;
    layer_ratio[vi].push_back(layer / base_layer);
    group_ratio[vi].push_back(group / base_group);
    std::printf("%-14s %8.3f %8.3f %8.3f %8.3f %8.3f %7.2fx %8.3f %7.2fx %7.2fx\n", v.name, sec_s, f.seconds,
                q.seconds_sweep, sec_kv, layer, layer / base_layer, group, group / base_group,
                flops_of(v, false) / flops_of(variants[0], false));
  }
  }
  if (rounds > 1) {
    auto summary = [](std::vector<double> r) {
      std::sort(r.begin(), r.end());
      const size_t k = r.size();
      const double med = k % 2 ? r[k / 2] : 0.5 * (r[k / 2 - 1] + r[k / 2]);
      std::printf(" %6.2fx [%.2f-%.2f]", med, r.front(), r.back());
    };
    std::printf("over %d rounds: median ratio vs gptq [min-max]\n%-14s %21s %21s\n", rounds, "method", "layer", "group");
    for (size_t vi = 0; vi < nv; ++vi) {
      std::printf("%-14s", variants[vi].name);
      summary(layer_ratio[vi]);
      summary(group_ratio[vi]);
      std::printf("\n");
    }
  }
  // The P product alone, for its rate.
  {
    std::vector<double> d(static_cast<size_t>(n * n)), u(static_cast<size_t>(n * n), 0.0);
    for (auto& v : d) v = ndd(rng);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = a; b < n; ++b) u[a * n + b] = a == b ? 1.0 : 0.01 * ndd(rng);
    const Stopwatch t_p;
    const std::vector<double> p = compensation_matrix_triangular(*be, d, u, n, 1.0);
    const double sec = t_p.seconds();
    std::printf("P = triu(D U^T,1) U on panels %lld/%lld: %.3f s, %.1f GFLOP (ideal %.1f, full GEMMs %.1f), %.1f GFLOP/s\n",
                (long long)panels.first, (long long)panels.second, sec, flop_p_tri / 1e9,
                compensation_flops_ideal(n) / 1e9, flop_p_full / 1e9, flop_p_tri / sec / 1e9);
  }
  // FLOPs per term (G): the floor of each time ratio at equal efficiency.
  std::printf("FLOPs (G): stats %.1f per n^2 T product; factor %.1f; P %.1f (triangular) or %.1f (full, per matrix); "
              "sweep term %.1f (layer) + %.1f (k,v)\n",
              flop_h / 1e9, flop_f / 1e9, flop_p_tri / 1e9, flop_p_full / 1e9, sweep_flops(m, 1) / 1e9,
              2 * sweep_flops(m_kv, 1) / 1e9);
  for (const Variant_& v : variants)
    std::printf("FLOP ratio %-14s / gptq: layer %.2f, group %.2f\n", v.name, flops_of(v, false) / flops_of(variants[0], false),
                flops_of(v, true) / flops_of(variants[0], true));
  return 0;
}
