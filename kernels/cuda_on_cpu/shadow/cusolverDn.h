// Shadows <cusolverDn.h> in the CUDA-on-CPU build: cuSOLVER on LAPACKE.
#pragma once
#include "kernels/cuda_on_cpu/libraries.h"
