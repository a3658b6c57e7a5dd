// NumPy .npy arrays (format 1.0/2.0/3.0): reading float32/float64 matrices and
// writing float64, int32 and uint8 arrays, for the researcher-facing
// `streamq layer` command.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/core/dtype.h"

namespace streamq {

struct NpyArray {
  DType dtype = DType::F64;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order, little-endian
};

// Reads any .npy of a supported dtype (<f4, <f8, <i4, |u1); Fortran-order
// 2-D arrays are transposed into C order. Throws InputError naming the file.
NpyArray read_npy(const std::string& path);
// A 1-D or 2-D floating .npy (or a single-tensor .safetensors) as float64.
std::vector<double> read_matrix_f64(const std::string& path, std::vector<int64_t>* shape);
// Writes atomically (temp, fsync, rename).
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data);

}  // namespace streamq
