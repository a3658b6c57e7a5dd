// What every backend shares: op names, the unsupported-op error, and the
// bounds and ownership checks of the typed copies.
#include "kernels/backend.h"

#include <string>

#include "src/core/error.h"

namespace streamq {

const char* op_name(Op op) {
  switch (op) {
    case Op::GemmF32: return "gemm_f32";
    case Op::GemmF64: return "gemm_f64";
    case Op::CholeskyLower: return "cholesky_lower";
    case Op::InvertLowerTriangular: return "invert_lower_triangular";
    case Op::InverseUpperFactor: return "inverse_upper_factor";
    case Op::InverseUpperFactorF32: return "inverse_upper_factor_f32";
    case Op::HadamardRows: return "hadamard_rows";
    case Op::Bf16ToF32: return "bf16_to_f32";
    case Op::Rmsnorm: return "rmsnorm";
    case Op::Rope: return "rope";
    case Op::Attention: return "attention";
    case Op::Swiglu: return "swiglu";
    case Op::AddInplace: return "add_inplace";
    case Op::Subtract: return "subtract";
    case Op::AddBias: return "add_bias";
    case Op::GramBf16: return "gram_bf16";
    case Op::GptqSweep32: return "gptq_sweep32";
    case Op::GptqSweep64: return "gptq_sweep64";
    case Op::RmsnormBackward: return "rmsnorm_backward";
    case Op::RopeBackward: return "rope_backward";
    case Op::AttentionBackward: return "attention_backward";
    case Op::SwigluBackward: return "swiglu_backward";
    case Op::Svd: return "svd";
    case Op::FakeQuantSte: return "fake_quant_ste";
    case Op::SteMaskGrad: return "ste_mask_grad";
    case Op::SdeBandedProduct: return "sde_banded_product";
    case Op::SdeBandGrad: return "sde_band_grad";
  }
  return "unknown op";
}

void Backend::check_supported(Op op) const {
  if (!supports(op))
    throw InternalError("backend " + name() + " does not support " + op_name(op) +
                        " (callers check supports() first; there is no silent fallback)");
}

void Backend::check_range(const Backend* owner, size_t size, size_t offset, size_t count, const char* what) const {
  if (owner != this)
    throw InternalError(std::string(what) + " on backend " + name() + ": the buffer belongs to " +
                        (owner ? "backend " + owner->name() : std::string("no backend (empty or moved from)")));
  if (offset > size || count > size - offset)
    throw InternalError(std::string(what) + " on backend " + name() + ": elements [" + std::to_string(offset) +
                        ", " + std::to_string(offset) + " + " + std::to_string(count) + ") of a buffer of " +
                        std::to_string(size));
}

}  // namespace streamq
