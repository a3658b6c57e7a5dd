// Cholesky-based factorizations on the CPU (the GPTQ inverse-Hessian factor):
// tiled float64 (and, for inverse_upper_factor, float32: a GPU's precision,
// the twin of the CUDA backend's float factor) algorithms on oneTBB whose results are byte-identical for any
// thread count, as the tiled GEMM (gemm.cpp) is.
//
// The matrix is cut into fixed kFactorTile square tiles (never derived from
// the thread count). Each tile operation is one single-threaded BLAS/LAPACK
// call on fixed arguments (OpenBLAS runs with one thread, set by the CPU
// backend), and each tile receives its updates in one fixed order, so every
// element's arithmetic is the same whichever thread runs which tile and when.
// Before this, LAPACK's own potrf/trtri ran on one core for that determinism,
// at ~40% of the machine's dgemm rate (bench/RESULTS.md).
//
// The matrices are row-major; a row-major lower triangle read as column-major
// is an upper one, so the per-tile LAPACK calls are the column-major 'U' ones.
#include <cblas.h>
#include <lapacke.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"

namespace streamq::cpu {
namespace {

[[noreturn]] void throw_lapack_error(const char* op, const char* routine, lapack_int info, int64_t n) {
  throw InternalError(std::string(op) + ": " + routine + " failed with info=" + std::to_string(info) + " on a " +
                      std::to_string(n) + "x" + std::to_string(n) + " tile (a negative info is a bad argument)");
}

[[noreturn]] void throw_nan(const char* op, int64_t row, const char* triangle, int64_t n) {
  throw InternalError(std::string(op) + ": NaN in row " + std::to_string(row) + " of the " + triangle +
                      " triangle of the " + std::to_string(n) + "x" + std::to_string(n) + " input matrix");
}

// The BLAS/LAPACK routine of each element type.
inline lapack_int potrf_u(int n, double* a, int ld) { return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', n, a, ld); }
inline lapack_int potrf_u(int n, float* a, int ld) { return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', n, a, ld); }
inline lapack_int trtri_u(int n, double* a, int ld) { return LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'U', 'N', n, a, ld); }
inline lapack_int trtri_u(int n, float* a, int ld) { return LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', n, a, ld); }
inline void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int m, int n, double alpha, const double* a,
                 int lda, double* b, int ldb) {
  cblas_dtrsm(CblasRowMajor, side, uplo, t, CblasNonUnit, m, n, alpha, a, lda, b, ldb);
}
inline void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int m, int n, float alpha, const float* a,
                 int lda, float* b, int ldb) {
  cblas_strsm(CblasRowMajor, side, uplo, t, CblasNonUnit, m, n, alpha, a, lda, b, ldb);
}
inline void trmm_right_lower(int m, int n, const double* a, int lda, double* b, int ldb) {
  cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0, a, lda, b, ldb);
}
inline void trmm_right_lower(int m, int n, const float* a, int lda, float* b, int ldb) {
  cblas_strmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0f, a, lda, b, ldb);
}
inline void syrk_lower_minus(int n, int k, const double* a, int lda, double* c, int ldc) {
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, -1.0, a, lda, 1.0, c, ldc);
}
inline void syrk_lower_minus(int n, int k, const float* a, int lda, float* c, int ldc) {
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, -1.0f, a, lda, 1.0f, c, ldc);
}
inline void gemm_rm(CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                    int ldb, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, tb, m, n, k, alpha, a, lda, b, ldb, 1.0, c, ldc);
}
inline void gemm_rm(CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                    int ldb, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, m, n, k, alpha, a, lda, b, ldb, 1.0f, c, ldc);
}
template <typename T>
const char* prefix() { return sizeof(T) == 8 ? "d" : "s"; }

// The first (lowest) row index reported by any task.
struct FirstRow {
  std::atomic<int64_t> row;
  explicit FirstRow(int64_t none) : row(none) {}
  void offer(int64_t i) {
    int64_t cur = row.load();
    while (i < cur && !row.compare_exchange_weak(cur, i)) {
    }
  }
};

