// See cli_blas_kernels.h.
#include "tools/cli_blas_kernels.h"

#include <strings.h>
#include <unistd.h>

#include <cstdlib>
#include <initializer_list>
#include <string>

#include "kernels/cpu/cpu_ops.h"

namespace streamq {
namespace {

bool one_of(const char* name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (strcasecmp(name, n) == 0) return true;
  return false;
}

}  // namespace

const char* wanted_blas_core() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
  __builtin_cpu_init();
  const std::string kernels = cpu::blas_kernels();
  const char* detected = kernels.c_str();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512cd");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // Families OpenBLAS 0.3.21 names for CPUs with these features when it
  // recognizes them: kept as detected.
  if (avx512 && !one_of(detected, {"SkylakeX", "Cooperlake", "SapphireRapids", "Zen"})) return "SkylakeX";
  if (!avx512 && avx2 && !one_of(detected, {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}))
    return "Haswell";
  return nullptr;
}

void run_with_the_cpus_blas_kernels(char** argv) {
  const char* want = wanted_blas_core();
  if (want == nullptr) return;
  if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: go on with the library's own choice
}

}  // namespace streamq
