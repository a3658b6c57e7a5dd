// Hadamard matrices and the fast transform rotations are built from (issue
// 17, QuaRot-style rotations): an order-n Hadamard matrix H (entries +-1,
// H H^T = n I) makes H / sqrt(n) orthogonal, and for n = m * 2^k it is the
// Kronecker product H_m (x) H_{2^k}, applied in O(n log n + n m) time: a
// Walsh-Hadamard butterfly over the 2^k part, a dense m x m product over the
// rest. Real hidden sizes factor this way: 4096 = 1 * 2^12, SmolLM2's 576 =
// 36 * 16 and 1536 = 12 * 128, Llama-3's 14336 = 28 * 512, Qwen2's 18944 =
// 148 * 128.
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

// An order-m Hadamard matrix, row-major, entries +1/-1, built by a known
// construction: Sylvester doubling (H_2m = [[H, H], [H, -H]]) of a smaller
// one, Paley I (m = q + 1, q a prime = 3 mod 4), Paley II (m = 2 (q + 1),
// q a prime = 1 mod 4), or shipped as data (52, 156 and 172: hadamard_tables.h,
// from QuaRot's code). Empty when none of these reaches m (m = 1 and 2 are
// [1] and [[1, 1], [1, -1]]).
std::vector<int8_t> hadamard_matrix(int64_t m);

// n = m * 2^k with the smallest m that hadamard_matrix builds (m = 1 for a
// power of two); {0, 0} when no such split exists.
struct HadamardSplit {
  int64_t m = 0, pow2 = 0;
};
HadamardSplit hadamard_split(int64_t n);

// The normalized transform of n-vectors (n = split.m * split.pow2): with
// signs s (+-1 each, or empty for none), y = H_n diag(s) x / sqrt(n) for
// every row of x [rows, n], in place, where H_n = H_m (x) H_pow2 and x's
// index i = a * pow2 + b (a < m, b < pow2). Orthogonal: `inverse` applies
// its transpose, diag(s) H_n^T y / sqrt(n), which undoes it. Float32 data,
// each row's sums in float32 (the rounding bound is in the test).
class HadamardTransform {
 public:
  // Throws InputError naming n when hadamard_split(n) finds no split, or when
  // signs is neither empty nor n long.
  HadamardTransform(int64_t n, std::vector<float> signs = {});
  int64_t size() const { return n_; }
  const HadamardSplit& split() const { return split_; }
  void apply(float* x, int64_t rows) const;
  void inverse(float* x, int64_t rows) const;
  // H_m (+-1 as float, row-major) and the signs, as Backend::hadamard_rows
  // takes them (a device uploads these).
  const std::vector<float>& hm() const { return hm_; }
  const std::vector<float>& signs() const { return signs_; }

 private:
  int64_t n_;
  HadamardSplit split_;
  std::vector<float> hm_;  // H_m, row-major
  std::vector<float> signs_;
};

// Seeded random signs (+1/-1) for a randomized Hadamard rotation.
std::vector<float> random_signs(int64_t n, uint64_t seed);

}  // namespace streamq