template <typename T>
bool lower_row_has_nan(const T* row, int64_t i) {
  bool nan = false;
  for (int64_t j = 0; j <= i; ++j) nan |= std::isnan(row[j]);
  return nan;
}

// A NaN in the triangle a factorization reads is an error, not "not positive
// definite" (LAPACKE's own check reported it so before): found up front,
// since a NaN can pass a pivot test (NaN <= 0 is false) and spread silently.
// zero_upper also zeroes the strict upper triangle in the same pass.
template <typename T>
void check_lower_for_nan(const char* op, T* a, int64_t n, bool zero_upper) {
  FirstRow nan_row(n);
  parallel_rows(n, n, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      if (zero_upper) std::fill(a + i * n + i + 1, a + (i + 1) * n, T(0));
      if (lower_row_has_nan(a + i * n, i)) nan_row.offer(i);
    }
  });
  if (nan_row.row.load() < n) throw_nan(op, nan_row.row.load(), "lower", n);
}

// Zero the strict upper triangle of row-major a[n,n].
template <typename T>
void zero_strict_upper(T* a, int64_t n) {
  parallel_rows(n, n / 2 + 1, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) std::fill(a + i * n + i + 1, a + (i + 1) * n, T(0));
  });
}

// J A J (J the exchange matrix): a row-major square array reversed end to
// end, rows i and n-1-i by one task, which then also either checks the
// result's lower triangle for NaN (before a factorization) or zeroes its
// strict lower triangle (after one), so each is one pass over memory.
enum class AfterReverse { CheckLowerForNan, ZeroStrictLower };
template <typename T>
void reverse_both_ways(T* a, int64_t n, AfterReverse then, const char* op) {
  FirstRow nan_row(n);
  parallel_rows((n + 1) / 2, 2 * n, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t mirror = n - 1 - i;
      T* top = a + i * n;
      T* bottom = a + mirror * n;
      const int64_t count = i == mirror ? n / 2 : n;  // the middle row reverses within itself
      for (int64_t j = 0; j < count; ++j) std::swap(top[j], bottom[n - 1 - j]);
      for (int64_t r : {i, mirror}) {
        T* row = a + r * n;
        if (then == AfterReverse::ZeroStrictLower)
          std::fill(row, row + r, T(0));
        else if (lower_row_has_nan(row, r))
          nan_row.offer(r);
        if (mirror == i) break;
      }
    }
  });
  // Row r of J A J's lower triangle is row n-1-r of A's upper triangle.
  if (nan_row.row.load() < n) throw_nan(op, n - 1 - nan_row.row.load(), "upper", n);
}

// The row-major n x n matrix as tiles of nb x nb; the last tile row and
// column are n - (t-1) nb wide. Tile (i, j) starts at a + i nb n + j nb.
template <typename T>
struct Tiles {
  T* a;
  int64_t n, nb, t;
  Tiles(T* a_, int64_t n_, int64_t nb_) : a(a_), n(n_), nb(nb_), t((n_ + nb_ - 1) / nb_) {}
  T* at(int64_t i, int64_t j) const { return a + i * nb * n + j * nb; }
  int size(int64_t i) const { return static_cast<int>(std::min(nb, n - i * nb)); }
  int ld() const { return static_cast<int>(n); }
};

// Runs body(k) for k in [0, count) with one task per k (grain 1): the tasks
// are whole tiles, and tile boundaries, not the partitioner, fix the arithmetic.
template <typename Body>
void for_each_tile(int64_t count, const Body& body) {
  if (count == 1) {
    body(int64_t{0});
    return;
  }
  if (count > 1)
    tbb::parallel_for(int64_t{0}, count, int64_t{1}, [&](int64_t k) { body(k); }, tbb::simple_partitioner());
}

// Diagonal tile k: L_kk = chol(A_kk), in place (lower). Returns LAPACK's info.
template <typename T>
lapack_int factor_diagonal_tile(const Tiles<T>& m, int64_t k, const char* op) {
  const lapack_int info = potrf_u(m.size(k), m.at(k, k), m.ld());
  if (info < 0) throw_lapack_error(op, (std::string(prefix<T>()) + "potrf").c_str(), info, m.size(k));
  return info;
}

