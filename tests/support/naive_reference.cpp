// Naive float64 reference of the GPTQ family (see naive_reference.h).
#include "tests/support/naive_reference.h"

#include <algorithm>
#include <cmath>

#include "src/methods/grid.h"

namespace streamq::test {

std::vector<double> NaiveLayer::h() const {
  std::vector<double> r(n * n, 0.0);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) {
      double s = 0;
      for (int64_t t = 0; t < tokens; ++t) s += x[a * tokens + t] * x[b * tokens + t];
      r[a * n + b] = 2.0 * s;
    }
  return r;
}

std::vector<double> NaiveLayer::cross() const {
  std::vector<double> r(n * n, 0.0);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) {
      double s = 0;
      for (int64_t t = 0; t < tokens; ++t) s += (x_fp[a * tokens + t] - x[a * tokens + t]) * x[b * tokens + t];
      r[a * n + b] = 2.0 * s;
    }
  return r;
}

NaiveLayer random_naive_layer(std::mt19937_64& rng, int64_t m, int64_t n, bool dead_input, double deviation) {
  NaiveLayer L;
  L.m = m;
  L.n = n;
  L.tokens = 2 * n + 3;
  std::normal_distribution<double> nd(0.0, 1.0);
  L.w.resize(m * n);
  for (auto& v : L.w) v = nd(rng) * 0.1;
  std::vector<double> z(n * L.tokens), mix(n * n);
  for (auto& v : z) v = nd(rng);
  for (auto& v : mix) v = nd(rng) / std::sqrt(static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) mix[i * n + i] += 1.0;
  L.x.assign(n * L.tokens, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const double s = std::exp(nd(rng) * 0.7);
    for (int64_t k = 0; k < n; ++k)
      for (int64_t t = 0; t < L.tokens; ++t) L.x[i * L.tokens + t] += s * mix[i * n + k] * z[k * L.tokens + t];
  }
  // The FP flow: X plus a deviation correlated with X (a quantized upstream
  // distorts the signal it carries) and some independent noise.
  L.x_fp = L.x;
  for (int64_t i = 0; i < n; ++i) {
    const double gain = deviation * nd(rng);
    for (int64_t t = 0; t < L.tokens; ++t)
      L.x_fp[i * L.tokens + t] += gain * L.x[i * L.tokens + t] + deviation * nd(rng);
  }
  if (dead_input) {
    const int64_t dead = static_cast<int64_t>(rng() % n);
    for (int64_t t = 0; t < L.tokens; ++t) L.x[dead * L.tokens + t] = L.x_fp[dead * L.tokens + t] = 0.0;
  }
  return L;
}

namespace {

// Solves A Z = B for k x k A and k x r B (row-major, copied) by Gauss-Jordan
// elimination with partial pivoting: slow and obviously correct.
std::vector<double> naive_solve(std::vector<double> a, std::vector<double> b, int64_t k, int64_t r) {
  for (int64_t c = 0; c < k; ++c) {
    int64_t piv = c;
    for (int64_t i = c + 1; i < k; ++i)
      if (std::fabs(a[i * k + c]) > std::fabs(a[piv * k + c])) piv = i;
    if (piv != c) {
      for (int64_t j = 0; j < k; ++j) std::swap(a[c * k + j], a[piv * k + j]);
      for (int64_t j = 0; j < r; ++j) std::swap(b[c * r + j], b[piv * r + j]);
    }
    for (int64_t i = 0; i < k; ++i) {
      if (i == c) continue;
      const double f = a[i * k + c] / a[c * k + c];
      if (f == 0.0) continue;
      for (int64_t j = c; j < k; ++j) a[i * k + j] -= f * a[c * k + j];
      for (int64_t j = 0; j < r; ++j) b[i * r + j] -= f * b[c * r + j];
    }
  }
  for (int64_t c = 0; c < k; ++c)
    for (int64_t j = 0; j < r; ++j) b[c * r + j] /= a[c * k + c];
  return b;
}

bool near_tie(double v) {
  const double f = v - std::floor(v);
  return std::fabs(f - 0.5) < 1e-9;
}

std::vector<double> permute_sym(const std::vector<double>& m, const std::vector<int64_t>& perm, int64_t n) {
  std::vector<double> out(n * n);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) out[a * n + b] = m[perm[a] * n + perm[b]];
  return out;
}

}  // namespace

