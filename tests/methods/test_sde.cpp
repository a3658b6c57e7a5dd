// SDE (sde.h): the SVD re-parameterization reproduces W, the band's layout,
// its gradient against float64 finite differences and a naive float64
// product, and the STE fake quantization against Grid element by element.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/core/error.h"
#include "src/methods/grid.h"
#include "src/methods/sde.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// The host backend sde_decompose runs its SVD on.
Backend& host() {
  static const std::unique_ptr<Backend> cpu = make_cpu_backend();
  return *cpu;
}

constexpr double kF32Eps = std::numeric_limits<float>::epsilon();

struct Shape {
  int64_t rows, cols;
};
// Tall, wide and square, odd sizes.
constexpr Shape kShapes[] = {{37, 23}, {23, 37}, {31, 31}};

std::vector<float> random_matrix(std::mt19937_64& rng, int64_t rows, int64_t cols) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = nd(rng);
  return w;
}

double frobenius(const std::vector<double>& a) {
  double s = 0;
  for (double v : a) s += v * v;
  return std::sqrt(s);
}

// D = diag(S) + Map(P) in float64, from the layout the header states
// (written independently of sde_band_matrix).
std::vector<double> band_matrix_f64(const SdeLinear& l) {
  const int64_t r = l.rank;
  std::vector<double> d(static_cast<size_t>(r * r), 0.0);
  for (int64_t j = 0; j < r; ++j) d[j * r + j] = static_cast<double>(l.s[j]) + l.params[j];
  for (int64_t i = 1; i <= l.band; ++i)
    for (int64_t j = 0; j + i < r; ++j) {
      d[j * r + j + i] += l.params[(2 * i - 1) * r + j];
      d[(j + i) * r + j] += l.params[2 * i * r + j];
    }
  return d;
}

// W'(P) = U D Vt in float64 from the stored float factors.
std::vector<double> weight_f64(const SdeLinear& l) {
  const int64_t r = l.rank;
  const std::vector<double> d = band_matrix_f64(l);
  std::vector<double> ud(static_cast<size_t>(l.rows * r), 0.0), w(static_cast<size_t>(l.rows * l.cols), 0.0);
  for (int64_t i = 0; i < l.rows; ++i)
    for (int64_t a = 0; a < r; ++a)
      for (int64_t b = 0; b < r; ++b) ud[i * r + b] += static_cast<double>(l.u[i * r + a]) * d[a * r + b];
  for (int64_t i = 0; i < l.rows; ++i)
    for (int64_t b = 0; b < r; ++b)
      for (int64_t k = 0; k < l.cols; ++k) w[i * l.cols + k] += ud[i * r + b] * l.vt[b * l.cols + k];
  return w;
}

// (row a, column b) of D that parameter index q of P moves; b = -1 when unused.
std::pair<int64_t, int64_t> mapped_entry(const SdeLinear& l, int64_t q) {
  const int64_t r = l.rank, prow = q / r, j = q % r;
  if (prow == 0) return {j, j};
  const int64_t i = (prow + 1) / 2;
  if (j + i >= r) return {-1, -1};
  return prow % 2 == 1 ? std::pair<int64_t, int64_t>{j, j + i} : std::pair<int64_t, int64_t>{j + i, j};
}

TEST(Sde, ZeroBandReproducesTheWeightForTallWideAndSquare) {
  STREAMQ_FRESH_RNG(rng);
  auto be = make_cpu_backend();
  for (const Shape& sh : kShapes)
    for (int band : {0, 3}) {
      SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) + " band " + std::to_string(band));
      const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
      const SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, band);
      ASSERT_EQ(l.rank, std::min(sh.rows, sh.cols));
      ASSERT_EQ(l.band, band);
      ASSERT_EQ(static_cast<int64_t>(l.params.size()), (2 * band + 1) * l.rank);
      for (float p : l.params) ASSERT_EQ(p, 0.0f);
      for (int64_t j = 1; j < l.rank; ++j) ASSERT_GE(l.s[j - 1], l.s[j]);  // gesdd's order
      std::vector<float> out(w.size(), std::numeric_limits<float>::quiet_NaN());  // poisoned: every element written
      sde_weight(*be, l, out.data());
      // The float64 SVD is exact to ~1e-15; what remains is float32: U, S and
      // Vt each rounded once (3 eps), and two float GEMMs of inner size r
      // (the standard r * eps bound each, relative to |U||D||Vt| whose
      // Frobenius norm is within sqrt(r) of ||W||, measured ~1e-7 here).
      const double tol = (2.0 * static_cast<double>(l.rank) + 3.0) * kF32Eps;
      EXPECT_LT(test::relative_difference(out, w), tol);
    }
}