// Tile (i, k), i > k: L_ik = A_ik L_kk^-T.
template <typename T>
void solve_panel_tile(const Tiles<T>& m, int64_t i, int64_t k) {
  trsm(CblasRight, CblasLower, CblasTrans, m.size(i), m.size(k), T(1), m.at(k, k), m.ld(), m.at(i, k), m.ld());
}

// Tile (i, j), k < j <= i: A_ij -= L_ik L_jk^T (the lower triangle of a
// diagonal tile only, by SYRK).
template <typename T>
void update_trailing_tile(const Tiles<T>& m, int64_t i, int64_t j, int64_t k) {
  if (i == j) {
    syrk_lower_minus(m.size(i), m.size(k), m.at(i, k), m.ld(), m.at(i, i), m.ld());
  } else {
    gemm_rm(CblasTrans, m.size(i), m.size(j), m.size(k), T(-1), m.at(i, k), m.ld(), m.at(j, k), m.ld(), m.at(i, j),
            m.ld());
  }
}

// (i, j) of the idx-th tile in the lower triangle of tile rows/columns
// [first, t), enumerated row by row.
std::pair<int64_t, int64_t> lower_tile(int64_t first, int64_t idx) {
  int64_t r = static_cast<int64_t>((std::sqrt(8.0 * double(idx) + 1.0) - 1.0) / 2.0);
  while (r * (r + 1) / 2 > idx) --r;
  while ((r + 1) * (r + 2) / 2 <= idx) ++r;
  return {first + r, first + (idx - r * (r + 1) / 2)};
}

// Factor column k (its diagonal tile, then the panel below it). Returns the
// global index + 1 of the first non-positive pivot, 0 on success.
template <typename T>
int64_t factor_column(const Tiles<T>& m, int64_t k, const char* op) {
  const lapack_int info = factor_diagonal_tile(m, k, op);
  if (info > 0) return k * m.nb + info;
  const int64_t below = m.t - k - 1;
  for_each_tile(below, [&](int64_t r) { solve_panel_tile(m, k + 1 + r, k); });
  return 0;
}

// Right-looking tiled Cholesky with a lookahead of one column: while the
// trailing update of step k runs on columns k+2.., column k+1 is updated,
// factored and its panel solved, so the sequential diagonal factorization
// overlaps the parallel work. Every tile still receives the updates of steps
// 0, 1, ... in order, each one BLAS call, so the bytes do not depend on the
// schedule. Returns 0, or 1 + the row of the first non-positive pivot.
template <typename T>
int64_t cholesky_tiled(const Tiles<T>& m, const char* op) {
  if (int64_t bad = factor_column(m, 0, op)) return bad;
  for (int64_t k = 0; k + 1 < m.t; ++k) {
    // Tiles (i, j) with k+2 <= j <= i < t, updated by step k.
    const int64_t rest_first = k + 2, rest_count = (m.t - rest_first) * (m.t - rest_first + 1) / 2;
    tbb::task_group rest;
    if (rest_count > 0)
      rest.run([&] {
        for_each_tile(rest_count, [&](int64_t idx) {
          const auto [i, j] = lower_tile(rest_first, idx);
          update_trailing_tile(m, i, j, k);
        });
      });
    // Column k+1: its step-k update, then its own factorization.
    for_each_tile(m.t - k - 1, [&](int64_t r) { update_trailing_tile(m, k + 1 + r, k + 1, k); });
    int64_t bad = 0;
    try {
      bad = factor_column(m, k + 1, op);
    } catch (...) {
      rest.cancel();
      rest.wait();
      throw;
    }
    rest.wait();
    if (bad) return bad;
  }
  return 0;
}

