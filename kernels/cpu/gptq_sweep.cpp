// The CPU twin of the CUDA sweep (see gptq_sweep.h). The loop structure
// follows src/methods/gptq.cpp (exact variant) line for line; the grid math
// and the update term are the shared functions of kernels/gptq_sweep_problem.h,
// which the GPU kernel calls too.
#include "kernels/cpu/gptq_sweep.h"

#include <algorithm>
#include <string>
#include <vector>

namespace streamq {
namespace {

namespace sm = sweep_math;

template <typename T>
void sweep(const SweepProblem& p, const SweepOutput& out, const char* who) {
  validate_sweep_problem(p, out, who, /*host_pointers=*/true);
  const int64_t m = p.m, n = p.n;
  if (m == 0 || n == 0) return;
  const SweepGrid& grid = p.grid;
  const bool per_channel = p.group < 0;
  const bool dynamic_groups = !per_channel && !p.static_groups;
  const int64_t g = per_channel ? n : p.group;
  const bool has_p1 = p.p1 != nullptr, has_p2 = p.p2 != nullptr;
  std::vector<T> losses(static_cast<size_t>(grid.mse_steps));
  const auto store = [&](int64_t gi, int64_t row, const SweepParams<T>& pr) {
    out.scales[gi * m + row] = static_cast<float>(pr.scale);
    out.zeros[gi * m + row] = static_cast<float>(pr.zero);
  };

  std::vector<T> w(p.w, p.w + m * n);
  // Per-channel grids from the weights before dead inputs are zeroed,
  // static-group grids after (gptq_quantize's order).
  std::vector<SweepParams<T>> row_params;
  if (per_channel) {
    row_params.resize(static_cast<size_t>(m));
    for (int64_t row = 0; row < m; ++row) {
      row_params[row] = sm::fit(grid, &w[row * n], n, 1, losses.data());
      store(0, row, row_params[row]);
    }
  }
  if (p.dead)
    for (int64_t i = 0; i < n; ++i)
      if (p.dead[i])
        for (int64_t row = 0; row < m; ++row) w[row * n + i] = 0;
  if (p.static_groups)
    for (int64_t row = 0; row < m; ++row)
      for (int64_t gi = 0; gi < p.ngroups(); ++gi) {
        const int64_t c0 = gi * g, c1 = std::min(n, c0 + g);
        store(gi, row, sm::fit(grid, &w[row * n + c0], c1 - c0, 1, losses.data()));
      }
  std::vector<T> wp(static_cast<size_t>(m * n));  // processing order from here on
  for (int64_t row = 0; row < m; ++row)
    for (int64_t c = 0; c < n; ++c) wp[row * n + c] = w[row * n + p.perm[c]];
  std::vector<T> w0;
  if (p.needs_w0()) w0 = wp;

  const auto U = [&](int64_t a, int64_t b) { return static_cast<T>(p.u[a * n + b]); };
  const auto P1 = [&](int64_t a, int64_t b) { return has_p1 ? static_cast<T>(p.p1[a * n + b]) : T(0); };
  const auto P2 = [&](int64_t a, int64_t b) { return has_p2 ? static_cast<T>(p.p2[a * n + b]) : T(0); };
  const int64_t bs = p.blocksize;
  // Per-block panels [m, b]: e_j, a_j, c_j of every row (the GEMMs' left operands).
  std::vector<T> err(static_cast<size_t>(m * bs)), coef_a(err.size()), coef_c(err.size());
  std::vector<T> cur(static_cast<size_t>(g));
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(n, i1 + bs), b = i2 - i1;
    for (int64_t row = 0; row < m; ++row) {
      T* wr = &wp[row * n];
      T* er = &err[row * b];
      T* ar = &coef_a[row * b];
      T* cr = &coef_c[row * b];
      SweepParams<T> prm{};
      for (int64_t j = 0; j < b; ++j) {
        const int64_t col = i1 + j;
        if (per_channel) {
          prm = row_params[row];
        } else {
          if (dynamic_groups && col % g == 0) {
            // The group's current values: columns past this block still owe
            // the updates of this block's columns before j.
            const int64_t ce = std::min(n, col + g);
            for (int64_t c = col; c < ce; ++c) {
              T v = wr[c];
              if (c >= i2)
                for (int64_t jj = 0; jj < j; ++jj) {
                  const int64_t src = i1 + jj;
                  v = sm::add(v, sm::update_term(er[jj], U(src, c), has_p1, ar[jj], P1(src, c), has_p2, cr[jj],
                                                 P2(src, c)));
                }
              cur[c - col] = v;
            }
            store(col / g, row, sm::fit(grid, cur.data(), ce - col, 1, losses.data()));
          }
          // Read back from the output (fp16 scales and integer zeros are exact
          // in float): a group that began in an earlier block keeps its grid.
          const int64_t gi = p.static_groups ? p.perm[col] / g : col / g;
          prm = {static_cast<T>(out.scales[gi * m + row]), static_cast<T>(out.zeros[gi * m + row])};
        }
        const T x = wr[col];
        const int code = sm::code_of(grid, x, prm);
        const T q = sm::dequant(code, prm);
        if (!sm::finite(x) || !sm::finite(q))
          throw InternalError(std::string(who) + ": non-finite weight at row " + std::to_string(row) +
                              ", column " + std::to_string(p.perm[col]));
        out.q[row * n + p.perm[col]] = static_cast<float>(q);
        out.codes[row * n + p.perm[col]] = static_cast<uint8_t>(code);
        const T e = sm::div(sm::sub(x, q), U(col, col));
        const T a = has_p1 ? (p.p1_original ? w0[row * n + col] : x) : T(0);
        const T c = has_p2 ? sm::sub(w0[row * n + col], x) : T(0);
        for (int64_t k = col + 1; k < i2; ++k)
          wr[k] = sm::add(wr[k], sm::update_term(e, U(col, k), has_p1, a, P1(col, k), has_p2, c, P2(col, k)));
        er[j] = e;
        ar[j] = a;
        cr[j] = c;
      }
    }
    if (i2 == n) continue;
    // W[:, i2:] += alpha * panel[m, b] M[i1:i2, i2:], one pass per term in
    // the order the GPU issues its GEMMs (each a plain dot product here).
    const auto gemm_pass = [&](const std::vector<T>& panel, const auto& mat, T alpha) {
      for (int64_t row = 0; row < m; ++row)
        for (int64_t k = i2; k < n; ++k) {
          T acc = 0;
          for (int64_t jj = 0; jj < b; ++jj) acc = sm::add(acc, sm::mul(panel[row * b + jj], mat(i1 + jj, k)));
          wp[row * n + k] = sm::add(sm::mul(alpha, acc), wp[row * n + k]);
        }
    };
    gemm_pass(err, U, T(-1));
    if (has_p1) gemm_pass(coef_a, P1, T(1));
    if (has_p2) gemm_pass(coef_c, P2, T(1));
  }
}

}  // namespace

void cpu_gptq_sweep32(const SweepProblem& p, const SweepOutput& out) { sweep<float>(p, out, "cpu_gptq_sweep32"); }

void cpu_gptq_sweep64(const SweepProblem& p, const SweepOutput& out) { sweep<double>(p, out, "cpu_gptq_sweep64"); }

}  // namespace streamq
