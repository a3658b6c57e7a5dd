// A seeded random orthogonal rotation of n-vectors (issue 17): the fallback
// for hidden sizes no Hadamard matrix reaches (hadamard_split finds no m).
// Q is Haar-distributed: the QR factorization of an n x n matrix of standard
// normal entries, with each column of Q multiplied by the sign of R's
// diagonal entry (Mezzadri 2007), so the distribution does not depend on
// LAPACK's sign convention. Built in float64 and applied in float32, dense:
// O(n^2) per row against the Hadamard transform's O(n log n).
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

// Q (row-major, float64) for n and seed: the same matrix on every machine
// (std::mt19937_64 and a Box-Muller draw written out here, not the standard
// library's unspecified normal distribution).
std::vector<double> random_orthogonal_matrix(int64_t n, uint64_t seed);

// Rows of x [rows, n], in place: apply sets each row to x Q, inverse to x Q^T.
class RandomOrthogonalRotation {
 public:
  RandomOrthogonalRotation(int64_t n, uint64_t seed);
  int64_t size() const { return n_; }
  void apply(float* x, int64_t rows) const;
  void inverse(float* x, int64_t rows) const;
  const std::vector<float>& q() const { return q_; }

 private:
  void multiply(float* x, int64_t rows, bool transposed) const;
  int64_t n_;
  std::vector<float> q_;  // Q rounded to float32, row-major
};

}  // namespace streamq
