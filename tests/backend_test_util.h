// Helpers shared by the Backend op tests: seeded random inputs, NaN poisoning
// and the relative Frobenius error used by every comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace streamq::test {

constexpr double kF32Eps = std::numeric_limits<float>::epsilon();
constexpr double kF64Eps = std::numeric_limits<double>::epsilon();

// Declares `rng` seeded from fresh_seed() and traces the seed, so a failure
// prints the STREAMQ_TEST_SEED that replays it.
#define STREAMQ_SEEDED_RNG(rng)                                                  \
  const uint64_t rng##_seed = ::streamq::test::fresh_seed();                     \
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

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace streamq::test
