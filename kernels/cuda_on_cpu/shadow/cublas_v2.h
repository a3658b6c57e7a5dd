// Shadows <cublas_v2.h> in the CUDA-on-CPU build: cuBLAS on the host's CBLAS.
#pragma once
#include "kernels/cuda_on_cpu/libraries.h"