TEST(Sde, BandZeroChangesOnlyTheDiagonal) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto be = make_cpu_backend();
  for (const Shape& sh : kShapes) {
    const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
    SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, 0);
    ASSERT_EQ(static_cast<int64_t>(l.params.size()), l.rank);  // LSI: one increment per singular value
    for (auto& p : l.params) p = nd(rng);
    const std::vector<float> d = sde_band_matrix(l);
    for (int64_t a = 0; a < l.rank; ++a)
      for (int64_t b = 0; b < l.rank; ++b)
        EXPECT_EQ(d[a * l.rank + b], a == b ? l.s[a] + l.params[a] : 0.0f) << a << "," << b;
    std::vector<float> out(w.size());
    sde_weight(*be, l, out.data());
    const std::vector<double> ref = weight_f64(l);  // U diag(S + P) Vt
    // Same float32 GEMM bound as above, relative to ||W'(P)||.
    const double tol = (2.0 * static_cast<double>(l.rank) + 3.0) * kF32Eps;
    EXPECT_LT(test::relative_difference(out, std::vector<float>(ref.begin(), ref.end())), tol);
  }
}

TEST(Sde, BandIsClampedToRankMinusOne) {
  std::mt19937_64 rng(7);
  const std::vector<float> w = random_matrix(rng, 5, 9);
  const SdeLinear l = sde_decompose(host(), w.data(), 5, 9, 100);
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.band, 4);
  EXPECT_EQ(l.params.size(), 9u * 5u);
}

TEST(Sde, DecomposeRefusesNonFiniteWeightsAndBadShapes) {
  std::vector<float> w(12, 1.0f);
  w[7] = std::numeric_limits<float>::infinity();
  try {
    sde_decompose(host(), w.data(), 3, 4, 0);
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 3]"), std::string::npos) << e.what();
  }
  w[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(sde_decompose(host(), w.data(), 3, 4, 0), InputError);
  w[7] = 1.0f;
  EXPECT_THROW(sde_decompose(host(), w.data(), 0, 4, 0), InputError);
  EXPECT_THROW(sde_decompose(host(), w.data(), 3, 4, -1), InputError);
}

