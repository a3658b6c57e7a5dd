// --linear-concurrency: the linears of a sub-layer group quantized as
// concurrent tasks give the same bytes as one at a time, for GPTQ and for
// GPTAQ + CAE (both flows, every statistic), and the report says what ran.
// The in-process test below runs the parallel stage on plain threads, where
// ThreadSanitizer (scripts/tsan.sh) sees every access of the shared inputs.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "kernels/backend.h"
#include "src/methods/loaq.h"
#include "src/methods/method.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

test::CliResult quantize(const std::string& out, const std::vector<std::string>& method,
                         const std::string& concurrency) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512", "--seed", "7",
                                "--bits", "3", "--group", "32", "--threads", "2", "--quiet"};
  a.insert(a.end(), method.begin(), method.end());
  if (!concurrency.empty()) a.push_back("--linear-concurrency=" + concurrency);
  return test::run_streamq(a);
}

void expect_same_outputs_across_concurrency(const std::vector<std::string>& method, const std::string& tag) {
  test::ScratchDir dir("linconc-" + tag);
  // "" is the default (0 = auto): unlimited memory gives full concurrency.
  const std::vector<std::pair<std::string, int>> runs = {{"1", 1}, {"", 3}, {"3", 3}, {"2", 2}};
  std::string ref;
  for (const auto& [flag, want] : runs) {
    const std::string out = dir.file("c" + (flag.empty() ? std::string("auto") : flag));
    const auto r = quantize(out, method, flag);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto rep = nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
    EXPECT_EQ(rep.at("memory").at("linear_concurrency").get<int>(), want) << tag << " " << flag;
    if (ref.empty()) {
      ref = out;
      continue;
    }
    for (const char* f : {"model.safetensors", "streamq_quant.safetensors", "config.json"})
      EXPECT_TRUE(test::output_bytes(ref + "/" + f) == test::output_bytes(out + "/" + f))
          << tag << ": " << f << " differs between --linear-concurrency 1 and '" << flag << "'";
  }
}

TEST(LinearConcurrency, GptqOutputsAreByteIdenticalWhateverTheConcurrency) {
  expect_same_outputs_across_concurrency({"--method", "gptq", "--act-order"}, "gptq");
}

TEST(LinearConcurrency, GptaqCaeOutputsAreByteIdenticalWhateverTheConcurrency) {
  expect_same_outputs_across_concurrency({"--method", "gptaq", "--cae"}, "gptaq-cae");
}

// One linear of a group as the pipeline's parallel stage does it: LoaQ's
// target, the method's sweep against the shared prepared input, the objective.
struct LinearOut {
  QuantResult r;
  double objective = 0;
};
LinearOut quantize_one(Backend& be, const Method& method, const PreparedInput& prepared, const LinearStats& stats,
                       const std::vector<double>& h, const std::vector<double>& d1, const double* w, int64_t m,
                       int64_t n) {
  LinearOut o;
  const std::vector<double> target = loaq_target(be, w, m, n, h, &d1, nullptr, 0.5, 0.0, 0.01);
  o.r = method.quantize(be, target.data(), m, n, prepared);
  o.objective = layer_objective(be, w, o.r, stats.xx_sum(), stats.tokens());
  return o;
}

// The linears of a group (here three slices of one random layer, sharing its
// input) quantized on threads at once against one Backend, Method, LinearStats
// and PreparedInput give the bytes of one at a time: those are only read.
TEST(LinearConcurrency, LinearsOfAGroupOnThreadsMatchOneAtATime) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  constexpr int kLinears = 3;
  const int64_t rows = 16, n = 64;
  const test::NaiveLayer L = test::random_naive_layer(rng, kLinears * rows, n, true, 0.2);
  LinearStats stats(n);
  std::vector<float> x(L.tokens * n), xf(L.tokens * n);
  for (int64_t t = 0; t < L.tokens; ++t)
    for (int64_t i = 0; i < n; ++i) {
      x[t * n + i] = static_cast<float>(L.x[i * L.tokens + t]);
      xf[t * n + i] = static_cast<float>(L.x_fp[i * L.tokens + t]);
    }
  stats.accumulate(*be, x.data(), xf.data(), L.tokens, 1);
  const std::vector<double> h = stats.hessian(), d1 = stats.cross();
  for (int variant = 0; variant < 2; ++variant) {
    QuantConfig cfg;
    cfg.bits = 3;
    cfg.group = 16;
    if (variant == 0) {
      cfg.act_order = true;
    } else {
      cfg.method = MethodKind::Gptaq;
      cfg.cae = true;
      cfg.clip = ClipSearch::TwoStage;
    }
    SCOPED_TRACE(cfg.describe());
    const auto method = make_method(cfg);
    const auto prepared = method->prepare(*be, stats);
    std::vector<LinearOut> one(kLinears), many(kLinears);
    for (int k = 0; k < kLinears; ++k)
      one[k] = quantize_one(*be, *method, *prepared, stats, h, d1, L.w.data() + k * rows * n, rows, n);
    std::vector<std::thread> threads;
    for (int k = 0; k < kLinears; ++k)
      threads.emplace_back([&, k] {
        many[k] = quantize_one(*be, *method, *prepared, stats, h, d1, L.w.data() + k * rows * n, rows, n);
      });
    for (auto& t : threads) t.join();
    for (int k = 0; k < kLinears; ++k) {
      EXPECT_EQ(many[k].r.dequant, one[k].r.dequant) << "linear " << k;
      EXPECT_EQ(many[k].r.codes, one[k].r.codes) << "linear " << k;
      EXPECT_EQ(many[k].r.scales, one[k].r.scales) << "linear " << k;
      EXPECT_EQ(many[k].r.zeros, one[k].r.zeros) << "linear " << k;
      EXPECT_EQ(many[k].objective, one[k].objective) << "linear " << k;
    }
  }
}

TEST(LinearConcurrency, NegativeValueIsRefused) {
  test::ScratchDir dir("linconc-bad");
  const auto r = quantize(dir.file("o"), {}, "-1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--linear-concurrency"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
