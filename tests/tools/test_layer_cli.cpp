// `streamq layer`: outputs are consistent, objectives are the direct sums, and
// the result is what the library's method path gives on the same statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "io/formats/npy.h"
#include "kernels/backend.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

TEST(LayerCli, QuantizesOneLinearAndReportsBothObjectives) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  const int64_t m = 24, n = 40, t = 300;
  std::vector<double> w(m * n), x(n * t), xfp(n * t);
  for (auto& v : w) v = 0.1 * nd(rng);
  for (auto& v : x) v = nd(rng);
  for (size_t i = 0; i < x.size(); ++i) xfp[i] = 1.1 * x[i] + 0.2 * nd(rng);
  test::ScratchDir dir("layer");
  write_npy(dir.file("w.npy"), DType::F64, {m, n}, w.data());
  std::vector<float> xf(x.begin(), x.end());  // X as float32 to cover that dtype too
  write_npy(dir.file("x.npy"), DType::F32, {n, t}, xf.data());
  write_npy(dir.file("xfp.npy"), DType::F64, {n, t}, xfp.data());

  const auto r = test::run_streamq({"layer", "--preset", "gptq-paper", "--weight", dir.file("w.npy"), "--x", dir.file("x.npy"), "--xfp",
                                    dir.file("xfp.npy"), "--out", dir.file("out"), "--method", "gptaq", "--cae",
                                    "--bits", "3", "--group", "8", "--act-order"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int64_t> qs, ss;
  const std::vector<double> q = read_matrix_f64(dir.file("out/q.npy"), &qs);
  const std::vector<double> scales = read_matrix_f64(dir.file("out/scales.npy"), &ss);
  const std::vector<double> zeros = read_matrix_f64(dir.file("out/zeros.npy"), &ss);
  const NpyArray codes = read_npy(dir.file("out/codes.npy"));
  const NpyArray gidx = read_npy(dir.file("out/g_idx.npy"));
  ASSERT_EQ(qs, (std::vector<int64_t>{m, n}));
  ASSERT_EQ(ss, (std::vector<int64_t>{5, m}));
  ASSERT_EQ(codes.dtype, DType::U8);
  ASSERT_EQ(gidx.dtype, DType::I32);
  std::vector<int32_t> g(n);
  std::memcpy(g.data(), gidx.data.data(), n * 4);
  for (int64_t row = 0; row < m; ++row)
    for (int64_t c = 0; c < n; ++c) {
      const double v = scales[g[c] * m + row] * (codes.data[row * n + c] - zeros[g[c] * m + row]);
      ASSERT_EQ(q[row * n + c], v) << row << "," << c;
    }

  // The objectives are ||W X~ - Q X||^2 and ||W X - Q X||^2 summed directly
  // (X as the float32 values the file holds).
  double ofp = 0, oq = 0;
  for (int64_t row = 0; row < m; ++row)
    for (int64_t k = 0; k < t; ++k) {
      double yfp = 0, yq = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double xi = xf[i * t + k];
        yfp += w[row * n + i] * xfp[i * t + k] - q[row * n + i] * xi;
        yq += (w[row * n + i] - q[row * n + i]) * xi;
      }
      ofp += yfp * yfp;
      oq += yq * yq;
    }
  auto value_of = [&](const std::string& key) {
    const auto pos = r.out.find(key + " ");
    EXPECT_NE(pos, std::string::npos) << r.out;
    return std::stod(r.out.substr(pos + key.size() + 1));
  };
  EXPECT_NEAR(value_of("objective_fp"), ofp, 1e-9 * ofp);
  EXPECT_NEAR(value_of("objective_q"), oq, 1e-9 * oq);

  // Same statistics through the library's method path give the same weights.
  auto be = make_cpu_backend();
  LinearStats stats(n);
  std::vector<float> cq(t * n), cf(t * n);
  for (int64_t k = 0; k < t; ++k)
    for (int64_t i = 0; i < n; ++i) {
      cq[k * n + i] = xf[i * t + k];
      cf[k * n + i] = static_cast<float>(xfp[i * t + k]);
    }
  stats.accumulate(*be, cq.data(), cf.data(), t, 1);
  QuantConfig cfg;
  cfg.method = MethodKind::Gptaq;
  cfg.cae = true;
  cfg.bits = 3;
  cfg.group = 8;
  cfg.act_order = true;
  const auto method = make_method(cfg);
  const QuantResult lib = method->quantize(*be, w.data(), m, n, *method->prepare(*be, stats));
  EXPECT_EQ(lib.dequant, q);
}

