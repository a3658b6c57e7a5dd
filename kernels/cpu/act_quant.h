// Dynamic activation and KV-cache fake quantization (issue 17, QuaRot's
// per-token quantizer; the CPU op, a CUDA twin to come beside it): each row
// of a [rows, width] matrix (a token's input to a linear, or one head's
// key/value vector) gets its own grid from its own min and max at run time,
// then is replaced by its dequantized value.
//
// Per row, with clip ratio c (1.0 = plain min-max; QuaRot uses 0.9):
//   asymmetric: lo = c * min(row, 0), hi = c * max(row, 0) (both 0: -1 and 1),
//     scale = (hi - lo) / (2^b - 1), zero = round(-lo / scale),
//     x -> scale * (clamp(round(x / scale) + zero, 0, 2^b - 1) - zero);
//   symmetric: m = c * max|row| (0: scale 1), scale = m / (2^(b-1) - 1),
//     x -> scale * clamp(round(x / scale), -2^(b-1), 2^(b-1) - 1).
// round() is half away from zero; the arithmetic is float64, the result
// float32. bits >= 16 leaves the data untouched.
#pragma once

#include <cstdint>
#include <string>

namespace streamq {

struct ActQuantConfig {
  int bits = 16;      // 16 (or more) = off
  bool sym = false;   // QuaRot's activations and KV cache are asymmetric by default
  double clip = 1.0;  // clip ratio in (0, 1]
  bool enabled() const { return bits < 16; }
  // InputError naming `flag` (e.g. "--abits") for bits outside 2..16 or a
  // clip ratio outside (0, 1].
  void validate(const std::string& flag) const;
};

// In place over x[rows, width]. A NaN or infinite value is an InputError
// naming `what` and the row (a model that produces them cannot be
// quantized, and a grid from them would be meaningless).
void fake_quant_rows(float* x, int64_t rows, int64_t width, const ActQuantConfig& c, const std::string& what);

}  // namespace streamq