// Setting parameter q to t moves W' by exactly t u_a v_b^T, (a, b) its entry
// of D; an unused entry (past a diagonal's end) moves nothing.
TEST(Sde, MapPlacesEachParameterOnItsDiagonal) {
  STREAMQ_FRESH_RNG(rng);
  auto be = make_cpu_backend();
  for (const Shape& sh : kShapes) {
    const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
    SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, 3);
    const int64_t r = l.rank;
    std::vector<float> base(w.size()), moved(w.size());
    sde_weight(*be, l, base.data());
    const std::vector<float> d0 = sde_band_matrix(l);
    const float t = l.s[0];  // as large as the weight's largest direction: a misplaced entry shows at O(1)
    for (int64_t q = 0; q < l.param_count(); ++q) {
      const auto [a, b] = mapped_entry(l, q);
      SCOPED_TRACE("param " + std::to_string(q) + " -> D[" + std::to_string(a) + "][" + std::to_string(b) + "]");
      l.params[q] = t;
      const std::vector<float> d = sde_band_matrix(l);
      sde_weight(*be, l, moved.data());
      l.params[q] = 0.0f;
      if (a < 0) {  // unused: D and W' bit for bit unchanged
        EXPECT_EQ(d, d0);
        EXPECT_EQ(moved, base);
        continue;
      }
      for (int64_t k = 0; k < r * r; ++k)
        if (k != a * r + b) {
          ASSERT_EQ(d[k], d0[k]) << "D[" << k / r << "][" << k % r << "]";
        }
      std::vector<double> diff(w.size());
      for (int64_t i = 0; i < sh.rows; ++i)
        for (int64_t k = 0; k < sh.cols; ++k) {
          const double expect = static_cast<double>(t) * l.u[i * r + a] * l.vt[b * sh.cols + k];
          diff[i * sh.cols + k] = (static_cast<double>(moved[i * sh.cols + k]) - base[i * sh.cols + k]) - expect;
        }
      // Two float W' evaluations, each within (2r + 3) eps of its norm
      // (||W|| + |t| at most; the GEMM bound above), differenced.
      double wnorm = 0;
      for (float v : w) wnorm += static_cast<double>(v) * v;
      const double tol = 2.0 * (2.0 * static_cast<double>(r) + 3.0) * kF32Eps * (std::sqrt(wnorm) + std::fabs(t));
      EXPECT_LT(frobenius(diff), tol);
    }
  }
}

// L(P) = sum(G . W'(P)) is linear in P, so the central difference with a
// unit step is its derivative up to float64 rounding.
TEST(Sde, BandGradMatchesFiniteDifferencesAndTheFullProduct) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto be = make_cpu_backend();
  const Shape shapes[] = {{19, 13}, {13, 21}, {16, 16}};
  for (const Shape& sh : shapes)
    for (int band : {0, 3, 100}) {  // 100: clamped to rank - 1, every diagonal
      SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) + " band " + std::to_string(band));
      const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
      const std::vector<float> g = random_matrix(rng, sh.rows, sh.cols);
      SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, band);
      for (auto& p : l.params) p = 0.1f * nd(rng);  // away from P = 0
      const int64_t r = l.rank, n = l.param_count();
      std::vector<float> grad(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
      sde_band_grad(*be, l, g.data(), grad.data());

      // |dL/dD[a][b]| = |u_a^T G v_b| <= ||G||_2 <= ||G||_F. The float
      // M = U^T G carries at most rows * eps * |U|^T |G| per element, which
      // the read with v_b keeps under rows * eps * ||G||_F; one more eps for
      // the float result. The float64 references are ~1e-16 of the same.
      double gnorm = 0;
      for (float v : g) gnorm += static_cast<double>(v) * v;
      const double tol = (static_cast<double>(sh.rows) + 2.0) * kF32Eps * std::sqrt(gnorm);

      const auto loss = [&](const SdeLinear& lp) {
        const std::vector<double> wp = weight_f64(lp);
        double s = 0;
        for (size_t i = 0; i < wp.size(); ++i) s += static_cast<double>(g[i]) * wp[i];
        return s;
      };
      // Naive float64 dL/dD = U^T G V, the full r x r product.
      std::vector<double> dd(static_cast<size_t>(r * r), 0.0);
      for (int64_t a = 0; a < r; ++a)
        for (int64_t b = 0; b < r; ++b) {
          double s = 0;
          for (int64_t i = 0; i < sh.rows; ++i)
            for (int64_t k = 0; k < sh.cols; ++k)
              s += static_cast<double>(l.u[i * r + a]) * g[i * sh.cols + k] * l.vt[b * sh.cols + k];
          dd[a * r + b] = s;
        }
      for (int64_t q = 0; q < n; ++q) {
        const auto [a, b] = mapped_entry(l, q);
        const float p0 = l.params[q];
        l.params[q] = p0 + 1.0f;
        const double lp = loss(l);
        l.params[q] = p0 - 1.0f;
        const double lm = loss(l);
        l.params[q] = p0;
        const double fd = (lp - lm) / 2.0;
        if (a < 0) {  // unused: no effect on L, gradient exactly 0
          EXPECT_EQ(grad[q], 0.0f) << q;
          EXPECT_EQ(fd, 0.0) << q;
          continue;
        }
        EXPECT_NEAR(grad[q], fd, tol) << "param " << q;
        EXPECT_NEAR(grad[q], dd[a * r + b], tol) << "param " << q;
      }
    }
}

