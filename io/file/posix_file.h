// The pread/pwrite file layer: the fallback when io_uring is unavailable or
// not wanted, behind the same IoBackend interface. Ops run synchronously in
// submit(); reap() hands their results back.
#pragma once

#include <deque>
#include <mutex>
#include <vector>

#include "io/file/io_backend.h"

namespace streamq {

// Owns a file descriptor: closed on every path out, including throws.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

class PosixBackend final : public IoBackend {
 public:
  std::string name() const override { return "posix"; }
  void queue(IoOp* op) override { queued_.push_back(op); }
  void submit() override;
  void reap(std::vector<IoCompletion>* out, bool wait) override;

 private:
  std::vector<IoOp*> queued_;  // guarded by the engine's lock
  std::mutex m_;               // guards done_: reap runs outside the engine's lock
  std::deque<IoCompletion> done_;
};

}  // namespace streamq
