// Fuzz target: a .npy file (magic, version, header dict, dtype, shape,
// Fortran order) through read_npy and read_matrix_f64.
#include "io/formats/npy.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch("array.npy", {reinterpret_cast<const char*>(data), size});
  fuzz::expect_input_errors([&] {
    const NpyArray a = read_npy(path);
    int64_t numel = 1;
    for (int64_t d : a.shape) numel *= d;
    if (a.data.size() != static_cast<size_t>(numel) * dtype_size(a.dtype)) std::abort();
  });
  fuzz::expect_input_errors([&] {
    std::vector<int64_t> shape;
    const std::vector<double> m = read_matrix_f64(path, &shape);
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (m.size() != static_cast<size_t>(numel)) std::abort();
  });
  return 0;
}
