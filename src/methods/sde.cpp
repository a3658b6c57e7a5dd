// See sde.h.
#include "src/methods/sde.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "src/core/error.h"
#include "src/methods/grid.h"

namespace streamq {

namespace {

std::string shape_of(int64_t rows, int64_t cols) { return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]"; }

void require_host_addressable(const Backend& be, const char* what) {
  if (!be.host_addressable())
    throw InputError(std::string(what) + ": backend " + be.name() +
                     " is not host-addressable (SDE's factors and band live in host memory; use the CPU backend)");
}

}  // namespace

SdeLinear sde_decompose(Backend& be, const float* w, int64_t rows, int64_t cols, int band) {
  require_host_addressable(be, "sde_decompose");
  if (rows < 1 || cols < 1) throw InputError("sde_decompose: empty weight " + shape_of(rows, cols));
  if (band < 0) throw InputError("sde_decompose: band " + std::to_string(band) + " < 0");
  if (rows > std::numeric_limits<int>::max() || cols > std::numeric_limits<int>::max())
    throw InputError("sde_decompose: weight " + shape_of(rows, cols) + " exceeds LAPACK's index range");
  const int64_t r = std::min(rows, cols);
  std::vector<double> a(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(w[i]))
      throw InputError("sde_decompose: non-finite weight " + std::to_string(w[i]) + " at [" + std::to_string(i / cols) +
                       ", " + std::to_string(i % cols) + "] of " + shape_of(rows, cols));
    a[static_cast<size_t>(i)] = w[i];
  }
  std::vector<double> s(static_cast<size_t>(r)), u(static_cast<size_t>(rows * r)), vt(static_cast<size_t>(r * cols));
  be.svd(a.data(), rows, cols, s.data(), u.data(), vt.data());  // float64 thin SVD (Backend::svd)
  SdeLinear l;
  l.rows = rows;
  l.cols = cols;
  l.rank = r;
  l.band = static_cast<int>(std::min<int64_t>(band, r - 1));
  l.u.assign(u.begin(), u.end());
  l.s.assign(s.begin(), s.end());
  l.vt.assign(vt.begin(), vt.end());
  l.params.assign(static_cast<size_t>(l.param_count()), 0.0f);
  return l;
}

std::vector<float> sde_band_matrix(const SdeLinear& l) {
  const int64_t r = l.rank;
  if (static_cast<int64_t>(l.params.size()) != l.param_count())
    throw InternalError("sde_band_matrix: params hold " + std::to_string(l.params.size()) + " values, band " +
                        std::to_string(l.band) + " of rank " + std::to_string(r) + " needs " +
                        std::to_string(l.param_count()));
  std::vector<float> d(static_cast<size_t>(r * r), 0.0f);
  const float* p = l.params.data();
  for (int64_t j = 0; j < r; ++j) d[j * r + j] = l.s[j] + p[j];
  for (int64_t i = 1; i <= l.band; ++i) {
    const float* upper = p + (2 * i - 1) * r;
    const float* lower = p + 2 * i * r;
    for (int64_t j = 0; j + i < r; ++j) {
      d[j * r + (j + i)] += upper[j];
      d[(j + i) * r + j] += lower[j];
    }
  }
  return d;
}

namespace {

void check_params(const SdeLinear& l, const char* what) {
  if (static_cast<int64_t>(l.params.size()) != l.param_count())
    throw InternalError(std::string(what) + ": params hold " + std::to_string(l.params.size()) + " values, band " +
                        std::to_string(l.band) + " of rank " + std::to_string(l.rank) + " needs " +
                        std::to_string(l.param_count()));
}

}  // namespace

// U D with D banded (Backend::sde_banded_product: rows * r * (2 band + 1)
// products instead of the dense rows * r^2, 20x fewer at the paper's band
// 100 on a 4096-wide linear), then one GEMM.
void sde_weight(Backend& be, const SdeLinear& l, float* w_out) {
  require_host_addressable(be, "sde_weight");
  check_params(l, "sde_weight");
  std::vector<float> ud(static_cast<size_t>(l.rows * l.rank));
  be.sde_banded_product(l.u.data(), l.s.data(), l.params.data(), l.rows, l.rank, l.band, ud.data());
  be.gemm(Trans::N, Trans::N, l.rows, l.cols, l.rank, 1.0f, ud.data(), l.rank, l.vt.data(), l.cols, 0.0f, w_out,
          l.cols);
  be.synchronize();
}

// M = U^T g (a GEMM), then the band's entries of M V
// (Backend::sde_band_grad: float products summed in float64).
void sde_band_grad(Backend& be, const SdeLinear& l, const float* g, float* dparams) {
  require_host_addressable(be, "sde_band_grad");
  check_params(l, "sde_band_grad");
  std::vector<float> m(static_cast<size_t>(l.rank * l.cols));
  be.gemm(Trans::T, Trans::N, l.rank, l.cols, l.rows, 1.0f, l.u.data(), l.rank, g, l.cols, 0.0f, m.data(), l.cols);
  be.sde_band_grad(m.data(), l.vt.data(), l.rank, l.cols, l.band, dparams);
  be.synchronize();
}

