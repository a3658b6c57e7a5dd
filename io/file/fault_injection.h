// A file layer that fails on purpose, wrapped around a real IoBackend, so
// tests can watch the store meet a full disk, a dying device, short
// transfers and interrupted syscalls the way a kernel would present them.
#pragma once

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "io/file/io_backend.h"

namespace streamq {

struct FaultPlan {
  int error = ENOSPC;  // what a failing read or write returns (ENOSPC, EIO, ...)
  // Bytes all writes together may store. The write that crosses it stores
  // what fits (whole 4096-byte blocks, so O_DIRECT stays aligned) and comes
  // back short, like a filling disk; the retry of its remainder, and every
  // write after, fails with `error`.
  uint64_t write_budget = UINT64_MAX;
  int64_t fail_write_at = -1;  // the k-th write op (0-based, retries counted) fails outright
  int64_t fail_read_at = -1;   // likewise for reads
  uint32_t max_transfer = 0;   // > 0: each read/write moves at most this many bytes (short transfers)
  uint32_t interrupt_every = 0;  // > 0: every n-th read/write returns EINTR or EAGAIN (alternately) instead
  bool reject_direct = false;    // open() with O_DIRECT fails with EINVAL, as filesystems without it do
};

struct FaultCounters {
  int64_t writes = 0, reads = 0;  // ops seen, retries included
  uint64_t bytes_written = 0;     // bytes the writes were allowed to store
  int64_t injected = 0;           // ops failed, shortened or interrupted on purpose
};

// The plan and counters, shared between the test and the backend it wraps;
// the plan may change while the store runs (a disk that gets space again).
class FaultInjector {
 public:
  explicit FaultInjector(FaultPlan plan = {}) : plan_(plan) {}
  void set_plan(const FaultPlan& p);
  FaultCounters counters() const;
  // What to do with one op (used by the wrapper).
  struct Decision {
    int error = 0;       // > 0: fail with this errno
    uint32_t len = 0;    // else: pass with this length (maybe shortened)
  };
  Decision decide(const IoOp& op);
  bool reject_open(int flags) const;

 private:
  mutable std::mutex m_;
  FaultPlan plan_;
  FaultCounters c_;
};

// `inner` with every op passing through `injector` first.
std::unique_ptr<IoBackend> wrap_with_faults(std::unique_ptr<IoBackend> inner, std::shared_ptr<FaultInjector> injector);

}  // namespace streamq
