// getrusage-based process statistics.
#include "src/core/sysinfo.h"

#include <sys/resource.h>

namespace streamq {

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace streamq
