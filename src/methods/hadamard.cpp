// Hadamard constructions (Sylvester, Paley I, Paley II over prime fields) and
// the Kronecker-factored fast transform.
#include "src/methods/hadamard.h"

#include <random>
#include <string>

#include "kernels/cpu/cpu_ops.h"
#include "src/core/error.h"
#include "src/methods/hadamard_tables.h"

namespace streamq {
namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// The quadratic character of GF(q), q prime: chi[a] = 0 for a = 0, 1 for a
// nonzero square, -1 otherwise.
std::vector<int> quadratic_character(int64_t q) {
  std::vector<int> chi(static_cast<size_t>(q), -1);
  chi[0] = 0;
  for (int64_t x = 1; x < q; ++x) chi[static_cast<size_t>(x * x % q)] = 1;
  return chi;
}

// Jacobsthal matrix Q[i][j] = chi(j - i) of GF(q).
std::vector<int> jacobsthal(int64_t q) {
  const std::vector<int> chi = quadratic_character(q);
  std::vector<int> Q(static_cast<size_t>(q * q));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j) Q[static_cast<size_t>(i * q + j)] = chi[static_cast<size_t>(((j - i) % q + q) % q)];
  return Q;
}

// Paley I, q = 3 mod 4: H = I + [[0, 1^T], [-1, Q]] (Q is skew-symmetric).
std::vector<int8_t> paley1(int64_t q) {
  const int64_t m = q + 1;
  const std::vector<int> Q = jacobsthal(q);
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      int s = 0;
      if (i == 0 && j > 0) s = 1;
      else if (j == 0 && i > 0) s = -1;
      else if (i > 0 && j > 0) s = Q[static_cast<size_t>((i - 1) * q + (j - 1))];
      h[static_cast<size_t>(i * m + j)] = static_cast<int8_t>(s + (i == j ? 1 : 0));
    }
  return h;
}

// Paley II, q = 1 mod 4: with the symmetric conference matrix
// C = [[0, 1^T], [1, Q]] of order q + 1,
// H = C (x) [[1, -1], [-1, -1]] + I (x) [[1, 1], [1, -1]].
std::vector<int8_t> paley2(int64_t q) {
  const int64_t c = q + 1, m = 2 * c;
  const std::vector<int> Q = jacobsthal(q);
  auto conf = [&](int64_t i, int64_t j) {
    if (i == 0 && j == 0) return 0;
    if (i == 0 || j == 0) return 1;
    return Q[static_cast<size_t>((i - 1) * q + (j - 1))];
  };
  const int off[2][2] = {{1, -1}, {-1, -1}}, diag[2][2] = {{1, 1}, {1, -1}};
  std::vector<int8_t> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j)
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
          h[static_cast<size_t>((2 * i + a) * m + 2 * j + b)] =
              static_cast<int8_t>(conf(i, j) * off[a][b] + (i == j ? diag[a][b] : 0));
  return h;
}

std::vector<int8_t> sylvester_double(const std::vector<int8_t>& h, int64_t m) {
  std::vector<int8_t> d(static_cast<size_t>(4 * m * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      const int8_t v = h[static_cast<size_t>(i * m + j)];
      d[static_cast<size_t>(i * 2 * m + j)] = v;
      d[static_cast<size_t>(i * 2 * m + j + m)] = v;
      d[static_cast<size_t>((i + m) * 2 * m + j)] = v;
      d[static_cast<size_t>((i + m) * 2 * m + j + m)] = static_cast<int8_t>(-v);
    }
  return d;
}

// Which construction reaches order m (one decision for hadamard_matrix and
// hadamard_split, which asks without building).
enum class Construction { None, Trivial, PaleyI, PaleyII, Shipped, Doubling };
Construction construction_of(int64_t m) {
  if (m == 1 || m == 2) return Construction::Trivial;
  if (m < 1 || m % 4 != 0) return Construction::None;
  if (is_prime(m - 1) && (m - 1) % 4 == 3) return Construction::PaleyI;
  if (is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) return Construction::PaleyII;
  if (shipped_hadamard_rows(m) != nullptr) return Construction::Shipped;
  return construction_of(m / 2) == Construction::None ? Construction::None : Construction::Doubling;
}

}  // namespace

std::vector<int8_t> hadamard_matrix(int64_t m) {
  switch (construction_of(m)) {
    case Construction::None: return {};
    case Construction::Trivial: return m == 1 ? std::vector<int8_t>{1} : std::vector<int8_t>{1, 1, 1, -1};
    case Construction::PaleyI: return paley1(m - 1);
    case Construction::PaleyII: return paley2(m / 2 - 1);
    case Construction::Shipped: {
      const char* const* rows = shipped_hadamard_rows(m);
      std::vector<int8_t> h(static_cast<size_t>(m * m));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < m; ++j) h[static_cast<size_t>(i * m + j)] = rows[i][j] == '+' ? 1 : -1;
      return h;
    }
    case Construction::Doubling: return sylvester_double(hadamard_matrix(m / 2), m / 2);
  }
  return {};
}

HadamardSplit hadamard_split(int64_t n) {
  if (n < 1) return {};
  int64_t pow2 = 1;
  while (n % (pow2 * 2) == 0) pow2 *= 2;
  // The largest power of two first: the smallest dense factor.
  for (; pow2 >= 1; pow2 /= 2)
    if (construction_of(n / pow2) != Construction::None) return {n / pow2, pow2};
  return {};
}

HadamardTransform::HadamardTransform(int64_t n, std::vector<float> signs)
    : n_(n), split_(hadamard_split(n)), signs_(std::move(signs)) {
  if (split_.m == 0)
    throw InputError("no Hadamard matrix of size " + std::to_string(n) +
                     " (n = m * 2^k needs an order m built by Sylvester or Paley I/II, or shipped: 52, 156, "
                     "172)");
  if (!signs_.empty() && static_cast<int64_t>(signs_.size()) != n)
    throw InputError("Hadamard signs: " + std::to_string(signs_.size()) + " values for size " + std::to_string(n));
  const std::vector<int8_t> hm = hadamard_matrix(split_.m);
  hm_.assign(hm.begin(), hm.end());
}

// The CPU kernel of Backend::hadamard_rows (kernels/cpu/hadamard.cpp): one
// implementation, the twin of the CUDA one.
void HadamardTransform::apply(float* x, int64_t rows) const {
  cpu::hadamard_rows(x, rows, n_, hm_.data(), split_.m, signs_.empty() ? nullptr : signs_.data(), false);
}

void HadamardTransform::inverse(float* x, int64_t rows) const {
  cpu::hadamard_rows(x, rows, n_, hm_.data(), split_.m, signs_.empty() ? nullptr : signs_.data(), true);
}

std::vector<float> random_signs(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& v : s) v = (rng() & 1) ? 1.0f : -1.0f;
  return s;
}

}  // namespace streamq