// In-place inverse of the lower-triangular matrix (only the lower triangle is
// read or written), tile by tile: with X = L^-1,
//   X_ij = -L_ii^-1 (L_ij X_jj + sum_{j<p<i} L_ip X_pj),   j < i,
// as one TRMM (in place), one GEMM and one TRSM on fixed arguments. The
// diagonal inverses X_jj go to `diag` first (independent, in parallel; L_ii
// stays in place for the TRSMs until the end). Tile (i, j) then runs once its
// left neighbour (i, j-1) and the tile above (i-1, j) are done: the row's
// tiles to its right still hold L (each row is overwritten left to right),
// and the column above it is X. So no tile is computed into scratch and no
// step waits for a whole row (a dependency graph, not a barrier per row).
// Throws if a diagonal tile's inverse fails.
template <typename T>
void invert_lower_tiled(const Tiles<T>& m, const char* op) {
  const int64_t nb = m.nb, t = m.t;
  const int ldd = static_cast<int>(nb);
  std::vector<T> diag(static_cast<size_t>(t * nb * nb), T(0));
  auto diag_at = [&](int64_t j) { return diag.data() + j * nb * nb; };
  for_each_tile(t, [&](int64_t j) {
    const int s = m.size(j);
    T* d = diag_at(j);
    for (int r = 0; r < s; ++r) std::copy(m.at(j, j) + r * m.n, m.at(j, j) + r * m.n + r + 1, d + r * nb);
    const lapack_int info = trtri_u(s, d, ldd);
    const std::string routine = std::string(prefix<T>()) + "trtri";
    if (info < 0) throw_lapack_error(op, routine.c_str(), info, s);
    if (info > 0) throw InternalError(std::string(op) + ": " + routine + " found diagonal element " +
                                      std::to_string(j * nb + info - 1) + " zero");
  });
  if (t > 1) {
    // Unfinished predecessors of tile (i, j), j < i: (i, j-1) and (i-1, j).
    std::vector<std::atomic<int>> pending(static_cast<size_t>(t * t));
    for (int64_t i = 1; i < t; ++i)
      for (int64_t j = 0; j < i; ++j) pending[i * t + j].store(int(j > 0) + int(i - 1 > j));
    tbb::task_group graph;
    std::function<void(int64_t, int64_t)> run_tile = [&](int64_t i, int64_t j) {
      const int si = m.size(i), sj = m.size(j);  // tile j is full: j < i <= t-1
      T* x = m.at(i, j);
      trmm_right_lower(si, sj, diag_at(j), ldd, x, m.ld());
      if (i - j - 1 > 0)
        gemm_rm(CblasNoTrans, si, sj, static_cast<int>((i - j - 1) * nb), T(1), m.at(i, j + 1), m.ld(),
                m.at(j + 1, j), m.ld(), x, m.ld());
      trsm(CblasLeft, CblasLower, CblasNoTrans, si, sj, T(-1), m.at(i, i), m.ld(), x, m.ld());
      auto release = [&](int64_t a, int64_t b) {
        if (pending[a * t + b].fetch_sub(1) == 1) graph.run([&run_tile, a, b] { run_tile(a, b); });
      };
      // Spawned last, run first here: down the column, toward the last row's
      // long chain; a thief takes the row's next tile.
      if (j + 1 < i) release(i, j + 1);
      if (i + 1 < t) release(i + 1, j);
    };
    graph.run([&run_tile] { run_tile(1, 0); });
    graph.wait();
  }
  for_each_tile(t, [&](int64_t j) {
    const int s = m.size(j);
    for (int r = 0; r < s; ++r) std::copy(diag_at(j) + r * nb, diag_at(j) + r * nb + r + 1, m.at(j, j) + r * m.n);
  });
}

void check_tile(int64_t tile, const char* op) {
  if (tile < 1 || tile > 65536) throw InternalError(std::string(op) + ": tile size " + std::to_string(tile) + " out of range");
}

}  // namespace

bool cholesky_lower_tiled(double* a, int64_t n, int64_t tile) {
  checked_int(n, "cholesky_lower", "n");
  check_tile(tile, "cholesky_lower");
  if (n == 0) return true;
  check_lower_for_nan("cholesky_lower", a, n, /*zero_upper=*/false);
  if (cholesky_tiled(Tiles<double>(a, n, tile), "cholesky_lower") != 0) return false;
  zero_strict_upper(a, n);
  return true;
}