NaiveResult naive_quantize(const NaiveLayer& L, const QuantConfig& cfg) {
  const int64_t m = L.m, n = L.n;
  const Grid grid(cfg);
  const int64_t g = cfg.group > 0 ? cfg.group : n;
  const bool gptaq = cfg.method == MethodKind::Gptaq, cae = cfg.cae;
  const bool official = cfg.variant == Variant::Official;
  std::vector<double> w = L.w, h = L.h(), d1 = L.cross();
  NaiveResult res{std::vector<double>(m * n), std::vector<uint8_t>(m * n), std::vector<bool>(m, false)};

  std::vector<GridParams> row_p(m);
  for (int64_t r = 0; r < m; ++r) row_p[r] = grid.fit(&w[r * n], n);
  for (int64_t i = 0; i < n; ++i)
    if (h[i * n + i] == 0) {
      h[i * n + i] = 1;
      for (int64_t r = 0; r < m; ++r) w[r * n + i] = 0;
      for (int64_t a = 0; a < n; ++a) d1[a * n + i] = 0;
    }
  const int64_t ngroups = (n + g - 1) / g;
  std::vector<GridParams> static_p(ngroups * m);
  if (cfg.static_groups)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t gi = 0; gi < ngroups; ++gi)
        static_p[gi * m + r] = grid.fit(&w[r * n + gi * g], std::min(n, gi * g + g) - gi * g);

  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  if (cfg.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return h[a * n + a] > h[b * n + b]; });
  std::vector<double> wp(m * n);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) wp[r * n + c] = w[r * n + perm[c]];
  h = permute_sym(h, perm, n);
  d1 = permute_sym(d1, perm, n);
  std::vector<double> d2 = h;  // X X^T, or X~ X^T = dX X^T + X X^T
  if (gptaq || cfg.cae_source == CaeSource::Xfx)
    for (int64_t i = 0; i < n * n; ++i) d2[i] += d1[i];
  const std::vector<double> w0 = wp;
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += h[i * n + i];
  mean /= n;
  for (int64_t i = 0; i < n; ++i) h[i * n + i] += cfg.percdamp * mean;

  const double a1 = gptaq ? cfg.gptaq_alpha : 0.0, a2 = cae ? cfg.cae_alpha : 0.0;
  std::vector<GridParams> dyn_p(m), last_p(m);
  std::vector<double> snapshot;
  struct Pending {  // a column's contribution to columns past its block, applied at block end
    int64_t col;
    std::vector<double> e, a, c, x;  // per row
    std::vector<double> z;           // [k, 3]: H_RR^-1 [H_Rq, D1_qR^T, D2_qR^T]
  };
  std::vector<Pending> pending;
  for (int64_t col = 0; col < n; ++col) {
    const int64_t i1 = (col / cfg.blocksize) * cfg.blocksize, i2 = std::min(n, i1 + cfg.blocksize);
    if (col == i1) snapshot = wp;
    Pending pd{col, std::vector<double>(m), std::vector<double>(m), std::vector<double>(m), std::vector<double>(m), {}};
    for (int64_t r = 0; r < m; ++r) {
      GridParams p;
      if (cfg.group < 0) {
        p = row_p[r];
      } else if (cfg.static_groups) {
        p = static_p[(perm[col] / g) * m + r];
      } else {
        if (col % g == 0) {
          const std::vector<double>& src = official ? snapshot : wp;
          const int64_t ce = std::min(n, col + g);
          dyn_p[r] = grid.fit(&src[r * n + col], ce - col);
          const double mn = std::min(0.0, *std::min_element(&src[r * n + col], &src[r * n + ce]));
          if (!cfg.sym && near_tie(-mn / dyn_p[r].scale)) res.tie_rows[r] = true;
        }
        p = dyn_p[r];
      }
      last_p[r] = p;
      const double x = wp[r * n + col];
      if (near_tie(x / p.scale)) res.tie_rows[r] = true;
      const int32_t code = grid.code(x, p);
      const double q = grid.dequant(code, p);
      res.q[r * n + perm[col]] = q;
      res.codes[r * n + perm[col]] = static_cast<uint8_t>(code);
      pd.x[r] = x;
      pd.e[r] = x - q;
      pd.a[r] = cfg.p1_original ? w0[r * n + col] : x;
      pd.c[r] = w0[r * n + col] - x;
    }
    const int64_t k = n - col - 1;
    if (k > 0) {
      std::vector<double> hrr(k * k), rhs(k * 3);
      for (int64_t i = 0; i < k; ++i) {
        rhs[i * 3 + 0] = h[col * n + col + 1 + i];
        rhs[i * 3 + 1] = d1[col * n + col + 1 + i];
        rhs[i * 3 + 2] = d2[col * n + col + 1 + i];
        for (int64_t j = 0; j < k; ++j) hrr[i * k + j] = h[(col + 1 + i) * n + col + 1 + j];
      }
      pd.z = naive_solve(hrr, rhs, k, 3);
      // The exact update reaches every later column now. The official variant
      // updates this block's columns now and later ones at block end, with
      // what it carries across the boundary (its group grids come from the
      // block-start snapshot, so the deferral is invisible to them).
      const int64_t reach = official ? i2 : n;
      for (int64_t r = 0; r < m; ++r)
        for (int64_t i = 0; col + 1 + i < reach; ++i)
          wp[r * n + col + 1 + i] +=
              pd.e[r] * pd.z[i * 3] + a1 * pd.a[r] * pd.z[i * 3 + 1] + a2 * pd.c[r] * pd.z[i * 3 + 2];
      if (official) pending.push_back(std::move(pd));
    }
    if (official && col + 1 == i2) {
      // Block end: contributions to later columns, with what the variant carries.
      for (const Pending& p : pending) {
        for (int64_t r = 0; r < m; ++r) {
          double a = p.a[r], c = p.c[r];
          if (!cfg.p1_original && (gptaq || cae)) {
            double carried = p.x[r] - p.e[r];  // the quantized value
            if (cae && cfg.bits != 2) {
              const double lo = last_p[r].scale * (0 - last_p[r].zero);
              const double hi = last_p[r].scale * (grid.maxq() - last_p[r].zero);
              carried = std::clamp(p.x[r], std::min(lo, hi), std::max(lo, hi));
            }
            a = carried;
            c = w0[r * n + p.col] - carried;
          }
          for (int64_t col2 = i2; col2 < n; ++col2) {
            const int64_t i = col2 - p.col - 1;
            wp[r * n + col2] += p.e[r] * p.z[i * 3] + a1 * a * p.z[i * 3 + 1] + a2 * c * p.z[i * 3 + 2];
          }
        }
      }
      pending.clear();
    }
  }
  return res;
}

}  // namespace streamq::test
