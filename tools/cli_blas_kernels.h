// Which OpenBLAS kernels the process runs. OpenBLAS picks them by CPU model
// when the library loads, and on a CPU newer than the library knows it falls
// back to its SSE3 'Prescott' kernels (seen on a Xeon VM with AVX-512: SmolLM2
// GPTQ ran 1.4x slower than on the AVX-512 kernels). streamq then names the
// family the CPU's features reach (SkylakeX with AVX-512, Haswell with AVX2)
// and re-executes itself with it. A family the library detected itself, or
// OPENBLAS_CORETYPE set in the environment, is kept.
//
// Families round differently, so the last digits of results (and, through
// GPTQ's discrete decisions, some codes) differ between them: for the same
// bytes on every machine set OPENBLAS_CORETYPE=Haswell (any AVX2 CPU runs
// it; scripts/demo_table.sh does, so README's table reproduces anywhere).
#pragma once

namespace streamq {

// The family to run instead of what the loaded library chose, or nullptr to
// keep its choice (OPENBLAS_CORETYPE set, a family the library recognized,
// or a CPU without AVX2).
const char* wanted_blas_core();

// When wanted_blas_core() names one, re-executes this program
// (/proc/self/exe, the same argv) with OPENBLAS_CORETYPE set to it: the
// choice is made at load time, before main. Returns (changing nothing) when
// no re-execution is needed or it fails.
void run_with_the_cpus_blas_kernels(char** argv);

}  // namespace streamq
