// The raw file layer under the activation store: one read or write the kernel
// sees, queued and reaped, with its result exactly as the kernel gave it (a
// byte count, possibly short, or -errno). io_uring and pread/pwrite implement
// it; the fault-injecting wrapper sits on top of either. Retrying short and
// interrupted transfers is not done here but once, in IoEngine.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace streamq {

enum class IoKind : uint8_t { Read, Write, Nop };

struct IoOp {
  IoKind kind = IoKind::Nop;
  int fd = -1;
  char* buf = nullptr;
  uint32_t len = 0;
  uint64_t offset = 0;
  int buf_index = -1;  // index of the registered buffer holding `buf`, or -1
  void* user = nullptr;
};

struct IoCompletion {
  IoOp* op = nullptr;
  int64_t res = 0;  // bytes transferred, or -errno
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;
  virtual std::string name() const = 0;
  // Offers the engine's buffer pool (nslabs slabs of slab_bytes from base) for
  // registration; a backend may ignore it and then sees buf_index == -1.
  virtual void register_buffers(char* base, size_t slab_bytes, size_t nslabs) {}
  // Opens a file; returns the descriptor or -errno. Routed through the backend
  // so tests can make O_DIRECT look unsupported.
  virtual int open(const std::string& path, int flags, mode_t mode);
  // queue() and submit() are called by one thread at a time (the engine's lock).
  virtual void queue(IoOp* op) = 0;
  // Hands everything queued to the kernel.
  virtual void submit() = 0;
  // Appends finished ops to `out`; with `wait`, blocks until at least one is
  // there when anything is in flight. Called by one thread at a time, possibly
  // concurrently with queue()/submit() on another thread.
  virtual void reap(std::vector<IoCompletion>* out, bool wait) = 0;
};

// How the activation store reaches the disk: Auto tries io_uring and falls
// back to pread/pwrite; Uring fails when io_uring is unavailable.
enum class IoPath { Auto, Uring, Posix };
const char* to_string(IoPath p);
// Parses "auto", "uring", "posix"; throws InputError naming --io otherwise.
IoPath parse_io_path(const std::string& s);

// io_uring with `entries` submission slots, or null with the reason in *why
// (io_uring_queue_init failing: old kernel, seccomp, a container forbidding it).
std::unique_ptr<IoBackend> make_uring_backend(unsigned entries, std::string* why);
std::unique_ptr<IoBackend> make_posix_backend();

// The choice between them. `make_uring` is a seam for tests (defaults to
// make_uring_backend); a fallback sets *fallback_reason, and the caller says
// it once in the log.
using UringFactory = std::function<std::unique_ptr<IoBackend>(unsigned entries, std::string* why)>;
std::unique_ptr<IoBackend> select_io_backend(IoPath want, unsigned entries, std::string* fallback_reason,
                                             const UringFactory& make_uring = make_uring_backend);

}  // namespace streamq
