// io_uring behind IoBackend. Submission (queue/submit, under the engine's
// lock) and completion (reap, by the one thread currently waiting) touch
// different halves of the ring, which liburing allows from different threads.
#include "io/file/uring_file.h"

#include <liburing.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "src/core/error.h"

namespace streamq {

UringBackend::UringBackend(unsigned entries) : ring_(std::make_unique<io_uring>()) {
  const int r = io_uring_queue_init(entries, ring_.get(), 0);
  if (r < 0) {
    init_error_ = r;
    ring_.reset();
  }
}

UringBackend::~UringBackend() {
  if (!ring_) return;
  if (registered_) io_uring_unregister_buffers(ring_.get());
  io_uring_queue_exit(ring_.get());
}

std::string UringBackend::name() const { return registered_ ? "io_uring (registered buffers)" : "io_uring"; }

void UringBackend::register_buffers(char* base, size_t slab_bytes, size_t nslabs) {
  std::vector<iovec> iov(nslabs);
  for (size_t i = 0; i < nslabs; ++i) iov[i] = {base + i * slab_bytes, slab_bytes};
  const int r = io_uring_register_buffers(ring_.get(), iov.data(), static_cast<unsigned>(nslabs));
  if (r < 0) {
    // Registration pins the pool against RLIMIT_MEMLOCK; plain buffers work,
    // only with a page-pinning cost per request.
    static std::once_flag once;
    std::call_once(once, [&] {
      std::fprintf(stderr, "streamq: io_uring buffer registration failed (%s); using unregistered buffers\n",
                   std::strerror(-r));
    });
    return;
  }
  registered_ = true;
}

void UringBackend::queue(IoOp* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {  // the submission queue is full: hand it to the kernel and retry
    submit();
    sqe = io_uring_get_sqe(ring_.get());
    if (!sqe) throw InternalError("io_uring: no submission slot after submitting the queue");
  }
  const bool fixed = registered_ && op->buf_index >= 0;
  switch (op->kind) {
    case IoKind::Read:
      if (fixed) io_uring_prep_read_fixed(sqe, op->fd, op->buf, op->len, op->offset, op->buf_index);
      else io_uring_prep_read(sqe, op->fd, op->buf, op->len, op->offset);
      break;
    case IoKind::Write:
      if (fixed) io_uring_prep_write_fixed(sqe, op->fd, op->buf, op->len, op->offset, op->buf_index);
      else io_uring_prep_write(sqe, op->fd, op->buf, op->len, op->offset);
      break;
    case IoKind::Nop:
      io_uring_prep_nop(sqe);
      break;
  }
  io_uring_sqe_set_data(sqe, op);
}

void UringBackend::submit() {
  while (io_uring_sq_ready(ring_.get()) > 0) {
    const int r = io_uring_submit(ring_.get());
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r < 0) throw InternalError(std::string("io_uring_submit failed: ") + std::strerror(-r));
  }
}

void UringBackend::reap(std::vector<IoCompletion>* out, bool wait) {
  io_uring_cqe* cqe = nullptr;
  if (wait) {
    int r;
    do r = io_uring_wait_cqe(ring_.get(), &cqe);
    while (r == -EINTR || r == -EAGAIN);
    if (r < 0) throw InternalError(std::string("io_uring_wait_cqe failed: ") + std::strerror(-r));
  }
  unsigned head = 0, n = 0;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    out->push_back({static_cast<IoOp*>(io_uring_cqe_get_data(cqe)), cqe->res});
    ++n;
  }
  io_uring_cq_advance(ring_.get(), n);
}

std::unique_ptr<IoBackend> make_uring_backend(unsigned entries, std::string* why) {
  auto b = std::make_unique<UringBackend>(entries);
  if (b->init_error() == 0) return b;
  if (why) *why = std::string("io_uring_queue_init: ") + std::strerror(-b->init_error());
  return nullptr;
}

}  // namespace streamq
