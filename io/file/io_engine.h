// Transfers between a fixed pool of aligned buffers and files, several in
// flight, on any IoBackend: the one place where short transfers are requeued
// for their remainder, EINTR/EAGAIN retried, and failures turned into a
// message naming the file. Thread-safe; whichever thread waits reaps
// completions for everyone.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/file/io_backend.h"

namespace streamq {

class IoEngine {
 public:
  // One buffer of the pool; requests hold one each, so the pool size bounds
  // what is in flight and how much memory I/O pins.
  struct Slab {
    int index = -1;
    char* data = nullptr;
  };
  // Completion bookkeeping for a set of transfers (one chunk file's writes,
  // one read). Fields are guarded by the engine: read them after wait().
  struct Group {
    std::string path;  // named in errors
    int pending = 0;
    std::string error;  // the first failure; empty when all went well
  };

  // slab_bytes must be a multiple of 4096 (O_DIRECT alignment).
  IoEngine(std::unique_ptr<IoBackend> backend, size_t slab_bytes, size_t nslabs);
  // Waits for everything in flight (the kernel may still be writing into or
  // out of the pool).
  ~IoEngine();
  IoEngine(const IoEngine&) = delete;
  IoEngine& operator=(const IoEngine&) = delete;

  std::string backend_name() const { return backend_->name(); }
  size_t slab_bytes() const { return slab_bytes_; }
  size_t nslabs() const { return nslabs_; }
  // The backend's open(): a descriptor or -errno.
  int open(const std::string& path, int flags, mode_t mode) { return backend_->open(path, flags, mode); }

  // Blocks (reaping completions meanwhile) until a slab is free. A thread
  // must not block here while it holds slabs that only it will release.
  Slab acquire();
  bool try_acquire(Slab* out);
  void release(Slab s);

  // Queues a transfer of len bytes between slab memory and fd at offset,
  // counted in g. A write gives its slab back to the pool when it finishes; a
  // read leaves it with the caller. Nothing reaches the kernel before submit().
  void queue(IoKind kind, int fd, Slab slab, uint32_t len, uint64_t offset, Group* g);
  void submit();
  // Until g->pending is 0 (success or failure: check g->error).
  void wait(Group* g);
  // Whether g->pending is 0 now, reaping what is ready without blocking.
  bool finished(Group* g);
  // Until nothing is in flight.
  void wait_all();

 private:
  struct Request {
    IoOp op;  // what the backend sees; a wrapper may alter it, so the fields below are the truth
    IoKind kind = IoKind::Nop;
    char* start = nullptr;
    uint64_t start_offset = 0;
    uint32_t total = 0, done = 0;
    int retries = 0;
    Group* group = nullptr;
  };
  template <class Pred>
  void drive(std::unique_lock<std::mutex>& lk, Pred done);
  void poll_locked();
  void process(const std::vector<IoCompletion>& batch);
  void requeue(Request& r);
  void finish(Request& r, const std::string& error);

  std::unique_ptr<IoBackend> backend_;
  size_t slab_bytes_, nslabs_;
  std::unique_ptr<char, void (*)(void*)> pool_;
  std::vector<Request> requests_;  // one per slab: request i uses slab i
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<int> free_;
  size_t inflight_ = 0;    // ops queued to the backend and not yet processed
  bool unsubmitted_ = false;
  bool reaping_ = false;   // a thread is inside backend_->reap()
  std::vector<IoCompletion> batch_;  // the reaper's
};

// Hands a slab back to the pool unless taken: for every path out of a caller,
// including throws.
class SlabLease {
 public:
  SlabLease(IoEngine& e, IoEngine::Slab s) : e_(&e), s_(s) {}
  ~SlabLease() {
    if (s_.index >= 0) e_->release(s_);
  }
  SlabLease(SlabLease&& o) noexcept : e_(o.e_), s_(o.s_) { o.s_.index = -1; }
  SlabLease(const SlabLease&) = delete;
  SlabLease& operator=(const SlabLease&) = delete;
  SlabLease& operator=(SlabLease&&) = delete;
  char* data() const { return s_.data; }
  const IoEngine::Slab& slab() const { return s_; }
  // Ownership passes to a queued write.
  IoEngine::Slab take() {
    IoEngine::Slab s = s_;
    s_.index = -1;
    return s;
  }

 private:
  IoEngine* e_;
  IoEngine::Slab s_;
};

}  // namespace streamq