TEST(LayerCli, ShapeMismatchIsAnInputError) {
  test::ScratchDir dir("layer-bad");
  std::vector<double> w(6 * 4, 0.1), x(5 * 10, 1.0);
  write_npy(dir.file("w.npy"), DType::F64, {6, 4}, w.data());
  write_npy(dir.file("x.npy"), DType::F64, {5, 10}, x.data());
  const auto r = test::run_streamq({"layer", "--preset", "gptq-paper", "--weight", dir.file("w.npy"), "--x", dir.file("x.npy"), "--out",
                                    dir.file("out")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("x.npy"), std::string::npos) << r.err;
  test::write_all(dir.file("junk.npy"), "not numpy at all");
  const auto j = test::run_streamq({"layer", "--preset", "gptq-paper", "--weight", dir.file("junk.npy"), "--x", dir.file("x.npy"), "--out",
                                    dir.file("out")});
  EXPECT_EQ(j.exit_code, 2);
  EXPECT_NE(j.err.find("junk.npy"), std::string::npos) << j.err;
}

}  // namespace
}  // namespace streamq

namespace streamq {
namespace {

// On the emulated device the factor runs there too: in float64 it is the
// CPU's arithmetic up to the unfolded P1/P2's summation order, in float32 a
// rounding apart; the objective says both quantized the same linear well.
TEST(LayerCli, TheFactorRunsOnTheDeviceInEitherPrecision) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  const int64_t m = 16, n = 32, t = 256;
  std::vector<double> w(m * n), x(n * t), xfp(n * t);
  for (auto& v : w) v = 0.1 * nd(rng);
  for (auto& v : x) v = nd(rng);
  for (size_t i = 0; i < x.size(); ++i) xfp[i] = x[i] + 0.1 * nd(rng);
  test::ScratchDir dir("layer-device");
  write_npy(dir.file("w.npy"), DType::F64, {m, n}, w.data());
  write_npy(dir.file("x.npy"), DType::F64, {n, t}, x.data());
  write_npy(dir.file("xfp.npy"), DType::F64, {n, t}, xfp.data());
  std::string factor;  // the last run's "factor" line
  auto objective = [&](const std::string& out, const std::vector<std::string>& device) {
    std::vector<std::string> a = {"layer", "--preset", "gptq-paper", "--weight", dir.file("w.npy"), "--x",
                                  dir.file("x.npy"), "--xfp", dir.file("xfp.npy"), "--out", dir.file(out),
                                  "--method", "gptaq", "--bits", "4", "--group", "8"};
    a.insert(a.end(), device.begin(), device.end());
    const auto r = test::run_streamq(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto at = r.out.find("factor ");
    factor = at == std::string::npos ? "" : r.out.substr(at + 7, r.out.find('\n', at) - at - 7);
    const auto pos = r.out.find("objective_fp ");
    return pos == std::string::npos ? -1.0 : std::stod(r.out.substr(pos + 13));
  };
  const double cpu = objective("cpu", {"--device", "cpu"});
  EXPECT_EQ(factor, "cpu float64");
  const std::vector<std::string> emu = {"--device", "emulated", "--gpu-mem-limit", "64MiB", "--sweep-precision", "f64"};
  std::vector<std::string> f64 = emu, f32 = emu;
  f64.insert(f64.end(), {"--factor-precision", "f64"});
  f32.insert(f32.end(), {"--factor-precision", "f32"});
  const double d64 = objective("f64", f64);
  EXPECT_EQ(factor, "emulated float64");
  const double d32 = objective("f32", f32);
  EXPECT_EQ(factor, "emulated float32");
  ASSERT_GT(cpu, 0);
  // float64: the same codes up to ties moved by ~1e-15; float32: a float's
  // rounding of the factor (~1e-6 relative) can move a code one step, which
  // moves the objective by about a code's share (1/(m n)) of it.
  EXPECT_NEAR(d64 / cpu, 1.0, 1e-9);
  EXPECT_NEAR(d32 / cpu, 1.0, 1e-2);
  EXPECT_EQ(read_npy(dir.file("f64/codes.npy")).data, read_npy(dir.file("cpu/codes.npy")).data);
}

}  // namespace
}  // namespace streamq
