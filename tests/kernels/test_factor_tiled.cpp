// The tiled CPU factorizations (kernels/cpu/linalg.cpp) beyond the op table:
// many tiles on small matrices (tile sizes far below kFactorTile, so every
// code path of the tile loops runs in milliseconds), every size around a tile
// (1, tile-1, tile, tile+1, several tiles plus a remainder), pivots that fail
// in a later tile, and byte-identical results for 1, 2 and 16 threads.
#include <gtest/gtest.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {
namespace {

// The tiles are single-threaded OpenBLAS calls: the CPU backend sets that up
// (process-wide) when it is made.
void single_threaded_blas() { static const auto be = make_cpu_backend(); }

// U with H^-1 = U^T U, upper, in long double: H^-1 = L^-T L^-1, U = chol_lower(H^-1)^T.
std::vector<double> exact_inverse_upper_factor(const std::vector<double>& h, int64_t n) {
  const std::vector<Exact> li = exact_invert_lower(exact_cholesky_lower(to_exact(h), n), n);
  std::vector<Exact> hinv(static_cast<size_t>(n * n), 0.0L);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      Exact s = 0.0L;
      for (int64_t p = std::max(i, j); p < n; ++p) s += li[p * n + i] * li[p * n + j];
      hinv[i * n + j] = s;
    }
  const std::vector<Exact> l2 = exact_cholesky_lower(hinv, n);
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) u[i * n + j] = static_cast<double>(l2[j * n + i]);
  return u;
}

bool same_bytes(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

TEST(FactorTiled, MatchesTheExactFactorsAtEveryTileBoundary) {
  single_threaded_blas();
  STREAMQ_SEEDED_RNG(rng);
  for (int64_t tile : {1, 5, 16}) {
    const std::set<int64_t> sizes{1, std::max<int64_t>(1, tile - 1), tile, tile + 1, 3 * tile + 2, 100};
    for (int64_t n : sizes) {
      SCOPED_TRACE("tile=" + std::to_string(tile) + " n=" + std::to_string(n));
      const std::vector<double> h = random_spd(rng, n);
      const Tolerance tol = factor_tolerance(n);
      const std::vector<double> l_ref = to_double(exact_cholesky_lower(to_exact(h), n));

      std::vector<double> l = h;
      ASSERT_TRUE(cpu::cholesky_lower_tiled(l.data(), n, tile));
      EXPECT_EQ(strict_triangle_defect(l, n, /*upper=*/true, "cholesky"), "");
      EXPECT_LE(relative_error(l, l_ref), tol.max_error) << tol.reason;

      // The inverse of the rounded exact factor, with NaN garbage above the
      // diagonal that must not reach the result.
      std::vector<double> li = l_ref;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) li[i * n + j] = std::numeric_limits<double>::quiet_NaN();
      cpu::invert_lower_triangular_tiled(li.data(), n, tile);
      EXPECT_EQ(strict_triangle_defect(li, n, /*upper=*/true, "inverse"), "");
      EXPECT_LE(relative_error(li, to_double(exact_invert_lower(to_exact(l_ref), n))), tol.max_error) << tol.reason;

      std::vector<double> u = h;
      ASSERT_TRUE(cpu::inverse_upper_factor_tiled(u.data(), n, tile));
      EXPECT_EQ(strict_triangle_defect(u, n, /*upper=*/false, "inverse upper factor"), "");
      EXPECT_LE(relative_error(u, exact_inverse_upper_factor(h, n)), tol.max_error) << tol.reason;
    }
  }
}

// What one thread count computes, for the three ops on one matrix.
struct Factors {
  std::vector<double> chol, inv, upper;
};

Factors factors_with_threads(int threads, const std::vector<double>& h, int64_t n, int64_t tile) {
  Factors f{h, {}, h};
  tbb::task_arena(threads).execute([&] {
    EXPECT_TRUE(cpu::cholesky_lower_tiled(f.chol.data(), n, tile));
    f.inv = f.chol;
    cpu::invert_lower_triangular_tiled(f.inv.data(), n, tile);
    EXPECT_TRUE(cpu::inverse_upper_factor_tiled(f.upper.data(), n, tile));
  });
  return f;
}

