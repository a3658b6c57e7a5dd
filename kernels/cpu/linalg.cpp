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

#include "src/core/error.h"
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
  // With J the exchange matrix and J H J = L' L'^T, H^-1 = (J L'^-T J)(J L'^-1 J),
  // and U = J L'^-1 J is upper triangular with a positive diagonal: by
  // uniqueness it is the code's chol(cholesky_inverse(chol(H)), upper), for
  // one factorization and one triangular inverse (2/3 n^3 flops) instead of
  // a factorization, an inverse and a second factorization (4/3 n^3).
  // Reversing a row-major square array end to end is J A J.
  std::reverse(h, h + n * n);
  // L' = chol(J H J), lower (row-major).
  lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', ni, h, ni);
  if (info < 0) throw_lapack_error("inverse_upper_factor", "dpotrf(J H J)", info, n);
  if (info > 0) return false;
  // L'^-1, lower (row-major); its diagonal is nonzero, as L' is a Cholesky factor.
  info = LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', ni, h, ni);
  if (info < 0) throw_lapack_error("inverse_upper_factor", "dtrtri", info, n);
  if (info > 0) return false;
  // U = J L'^-1 J, upper; the strict lower triangle still holds J H J's entries.
  std::reverse(h, h + n * n);
  zero_strict_triangle(h, n, /*upper=*/false);
  return true;
}

}  // namespace streamq::cpu
