// See blas_kernels.h.
#include "tools/cli_blas_kernels.h"

#include <strings.h>
#include <unistd.h>

#include <cstdlib>

extern "C" char* openblas_get_corename(void);

namespace streamq {

const char* wanted_blas_core() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

const char* blas_core_name() { return openblas_get_corename(); }

void run_with_reproducible_blas_kernels(char** argv) {
  const char* want = wanted_blas_core();
  if (want == nullptr || strcasecmp(blas_core_name(), want) == 0) return;
  if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: go on with the library's own choice
}

}  // namespace streamq