// SDE's factors are host vectors: a backend whose memory the host cannot
// address is refused up front, not handed host pointers.
// The banded U D of sde_weight against the float64 dense product U D Vt,
// random (nonzero) bands of several widths: float32 products of a sum of
// rank terms, bound 64 eps relative to ||W'|| (sums of <= 37 terms).
TEST(Sde, BandedWeightEqualsTheDenseProduct) {
  std::mt19937_64 rng(test::fresh_seed());
  auto be = make_cpu_backend();
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (const Shape sh : kShapes)
    for (const int band : {0, 1, 5, 40}) {
      const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
      SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, band);
      for (float& p : l.params) p = nd(rng);
      std::vector<float> got(w.size());
      sde_weight(*be, l, got.data());
      const std::vector<double> want = weight_f64(l);
      double err = 0;
      for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::abs(got[i] - want[i]));
      EXPECT_LE(err, 64 * kF32Eps * frobenius(want)) << sh.rows << "x" << sh.cols << " band " << band;
    }
}

// SdeOnBackend: the factors uploaded to a device (the emulated one, which
// computes as the CPU does), W' and the band's gradient from the device's
// GEMMs equal the host-only functions' bit for bit, on fresh random factors
// and bands of every shape; on the CPU nothing is allocated (the host arrays
// are the operands).
TEST(Sde, OnADeviceTheHostFunctionsBytes) {
  EmulatedBackendOptions opt;
  opt.memory_bytes = 8 << 20;
  auto dev = make_emulated_backend(opt);
  std::mt19937_64 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (const Shape& sh : kShapes) {
    SCOPED_TRACE(std::to_string(sh.rows) + " x " + std::to_string(sh.cols));
    const std::vector<float> w = random_matrix(rng, sh.rows, sh.cols);
    SdeLinear l = sde_decompose(host(), w.data(), sh.rows, sh.cols, 3);
    for (auto& p : l.params) p = nd(rng);
    const std::vector<float> g = random_matrix(rng, sh.rows, sh.cols);
    std::vector<float> want_w(w.size()), want_grad(static_cast<size_t>(l.param_count()));
    sde_weight(host(), l, want_w.data());
    sde_band_grad(host(), l, g.data(), want_grad.data());

    SdeOnBackend on_dev(*dev, l, "test");
    EXPECT_TRUE(on_dev.device);
    Buffer<float> w_dev = dev->alloc<float>(w.size(), "W'");
    sde_weight(*dev, l, on_dev, w_dev.data());
    EXPECT_EQ(dev->download_all(w_dev), want_w);
    const Buffer<float> g_dev = dev->upload_new(g, "dW'");
    std::vector<float> grad(want_grad.size());
    sde_band_grad(*dev, l, on_dev, g_dev.data(), grad.data());
    EXPECT_EQ(grad, want_grad);

    SdeOnBackend on_cpu(host(), l, "test");
    EXPECT_FALSE(on_cpu.device);
    EXPECT_TRUE(on_cpu.u.empty() && on_cpu.vt.empty() && on_cpu.ud.empty() && on_cpu.m.empty());
    std::vector<float> w_cpu(w.size()), grad_cpu(want_grad.size());
    sde_weight(host(), l, on_cpu, w_cpu.data());
    host().synchronize();
    EXPECT_EQ(w_cpu, want_w);
    sde_band_grad(host(), l, on_cpu, g.data(), grad_cpu.data());
    EXPECT_EQ(grad_cpu, want_grad);
  }
}

