// Shadows <cuda_runtime.h> in the CUDA-on-CPU build: see cuda_runtime_api.h.
#pragma once
#include "kernels/cuda_on_cpu/runtime.h"
