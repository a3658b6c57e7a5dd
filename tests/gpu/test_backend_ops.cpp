// The backend op table and the backend contracts in the GPU test binaries
// (the nvcc one and the CUDA-on-CPU one, which both take tests/gpu/*.cpp):
// the very files the CPU binary runs, where backends_under_test() now also
// holds the CUDA backend, so every case runs on CPU and CUDA against the CPU
// float64 reference. One file, two translation units' worth of tests.
#include "tests/kernels/test_backend_contracts.cpp"
#include "tests/kernels/test_backend_ops.cpp"
