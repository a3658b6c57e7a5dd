// Helpers shared by the Backend op tests: seeded random inputs, NaN poisoning,
// guarded buffers in any backend's memory, the relative Frobenius error used
// by every comparison, and the padded-stride GEMM problem with its float64
// reference that every backend's GEMM test runs. Header-only: the GPU test
// binary compiles the op table (tests/kernels/test_backend_ops.cpp) without
// tests/support/test_util.cpp.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace streamq::test {

constexpr double kF32Eps = std::numeric_limits<float>::epsilon();
constexpr double kF64Eps = std::numeric_limits<double>::epsilon();

// test_util.h's fresh_seed() for binaries that do not link test_util.cpp:
// fresh each run unless STREAMQ_TEST_SEED replays one.
inline uint64_t replayable_seed() {
  if (const char* s = std::getenv("STREAMQ_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Declares `rng` seeded from replayable_seed() and traces the seed, so a
// failure prints the STREAMQ_TEST_SEED that replays it.
#define STREAMQ_SEEDED_RNG(rng)                                                  \
  const uint64_t rng##_seed = ::streamq::test::replayable_seed();                \
  SCOPED_TRACE("replay with STREAMQ_TEST_SEED=" + std::to_string(rng##_seed));   \
  std::mt19937_64 rng(rng##_seed)

template <typename T>
std::vector<T> random_normal(std::mt19937_64& rng, int64_t n, double stddev = 1.0) {
  std::normal_distribution<double> dist(0.0, stddev);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

template <typename T>
std::vector<T> poisoned(int64_t n) {
  return std::vector<T>(static_cast<size_t>(n), std::numeric_limits<T>::quiet_NaN());
}

// ||got - ref||_F / ||scale||_F over the first n elements. `scale` is the
// reference itself, or |.|-magnitudes where the exact result may cancel. Any
// NaN in got (an unwritten poisoned element) makes the result NaN, which fails
// every EXPECT_LE.
template <typename T>
double relative_error(const T* got, const double* ref, const double* scale, int64_t n) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    diff += d * d;
    norm += scale[i] * scale[i];
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

template <typename T>
double relative_error(const std::vector<T>& got, const std::vector<double>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  return relative_error(got.data(), ref.data(), ref.data(), static_cast<int64_t>(ref.size()));
}

// Elements on each side of a guarded buffer that ops must leave alone, and
// the poison they hold: all-ones bytes are NaN as float and as double, so an
// unwritten output element also turns any relative error into NaN.
constexpr size_t kGuardElems = 64;
constexpr unsigned char kPoisonByte = 0xFF;

// n elements in a backend's memory between two poisoned guards, through the
// Backend interface only (so one test runs on every backend). The elements
// start poisoned (an output) or hold a host vector (an input, or an in-place
// output); that vector must outlive the queued upload (until download()).
template <typename T>
class GuardedBuffer {
 public:
  GuardedBuffer(Backend& be, size_t n)
      : be_(&be), n_(n), buf_(be.alloc<T>(n + 2 * kGuardElems, "guarded test buffer")) {
    be.fill_bytes(buf_.data(), kPoisonByte, buf_.bytes());
  }
  GuardedBuffer(Backend& be, const std::vector<T>& h) : GuardedBuffer(be, h.size()) {
    be.upload(buf_, h.data(), h.size(), kGuardElems);
  }
  T* get() const { return buf_.data() + kGuardElems; }
  size_t size() const { return n_; }

  // The n elements (waits for the backend); `defect` (when given) gets a
  // description naming `what` if a guard was written.
  std::vector<T> download(const std::string& what, std::string* defect = nullptr) const {
    const std::vector<T> all = be_->download_all(buf_);
    const auto intact = [&](size_t from, size_t to) {
      const auto* p = reinterpret_cast<const unsigned char*>(all.data());
      for (size_t b = from * sizeof(T); b < to * sizeof(T); ++b)
        if (p[b] != kPoisonByte) return false;
      return true;
    };
    std::string found;
    if (!intact(0, kGuardElems)) found = what + ": wrote before the start of the buffer";
    if (!intact(kGuardElems + n_, all.size())) found = what + ": wrote past the end of the buffer";
    if (!found.empty()) {
      if (defect) {
        if (defect->empty()) *defect = found;
      } else {
        ADD_FAILURE() << found;
      }
    }
    return std::vector<T>(all.begin() + kGuardElems, all.begin() + kGuardElems + n_);
  }

 private:
  Backend* be_;
  size_t n_;
  Buffer<T> buf_;
};

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// C = alpha op(A) op(B) + beta C on fresh normal inputs, stored with padded
// row strides whose padding holds NaN, so a backend that uses a wrong stride
// reads poison. With beta == 0 all of C is NaN: BLAS must not read it.
template <typename T>
struct PaddedGemm {
  Trans ta = Trans::N, tb = Trans::N;
  int64_t m = 0, n = 0, k = 0;
  T alpha = T(1.25), beta = T(0);
  int64_t lda = 0, ldb = 0, ldc = 0;
  // Row-major with strides lda, ldb, ldc: A is m x k (k x m when ta == T),
  // B is k x n (n x k when tb == T), C is m x n.
  std::vector<T> a, b, c;
  // Both m x n, dense: the float64 result, and |alpha||op(A)||op(B)| + |beta C|,
  // the scale errors are normalized by (the result itself may cancel).
  std::vector<double> ref, mag;

  std::string describe() const {
    return (testing::Message() << "ta=" << (ta == Trans::N ? "N" : "T") << " tb=" << (tb == Trans::N ? "N" : "T")
                               << " m=" << m << " n=" << n << " k=" << k << " beta=" << beta)
        .GetString();
  }
  // The m x n result out of a C stored like c.
  std::vector<T> dense(const std::vector<T>& c_out) const {
    std::vector<T> d(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) d[i * n + j] = c_out[i * ldc + j];
    return d;
  }
  // Success while every row's padding (columns n to ldc) in c_out is still NaN.
  testing::AssertionResult padding_untouched(const std::vector<T>& c_out) const {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = n; j < ldc; ++j)
        if (!std::isnan(c_out[i * ldc + j]))
          return testing::AssertionFailure() << "row padding written at (" << i << ", " << j << ")";
    return testing::AssertionSuccess();
  }
};

template <typename T>
PaddedGemm<T> random_padded_gemm(std::mt19937_64& rng, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                                 T beta) {
  PaddedGemm<T> g;
  g.ta = ta;
  g.tb = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.beta = beta;
  std::normal_distribution<double> normal;
  const int64_t a_rows = ta == Trans::N ? m : k, a_cols = ta == Trans::N ? k : m;
  const int64_t b_rows = tb == Trans::N ? k : n, b_cols = tb == Trans::N ? n : k;
  g.lda = a_cols + 3;
  g.ldb = b_cols + 5;
  g.ldc = n + 2;
  g.a = poisoned<T>(a_rows * g.lda);
  g.b = poisoned<T>(b_rows * g.ldb);
  g.c = poisoned<T>(m * g.ldc);
  for (int64_t i = 0; i < a_rows; ++i)
    for (int64_t j = 0; j < a_cols; ++j) g.a[i * g.lda + j] = T(normal(rng));
  for (int64_t i = 0; i < b_rows; ++i)
    for (int64_t j = 0; j < b_cols; ++j) g.b[i * g.ldb + j] = T(normal(rng));
  if (beta != T(0)) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) g.c[i * g.ldc + j] = T(normal(rng));
  }
  auto op_a = [&](int64_t i, int64_t p) {
    return double(ta == Trans::N ? g.a[i * g.lda + p] : g.a[p * g.lda + i]);
  };
  auto op_b = [&](int64_t p, int64_t j) {
    return double(tb == Trans::N ? g.b[p * g.ldb + j] : g.b[j * g.ldb + p]);
  };
  g.ref.resize(m * n);
  g.mag.resize(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0, s_abs = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        s += op_a(i, p) * op_b(p, j);
        s_abs += std::abs(op_a(i, p) * op_b(p, j));
      }
      const double c0 = beta != T(0) ? double(g.c[i * g.ldc + j]) : 0.0;
      g.ref[i * n + j] = double(g.alpha) * s + double(beta) * c0;
      g.mag[i * n + j] = std::abs(double(g.alpha)) * s_abs + std::abs(double(beta) * c0);
    }
  return g;
}

}  // namespace streamq::test
