// One progress line per step on stderr: elapsed time and an ETA from the mean
// of the last steps (block times vary little; the first includes warm-up).
#pragma once

#include <cstdint>
#include <deque>
#include <iosfwd>
#include <string>

#include "src/core/sysinfo.h"

namespace streamq {

class Progress {
 public:
  // `done`: steps an earlier process finished (a resumed job).
  Progress(std::ostream* out, std::string what, int64_t total, int64_t done = 0)
      : out_(out), what_(std::move(what)), total_(total), done_(done) {}
  // Marks one step done and prints "<what> block i/n  <step>s  elapsed  ETA  <extra>".
  void step(const std::string& extra);

 private:
  std::ostream* out_;
  std::string what_;
  int64_t total_, done_ = 0;
  Stopwatch clock_;
  double last_ = 0;
  std::deque<double> recent_;
};

std::string format_duration(double seconds);

}  // namespace streamq
