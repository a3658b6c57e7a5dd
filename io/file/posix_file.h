// The pread/pwrite file layer: the fallback when io_uring is unavailable or
// not wanted, behind the same IoBackend interface. Ops run synchronously in
// submit(); reap() hands their results back.
#pragma once

#include <deque>
#include <mutex>
#include <vector>

#include "io/file/io_backend.h"

namespace streamq {

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