TEST(FactorTiled, ByteIdenticalForOneTwoAndSixteenThreads) {
  single_threaded_blas();
  STREAMQ_SEEDED_RNG(rng);
  // 16 threads on a 2-core machine too: oversubscribed, the schedule varies most.
  const tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 16);
  // The production tile (3 tiles, a partial last one) and a small tile (13 tiles).
  for (auto [n, tile] : std::vector<std::pair<int64_t, int64_t>>{{2 * cpu::kFactorTile + 77, cpu::kFactorTile},
                                                                  {203, 16}}) {
    SCOPED_TRACE("n=" + std::to_string(n) + " tile=" + std::to_string(tile));
    const std::vector<double> h = random_spd(rng, n);
    const Factors one = factors_with_threads(1, h, n, tile);
    for (int threads : {2, 16, 16, 2}) {
      SCOPED_TRACE("threads=" + std::to_string(threads));
      const Factors other = factors_with_threads(threads, h, n, tile);
      EXPECT_TRUE(same_bytes(other.chol, one.chol));
      EXPECT_TRUE(same_bytes(other.inv, one.inv));
      EXPECT_TRUE(same_bytes(other.upper, one.upper));
    }
  }
  // Through the Backend (kFactorTile), as GPTQ calls it.
  const int64_t n = cpu::kFactorTile + 3;
  const std::vector<double> h = random_spd(rng, n);
  auto backend_factor = [&](int threads) {
    std::vector<double> u = h;
    auto be = make_cpu_backend();
    tbb::task_arena(threads).execute([&] { EXPECT_TRUE(be->inverse_upper_factor(u.data(), n)); });
    return u;
  };
  const std::vector<double> u1 = backend_factor(1);
  EXPECT_TRUE(same_bytes(backend_factor(2), u1));
  EXPECT_TRUE(same_bytes(backend_factor(16), u1));
}

TEST(FactorTiled, NotPositiveDefiniteInAnyTileReturnsFalse) {
  single_threaded_blas();
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 43, tile = 8;  // 6 tiles, the last 3 wide
  const std::vector<double> good = random_spd(rng, n);
  // A negative pivot in the first, a middle and the last tile (J H J moves
  // each to the mirrored tile for the inverse factor).
  for (int64_t row : {int64_t{2}, int64_t{20}, n - 1}) {
    SCOPED_TRACE("row=" + std::to_string(row));
    std::vector<double> h = good;
    h[row * n + row] -= 100.0;
    std::vector<double> a = h, b = h;
    EXPECT_FALSE(cpu::cholesky_lower_tiled(a.data(), n, tile));
    EXPECT_FALSE(cpu::inverse_upper_factor_tiled(b.data(), n, tile));
  }
  // The Backend's tile: two tiles, indefinite only in the second.
  const int64_t m = cpu::kFactorTile + 40;
  std::vector<double> h = random_spd(rng, m);
  h[(m - 1) * m + (m - 1)] -= 100.0;
  std::vector<double> a = h, b = h;
  EXPECT_FALSE(cpu::cholesky_lower(a.data(), m));
  EXPECT_FALSE(cpu::inverse_upper_factor(b.data(), m));
}

TEST(FactorTiled, NanOrZeroPivotInALaterTileThrows) {
  single_threaded_blas();
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 43, tile = 8;
  std::vector<double> h = random_spd(rng, n);
  h[35 * n + 20] = h[20 * n + 35] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> a = h, b = h;
  EXPECT_THROW(cpu::cholesky_lower_tiled(a.data(), n, tile), InternalError);
  EXPECT_THROW(cpu::inverse_upper_factor_tiled(b.data(), n, tile), InternalError);

  const std::vector<double> l = to_double(exact_cholesky_lower(to_exact(random_spd(rng, n)), n));
  std::vector<double> with_nan = l, singular = l;
  with_nan[35 * n + 20] = std::numeric_limits<double>::quiet_NaN();
  singular[37 * n + 37] = 0.0;
  EXPECT_THROW(cpu::invert_lower_triangular_tiled(with_nan.data(), n, tile), InternalError);
  try {
    cpu::invert_lower_triangular_tiled(singular.data(), n, tile);
    ADD_FAILURE() << "a singular factor was inverted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("diagonal element 37"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace streamq::test