TEST(Sde, DeviceBackendIsRefused) {
  EmulatedBackendOptions opt;
  opt.memory_bytes = 1 << 20;
  auto be = make_emulated_backend(opt);
  std::mt19937_64 rng(11);
  const std::vector<float> w = random_matrix(rng, 6, 4);
  const SdeLinear l = sde_decompose(host(), w.data(), 6, 4, 1);
  std::vector<float> out(w.size()), grad(static_cast<size_t>(l.param_count()));
  EXPECT_THROW(sde_weight(*be, l, out.data()), InputError);
  EXPECT_THROW(sde_band_grad(*be, l, w.data(), grad.data()), InputError);
  EXPECT_THROW(sde_decompose(*be, w.data(), 6, 4, 1), InputError);
}

// Every grid the job can fit without a Hessian: both styles, symmetric and
// asymmetric, free-min, min/max and MSE clipping, per row and per group
// (20 columns in groups of 8: a partial last group).
std::vector<QuantConfig> fake_quant_configs() {
  std::vector<QuantConfig> out;
  for (int bits : {2, 3, 4, 8})
    for (GridStyle style : {GridStyle::Quarot, GridStyle::Gptq})
      for (int kind = 0; kind < 3; ++kind)  // sym, asym, free-min
        for (ClipSearch clip : {ClipSearch::MinMax, ClipSearch::Mse})
          for (int64_t group : {int64_t{-1}, int64_t{8}}) {
            QuantConfig c;
            c.bits = bits;
            c.grid_style = style;
            c.sym = kind == 0;
            c.free_min = kind == 2;
            c.clip = clip;
            c.group = group;
            out.push_back(c);
          }
  return out;
}

// fake_quant_ste's values are Grid's, fit per row/group and quantized per
// element (bit for bit: the same double arithmetic, one float rounding), and
// its mask is 1 exactly where the element is within half a step of its
// quantized value (the unclamped code is in range; clipped ones are at
// least half a step away). Min/max on QuaRot's symmetric grid clips nothing.
TEST(FakeQuantSte, MatchesGridAndMasksExactlyTheClippedElements) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t rows = 7, cols = 20;
  for (const QuantConfig& cfg : fake_quant_configs()) {
    SCOPED_TRACE(cfg.describe() + (cfg.free_min ? " free-min" : ""));
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = nd(rng) * std::exp(nd(rng));  // heavy-tailed rows
    std::vector<float> wq(w.size(), std::numeric_limits<float>::quiet_NaN());
    std::vector<uint8_t> mask(w.size(), 7);  // poisoned: neither 0 nor 1
    fake_quant_ste(cfg, w.data(), rows, cols, wq.data(), mask.data());
    const Grid grid(cfg);
    const int64_t g = cfg.group > 0 ? cfg.group : cols;
    int64_t clipped = 0;
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t c0 = 0; c0 < cols; c0 += g) {
        const int64_t len = std::min(g, cols - c0);
        std::vector<double> x(w.begin() + row * cols + c0, w.begin() + row * cols + c0 + len);
        const GridParams p = grid.fit(x.data(), len);
        for (int64_t k = 0; k < len; ++k) {
          const size_t idx = static_cast<size_t>(row * cols + c0 + k);
          const double q = grid.quantize(x[k], p);
          ASSERT_EQ(wq[idx], static_cast<float>(q)) << "row " << row << " col " << c0 + k;
          ASSERT_TRUE(mask[idx] == 0 || mask[idx] == 1) << static_cast<int>(mask[idx]);
          // Round to nearest puts an in-range value within scale / 2 of its
          // grid point, a clipped one at least scale / 2 past the end; ties
          // (exactly half a step) may go either way, hence 1e-9 (float64
          // rounding of q - x is ~1e-16 relative).
          const double err = std::fabs(q - x[k]) / p.scale;
          if (mask[idx]) {
            EXPECT_LE(err, 0.5 + 1e-9) << "row " << row << " col " << c0 + k;
          } else {
            EXPECT_GE(err, 0.5 - 1e-9) << "row " << row << " col " << c0 + k;
            ++clipped;
          }
        }
      }
    if (cfg.clip == ClipSearch::MinMax && cfg.sym && cfg.grid_style == GridStyle::Quarot) {
      EXPECT_EQ(clipped, 0);
    }
  }
}