void invert_lower_triangular_tiled(double* l, int64_t n, int64_t tile) {
  checked_int(n, "invert_lower_triangular", "n");
  check_tile(tile, "invert_lower_triangular");
  if (n == 0) return;
  check_lower_for_nan("invert_lower_triangular", l, n, /*zero_upper=*/true);
  for (int64_t i = 0; i < n; ++i)
    if (l[i * n + i] == 0.0)
      throw InternalError("invert_lower_triangular: the " + std::to_string(n) + "x" + std::to_string(n) +
                          " factor is singular (diagonal element " + std::to_string(i) + " is zero)");
  invert_lower_tiled(Tiles<double>(l, n, tile), "invert_lower_triangular");
}

template <typename T>
bool inverse_upper_factor_impl(T* h, int64_t n, int64_t tile) {
  checked_int(n, "inverse_upper_factor", "n");
  check_tile(tile, "inverse_upper_factor");
  if (n == 0) return true;
  // With J the exchange matrix and J H J = L' L'^T, H^-1 = (J L'^-T J)(J L'^-1 J),
  // and U = J L'^-1 J is upper triangular with a positive diagonal: by
  // uniqueness it is the code's chol(cholesky_inverse(chol(H)), upper), for
  // one factorization and one triangular inverse (2/3 n^3 flops) instead of
  // a factorization, an inverse and a second factorization (4/3 n^3).
  reverse_both_ways(h, n, AfterReverse::CheckLowerForNan, "inverse_upper_factor");
  const Tiles<T> m(h, n, tile);
  if (cholesky_tiled(m, "inverse_upper_factor") != 0) return false;  // L' = chol(J H J)
  // L'^-1 (neither step reads the strict upper triangle, which still holds
  // J H J); its diagonal is positive, as L' is a Cholesky factor.
  invert_lower_tiled(m, "inverse_upper_factor");
  reverse_both_ways(h, n, AfterReverse::ZeroStrictLower, "inverse_upper_factor");  // U = J L'^-1 J
  return true;
}

bool inverse_upper_factor_tiled(double* h, int64_t n, int64_t tile) { return inverse_upper_factor_impl(h, n, tile); }
bool inverse_upper_factor_tiled(float* h, int64_t n, int64_t tile) { return inverse_upper_factor_impl(h, n, tile); }

bool cholesky_lower(double* a, int64_t n) { return cholesky_lower_tiled(a, n, kFactorTile); }

void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) {
  const std::string shape = std::to_string(m) + "x" + std::to_string(n);
  checked_int(m, "svd", "m");
  checked_int(n, "svd", "n");
  if (m == 0 || n == 0) return;
  for (int64_t i = 0; i < m * n; ++i)
    if (std::isnan(a[i])) throw InternalError("svd: the " + shape + " input holds a NaN");
  const int64_t r = std::min(m, n);
  // Row-major thin SVD: a = u [m, r] diag(s) vt [r, n]; gesdd overwrites a.
  // Divide and conquer: the fastest LAPACK SVD for big linears, accurate to
  // a few float64 ulps of ||a||.
  const lapack_int info =
      LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(m), static_cast<lapack_int>(n), a,
                     static_cast<lapack_int>(n), s, u, static_cast<lapack_int>(r), vt, static_cast<lapack_int>(n));
  if (info != 0)
    throw InternalError("svd: LAPACKE_dgesdd on " + shape + " failed, info " + std::to_string(info) +
                        (info > 0 ? " (the SVD did not converge)" : " (bad argument)"));
}
void invert_lower_triangular(double* l, int64_t n) { invert_lower_triangular_tiled(l, n, kFactorTile); }
bool inverse_upper_factor(double* h, int64_t n) { return inverse_upper_factor_tiled(h, n, kFactorTile); }
bool inverse_upper_factor(float* h, int64_t n) { return inverse_upper_factor_tiled(h, n, kFactorTile); }

}  // namespace streamq::cpu