SdeOnBackend::SdeOnBackend(Backend& be, const SdeLinear& l, const std::string& name)
    : device(!be.host_addressable()) {
  if (!device) {  // the host arrays are the operands
    ud_host.resize(static_cast<size_t>(l.rows * l.rank));
    m_host.resize(static_cast<size_t>(l.rank * l.cols));
    u_op = l.u.data();
    s_op = l.s.data();
    vt_op = l.vt.data();
    ud_op = ud_host.data();
    m_op = m_host.data();
    return;
  }
  u = be.upload_new(l.u, "sde: U of " + name);
  s = be.upload_new(l.s, "sde: S of " + name);
  vt = be.upload_new(l.vt, "sde: Vt of " + name);
  params = be.alloc<float>(l.params.size(), "sde: band of " + name);
  dparams = be.alloc<float>(l.params.size(), "sde: dL/dband of " + name);
  ud = be.alloc<float>(static_cast<size_t>(l.rows * l.rank), "sde: U D of " + name);
  m = be.alloc<float>(static_cast<size_t>(l.rank * l.cols), "sde: U^T dW' of " + name);
  u_op = u.data();
  s_op = s.data();
  vt_op = vt.data();
  ud_op = ud.data();
  m_op = m.data();
}

void sde_weight(Backend& be, const SdeLinear& l, SdeOnBackend& f, float* w_out) {
  check_params(l, "sde_weight");
  const float* p = l.params.data();
  if (f.device) {  // the band as it stands (pageable: the call returns once it is read)
    be.upload(f.params, l.params.data(), l.params.size());
    p = f.params.data();
  }
  be.sde_banded_product(f.u_op, f.s_op, p, l.rows, l.rank, l.band, f.ud_op);
  be.gemm(Trans::N, Trans::N, l.rows, l.cols, l.rank, 1.0f, f.ud_op, l.rank, f.vt_op, l.cols, 0.0f, w_out, l.cols);
}

void sde_band_grad(Backend& be, const SdeLinear& l, SdeOnBackend& f, const float* g, float* dparams) {
  check_params(l, "sde_band_grad");
  be.gemm(Trans::T, Trans::N, l.rank, l.cols, l.rows, 1.0f, f.u_op, l.rank, g, l.cols, 0.0f, f.m_op, l.cols);
  be.sde_band_grad(f.m_op, f.vt_op, l.rank, l.cols, l.band, f.device ? f.dparams.data() : dparams);
  if (f.device) be.download(dparams, f.dparams, f.dparams.size());
  be.synchronize();  // the ops (and a device's download) before the host reads dparams
}

SteGrid fit_ste_grid(const QuantConfig& cfg, const float* w, int64_t rows, int64_t cols) {
  if (cfg.two_stage())
    throw InputError("fake_quant_ste: two-stage grids (--clip two-stage) need the Hessian; use min/max or mse clipping");
  if (rows < 0 || cols < 0) throw InputError("fake_quant_ste: bad shape " + shape_of(rows, cols));
  cfg.validate();  // bits, group, the clip search's and free-min's settings
  const Grid grid(cfg);
  SteGrid sg;
  sg.rows = rows;
  sg.cols = cols;
  sg.group = cfg.group > 0 ? std::min(cfg.group, cols) : cols;
  const int64_t groups = sg.group > 0 ? (cols + sg.group - 1) / sg.group : 0;
  sg.params.resize(static_cast<size_t>(rows * groups));
  tbb::parallel_for(int64_t{0}, rows, [&](int64_t row) {
    std::vector<double> x(static_cast<size_t>(sg.group));
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t c0 = gi * sg.group, len = std::min(sg.group, cols - c0);
      for (int64_t k = 0; k < len; ++k) x[k] = w[row * cols + c0 + k];
      sg.params[row * groups + gi] = grid.fit(x.data(), len);
    }
  });
  return sg;
}

void fake_quant_ste(const QuantConfig& cfg, const SteGrid& sg, const float* w, float* wq, uint8_t* mask) {
  const Grid grid(cfg);
  const int64_t rows = sg.rows, cols = sg.cols, g = sg.group;
  const int64_t groups = g > 0 ? (cols + g - 1) / g : 0;
  const double maxq = grid.maxq();
  tbb::parallel_for(int64_t{0}, rows, [&](int64_t row) {
    for (int64_t c = 0; c < cols; ++c) {
      const GridParams& p = sg.params[row * groups + c / g];
      const int64_t idx = row * cols + c;
      const double x = w[idx];
      wq[idx] = static_cast<float>(grid.quantize(x, p));
      // Grid::code before its clamp (the same round-half-even).
      const double unclamped = cfg.free_min ? std::nearbyint((x - p.zero) / p.scale) : std::nearbyint(x / p.scale) + p.zero;
      mask[idx] = unclamped >= 0 && unclamped <= maxq ? 1 : 0;
    }
  });
}

void fake_quant_ste(const QuantConfig& cfg, const float* w, int64_t rows, int64_t cols, float* wq, uint8_t* mask) {
  fake_quant_ste(cfg, fit_ste_grid(cfg, w, rows, cols), w, wq, mask);
}

}  // namespace streamq