TEST(FakeQuantSte, MseClipMasksTheTailsAndBackwardZeroesThem) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // 3 bits on Gaussian rows of 256: the MSE-optimal clip is near 2.2 sigma
  // (Banner et al., ACIQ) while each row's max is near 2.8 sigma, so the
  // search shrinks the range and the tails clip.
  const int64_t rows = 16, cols = 256;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = nd(rng);
  QuantConfig cfg;  // per row, QuaRot symmetric
  cfg.bits = 3;
  std::vector<float> wq(w.size());
  std::vector<uint8_t> mask(w.size());
  fake_quant_ste(cfg, w.data(), rows, cols, wq.data(), mask.data());
  for (uint8_t m : mask) ASSERT_EQ(m, 1);  // min/max: nothing clipped
  cfg.clip = ClipSearch::Mse;
  fake_quant_ste(cfg, w.data(), rows, cols, wq.data(), mask.data());
  int64_t clipped = 0;
  for (uint8_t m : mask) clipped += m == 0;
  EXPECT_GE(clipped, rows);  // measured: every row clips a few
  EXPECT_LT(clipped, rows * cols / 4);

  std::vector<float> g(w.size());
  for (auto& v : g) v = nd(rng);
  std::vector<float> gb = g;
  host().ste_mask_grad(mask.data(), gb.data(), static_cast<int64_t>(gb.size()));  // the training's op
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(gb[i], mask[i] ? g[i] : 0.0f) << i;  // identity inside, 0 outside
}

// A grid fit once (fit_ste_grid) and applied gives fake_quant_ste's
// values and mask on the weight it was fit on, and on another weight it
// applies those parameters unchanged (Grid::quantize with them).
TEST(FakeQuantSte, FixedGridEqualsTheOneShotOnItsWeightAndKeepsItsScales) {
  std::mt19937_64 rng(test::fresh_seed());
  for (const QuantConfig& cfg : fake_quant_configs()) {
    const int64_t rows = 7, cols = 45;
    const std::vector<float> w = random_matrix(rng, rows, cols);
    std::vector<float> a(w.size()), b(w.size());
    std::vector<uint8_t> ma(w.size()), mb(w.size());
    fake_quant_ste(cfg, w.data(), rows, cols, a.data(), ma.data());
    const SteGrid g = fit_ste_grid(cfg, w.data(), rows, cols);
    fake_quant_ste(cfg, g, w.data(), b.data(), mb.data());
    EXPECT_EQ(a, b) << cfg.describe();
    EXPECT_EQ(ma, mb) << cfg.describe();
    std::vector<float> w2 = random_matrix(rng, rows, cols);
    fake_quant_ste(cfg, g, w2.data(), b.data(), mb.data());
    const Grid grid(cfg);
    const int64_t gs = cfg.group > 0 ? std::min<int64_t>(cfg.group, cols) : cols, ng = (cols + gs - 1) / gs;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(b[r * cols + c], static_cast<float>(grid.quantize(w2[r * cols + c], g.params[r * ng + c / gs])))
            << cfg.describe();
  }
}

TEST(FakeQuantSte, TwoStageAndInvalidConfigsAreRefused) {
  QuantConfig cfg;
  cfg.clip = ClipSearch::TwoStage;
  std::vector<float> w(8, 1.0f), wq(8);
  std::vector<uint8_t> mask(8);
  EXPECT_THROW(fake_quant_ste(cfg, w.data(), 2, 4, wq.data(), mask.data()), InputError);
  cfg = QuantConfig{};
  cfg.bits = 1;  // QuantConfig::validate's range
  EXPECT_THROW(fake_quant_ste(cfg, w.data(), 2, 4, wq.data(), mask.data()), InputError);
  cfg = QuantConfig{};
  cfg.free_min = true;  // free-min with sym: validate refuses it
  EXPECT_THROW(fake_quant_ste(cfg, w.data(), 2, 4, wq.data(), mask.data()), InputError);
}

}  // namespace
}  // namespace streamq
