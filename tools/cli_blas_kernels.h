// Which OpenBLAS kernels the process runs. OpenBLAS picks them by CPU model
// when the library loads; different families (Haswell's AVX2, SkylakeX's
// AVX-512) round differently, so quantized codes and the last digits of
// perplexity would depend on the machine, and on a CPU newer than the
// library knows it falls back to SSE3 'Prescott' kernels (seen on a Xeon VM:
// slower, and different digits again). streamq runs the Haswell kernels on
// every CPU that has AVX2 and FMA, so a job gives the same bytes on any such
// machine; OPENBLAS_CORETYPE set in the environment is kept as it is (e.g.
// OPENBLAS_CORETYPE=SkylakeX for the AVX-512 kernels: faster there, other
// last digits).
#pragma once

namespace streamq {

// The family streamq wants for this CPU, or nullptr to keep the library's
// choice (no AVX2/FMA, or OPENBLAS_CORETYPE already set).
const char* wanted_blas_core();

// When wanted_blas_core() differs from what the loaded library chose,
// re-executes this program (/proc/self/exe, the same argv) with
// OPENBLAS_CORETYPE set: the choice is made at load time, before main.
// Returns (changing nothing) when no re-execution is needed or it fails.
void run_with_reproducible_blas_kernels(char** argv);

// The kernel family the loaded OpenBLAS runs ("Haswell", "Prescott", ...).
const char* blas_core_name();

}  // namespace streamq
