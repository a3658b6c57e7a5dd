// Shadows the CUDA runtime header in the CUDA-on-CPU build (on the include
// path before any CUDA toolkit): the HIP-CPU stand-in of kernels/cuda_on_cpu.
#pragma once
#include "kernels/cuda_on_cpu/runtime.h"
