// Cholesky-based factorizations on the CPU through LAPACKE (OpenBLAS's
// threaded potrf/trtri/potri underneath): the GPTQ inverse-Hessian factor.
//
// Our matrices are row-major; LAPACKE's row-major entry points transpose into
// a full temporary copy, which for a 14336^2 Hessian is 1.6 GB. A row-major
// matrix read as column-major is its transpose, so we call the column-major
// routines with the triangle flipped: row-major lower == column-major upper.
#include <lapacke.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {
namespace {

// info < 0 is an illegal argument; LAPACKE also reports a NaN found in the
// input matrix this way (as minus the matrix's argument position), which we
// surface rather than let it pass as "not positive definite".
[[noreturn]] void throw_lapack_error(const char* op, const char* routine, lapack_int info,
                                     int64_t n) {
  throw InternalError(std::string(op) + ": " + routine + " failed with info=" +
                      std::to_string(info) + " on a " + std::to_string(n) + "x" +
                      std::to_string(n) +
                      " matrix (a negative info is a bad argument or a NaN in the input)");
}

// Zero the strict upper (upper=true) or strict lower triangle of row-major a[n,n].
void zero_strict_triangle(double* a, int64_t n, bool upper) {
  for (int64_t i = 0; i < n; ++i) {
    double* row = a + i * n;
    if (upper) {
      std::fill(row + i + 1, row + n, 0.0);
    } else {
      std::fill(row, row + i, 0.0);
    }
  }
}

// Copy the lower triangle of row-major a[n,n] onto the upper, in cache-sized
// tiles because the reads go down columns.
void mirror_lower_to_upper(double* a, int64_t n) {
  constexpr int64_t kTile = 64;
  for (int64_t ib = 0; ib < n; ib += kTile) {
    for (int64_t jb = 0; jb <= ib; jb += kTile) {
      const int64_t i_end = std::min(n, ib + kTile);
      const int64_t j_end = std::min(n, jb + kTile);
      for (int64_t i = ib; i < i_end; ++i) {
        for (int64_t j = jb; j < std::min(j_end, i); ++j) a[j * n + i] = a[i * n + j];
      }
    }
  }
}

}  // namespace

bool cholesky_lower(double* a, int64_t n) {
  const int ni = checked_int(n, "cholesky_lower", "n");
  if (n == 0) return true;
  const lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', ni, a, ni);
  if (info < 0) throw_lapack_error("cholesky_lower", "dpotrf", info, n);
  if (info > 0) return false;
  zero_strict_triangle(a, n, /*upper=*/true);
  return true;
}

void invert_lower_triangular(double* l, int64_t n) {
  const int ni = checked_int(n, "invert_lower_triangular", "n");
  if (n == 0) return;
  zero_strict_triangle(l, n, /*upper=*/true);
  const lapack_int info = LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', ni, l, ni);
  if (info < 0) throw_lapack_error("invert_lower_triangular", "dtrtri", info, n);
  if (info > 0) {
    throw InternalError("invert_lower_triangular: the " + std::to_string(n) + "x" +
                        std::to_string(n) + " factor is singular (diagonal element " +
                        std::to_string(info - 1) + " is zero)");
  }
}

bool inverse_upper_factor(double* h, int64_t n) {
  const int ni = checked_int(n, "inverse_upper_factor", "n");
  if (n == 0) return true;
  // L = chol(H), lower (row-major).
  lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', ni, h, ni);
  if (info < 0) throw_lapack_error("inverse_upper_factor", "dpotrf(H)", info, n);
  if (info > 0) return false;
  // H^-1 from L, written to the lower triangle only.
  info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', ni, h, ni);
  if (info < 0) throw_lapack_error("inverse_upper_factor", "dpotri", info, n);
  if (info > 0) return false;
  // The next factorization reads the upper triangle.
  mirror_lower_to_upper(h, n);
  // U = chol(H^-1), upper (row-major), so H^-1 = U^T U.
  info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', ni, h, ni);
  if (info < 0) throw_lapack_error("inverse_upper_factor", "dpotrf(H^-1)", info, n);
  if (info > 0) return false;
  zero_strict_triangle(h, n, /*upper=*/false);
  return true;
}

}  // namespace streamq::cpu
