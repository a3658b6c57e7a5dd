// The io_uring file layer: a ring (RAII) with the engine's buffer pool
// registered as fixed buffers, ops batched into one io_uring_enter per
// submit(), completions reaped by one thread while another submits.
#pragma once

#include <memory>

#include "io/file/io_backend.h"

struct io_uring;  // liburing's ring, kept out of this header

namespace streamq {

class UringBackend final : public IoBackend {
 public:
  // Throws nothing: check init_error() (make_uring_backend does).
  explicit UringBackend(unsigned entries);
  ~UringBackend() override;
  UringBackend(const UringBackend&) = delete;
  UringBackend& operator=(const UringBackend&) = delete;

  // 0 when the ring is up, else the negative errno of io_uring_queue_init.
  int init_error() const { return init_error_; }
  std::string name() const override;
  void register_buffers(char* base, size_t slab_bytes, size_t nslabs) override;
  void queue(IoOp* op) override;
  void submit() override;
  void reap(std::vector<IoCompletion>* out, bool wait) override;

 private:
  std::unique_ptr<io_uring> ring_;
  int init_error_ = 0;
  bool registered_ = false;
};

}  // namespace streamq
