// Places where the crash test may SIGKILL the job, so that kills land in every
// phase (reads, compute, writes, manifest updates) rather than wherever a
// timer happens to fire. Inert unless a spec is given (the CLI reads it from
// STREAMQ_TEST_KILL_AT, a test-only hook).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace streamq {

class KillPoints {
 public:
  KillPoints() = default;
  // "NAME:N": die at the N-th (1-based) hit of point NAME; "any:N": at the
  // N-th hit of any point. Empty: never. InputError on anything else.
  explicit KillPoints(const std::string& spec);
  // Counts a hit of `name`; raises SIGKILL on this process when it is the one.
  // Safe from any thread (the count is atomic: concurrent hits each count once).
  void hit(const char* name);
  bool armed() const { return target_ > 0; }

 private:
  std::string name_;
  int64_t target_ = 0;
  std::atomic<int64_t> count_{0};
};

}  // namespace streamq
