// SIGKILL at a chosen hit of a named point.
#include "src/job/kill_points.h"

#include <csignal>
#include <cstdlib>

#include "src/core/error.h"

namespace streamq {

KillPoints::KillPoints(const std::string& spec) {
  if (spec.empty()) return;
  const auto colon = spec.rfind(':');
  char* end = nullptr;
  const long long n = colon == std::string::npos ? 0 : std::strtoll(spec.c_str() + colon + 1, &end, 10);
  if (colon == std::string::npos || colon == 0 || n < 1 || *end != '\0')
    throw InputError("kill point '" + spec + "': expected NAME:N with N >= 1");
  name_ = spec.substr(0, colon);
  target_ = n;
}

void KillPoints::hit(const char* name) {
  if (target_ == 0 || (name_ != "any" && name_ != name)) return;
  if (count_.fetch_add(1) + 1 == target_) std::raise(SIGKILL);
}

}  // namespace streamq
