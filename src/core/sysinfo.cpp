// getrusage-based process statistics.
#include "src/core/sysinfo.h"

#include <sys/resource.h>

namespace streamq {

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

ProcessTimes process_times() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return {secs(u.ru_utime), secs(u.ru_stime), static_cast<uint64_t>(u.ru_minflt), static_cast<uint64_t>(u.ru_majflt)};
}

}  // namespace streamq
