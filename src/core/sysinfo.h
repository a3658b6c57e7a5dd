// Process facts the reports need: peak resident memory, wall clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace streamq {

// Peak resident set size of this process so far, in bytes (getrusage).
uint64_t peak_rss_bytes();

// CPU time and page faults of this process (all threads) so far; the
// difference of two readings is what the work between them cost. System time
// and minor faults are where fresh allocations (mmap, first touch) show.
struct ProcessTimes {
  double user_seconds = 0, system_seconds = 0;
  uint64_t minor_faults = 0, major_faults = 0;
  ProcessTimes operator-(const ProcessTimes& o) const {
    return {user_seconds - o.user_seconds, system_seconds - o.system_seconds, minor_faults - o.minor_faults,
            major_faults - o.major_faults};
  }
};
ProcessTimes process_times();

class Stopwatch {
 public:
  Stopwatch() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace streamq
