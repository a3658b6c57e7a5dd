// Process facts the reports need: peak resident memory, wall clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace streamq {

// Peak resident set size of this process so far, in bytes (getrusage).
uint64_t peak_rss_bytes();

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
