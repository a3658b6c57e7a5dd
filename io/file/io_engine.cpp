// IoEngine: the buffer pool, the retry policy for short and interrupted
// transfers, and choosing io_uring or pread/pwrite.
#include "io/file/io_engine.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "src/core/error.h"

namespace streamq {

namespace {
// EINTR/EAGAIN are transient; a bound keeps a misbehaving device from
// spinning forever.
constexpr int kMaxRetries = 100;
constexpr size_t kAlign = 4096;
}  // namespace

IoEngine::IoEngine(std::unique_ptr<IoBackend> backend, size_t slab_bytes, size_t nslabs)
    : backend_(std::move(backend)), slab_bytes_(slab_bytes), nslabs_(nslabs), pool_(nullptr, std::free) {
  if (slab_bytes == 0 || slab_bytes % kAlign || nslabs == 0)
    throw InternalError("io engine: slab size " + std::to_string(slab_bytes) + " must be a positive multiple of " +
                        std::to_string(kAlign) + " and the pool non-empty");
  pool_.reset(static_cast<char*>(std::aligned_alloc(kAlign, slab_bytes * nslabs)));
  if (!pool_) throw InternalError("io engine: cannot allocate " + std::to_string(slab_bytes * nslabs) + " bytes");
  requests_.resize(nslabs);
  for (size_t i = nslabs; i-- > 0;) free_.push_back(static_cast<int>(i));
  backend_->register_buffers(pool_.get(), slab_bytes, nslabs);
}

IoEngine::~IoEngine() {
  try {
    wait_all();
  } catch (...) {
    // A destructor cannot report; the ring's teardown cancels what is left.
  }
}

template <class Pred>
void IoEngine::drive(std::unique_lock<std::mutex>& lk, Pred done) {
  while (!done()) {
    if (unsubmitted_) {
      backend_->submit();
      unsubmitted_ = false;
    }
    if (reaping_ || inflight_ == 0) {
      // Another thread is reaping for us, or what we wait for is a slab that
      // a caller (not the kernel) holds: its release() notifies.
      cv_.wait(lk);
      continue;
    }
    reaping_ = true;
    batch_.clear();
    lk.unlock();
    try {
      backend_->reap(&batch_, true);
    } catch (...) {
      lk.lock();
      reaping_ = false;
      cv_.notify_all();
      throw;
    }
    lk.lock();
    reaping_ = false;
    process(batch_);
    cv_.notify_all();
  }
}

void IoEngine::poll_locked() {
  if (reaping_ || inflight_ == 0) return;
  if (unsubmitted_) {
    backend_->submit();
    unsubmitted_ = false;
  }
  batch_.clear();
  backend_->reap(&batch_, false);
  if (!batch_.empty()) {
    process(batch_);
    cv_.notify_all();
  }
}

IoEngine::Slab IoEngine::acquire() {
  std::unique_lock lk(m_);
  if (free_.empty()) poll_locked();
  drive(lk, [&] { return !free_.empty(); });
  const int i = free_.back();
  free_.pop_back();
  return {i, pool_.get() + static_cast<size_t>(i) * slab_bytes_};
}

bool IoEngine::try_acquire(Slab* out) {
  std::unique_lock lk(m_);
  if (free_.empty()) poll_locked();
  if (free_.empty()) return false;
  const int i = free_.back();
  free_.pop_back();
  *out = {i, pool_.get() + static_cast<size_t>(i) * slab_bytes_};
  return true;
}

void IoEngine::release(Slab s) {
  {
    std::lock_guard lk(m_);
    free_.push_back(s.index);
  }
  cv_.notify_all();
}

void IoEngine::queue(IoKind kind, int fd, Slab slab, uint32_t len, uint64_t offset, Group* g) {
  std::lock_guard lk(m_);
  Request& r = requests_[static_cast<size_t>(slab.index)];
  r.op = {kind, fd, slab.data, len, offset, slab.index, &r};
  r.kind = kind;
  r.start = slab.data;
  r.start_offset = offset;
  r.total = len;
  r.done = 0;
  r.retries = 0;
  r.group = g;
  ++g->pending;
  backend_->queue(&r.op);
  ++inflight_;
  unsubmitted_ = true;
}

void IoEngine::submit() {
  std::lock_guard lk(m_);
  if (!unsubmitted_) return;
  backend_->submit();
  unsubmitted_ = false;
}

void IoEngine::wait(Group* g) {
  std::unique_lock lk(m_);
  drive(lk, [&] { return g->pending == 0; });
}

bool IoEngine::finished(Group* g) {
  std::lock_guard lk(m_);
  if (g->pending > 0) poll_locked();
  return g->pending == 0;
}

void IoEngine::wait_all() {
  std::unique_lock lk(m_);
  drive(lk, [&] { return inflight_ == 0; });
}

void IoEngine::requeue(Request& r) {
  r.op.kind = r.kind;
  r.op.buf = r.start + r.done;
  r.op.offset = r.start_offset + r.done;
  r.op.len = r.total - r.done;
  backend_->queue(&r.op);
  ++inflight_;
  unsubmitted_ = true;
}

void IoEngine::finish(Request& r, const std::string& error) {
  Group& g = *r.group;
  if (!error.empty() && g.error.empty()) {
    const bool write = r.kind == IoKind::Write;
    g.error = std::string(write ? "write of " : "read of ") + std::to_string(r.total) + " bytes at offset " +
              std::to_string(r.start_offset) + (write ? " to " : " from ") + g.path + " failed" +
              (r.done ? " after " + std::to_string(r.done) + " bytes" : std::string()) + ": " + error;
  }
  --g.pending;
  if (r.kind == IoKind::Write) free_.push_back(static_cast<int>(&r - requests_.data()));
}

void IoEngine::process(const std::vector<IoCompletion>& batch) {
  for (const IoCompletion& c : batch) {
    Request& r = *static_cast<Request*>(c.op->user);
    --inflight_;
    const uint32_t remaining = r.total - r.done;
    if ((c.res == -EINTR || c.res == -EAGAIN) && r.retries < kMaxRetries) {
      ++r.retries;
      requeue(r);
    } else if (c.res < 0) {
      finish(r, std::strerror(static_cast<int>(-c.res)));
    } else if (c.res == 0 && remaining > 0) {
      finish(r, r.kind == IoKind::Read ? "unexpected end of file" : "the device accepted no bytes");
    } else if (static_cast<uint64_t>(c.res) > remaining) {
      finish(r, "the kernel reported " + std::to_string(c.res) + " bytes for a " + std::to_string(remaining) +
                    "-byte transfer");
    } else {
      r.done += static_cast<uint32_t>(c.res);
      if (r.done < r.total) requeue(r);  // a short transfer: the remainder goes again
      else finish(r, {});
    }
  }
  if (unsubmitted_) {
    backend_->submit();
    unsubmitted_ = false;
  }
}

const char* to_string(IoPath p) {
  switch (p) {
    case IoPath::Auto: return "auto";
    case IoPath::Uring: return "uring";
    case IoPath::Posix: return "posix";
  }
  return "?";
}

IoPath parse_io_path(const std::string& s) {
  if (s == "auto") return IoPath::Auto;
  if (s == "uring") return IoPath::Uring;
  if (s == "posix") return IoPath::Posix;
  throw InputError("--io: expected auto, uring or posix, got '" + s + "'");
}

std::unique_ptr<IoBackend> select_io_backend(IoPath want, unsigned entries, std::string* fallback_reason,
                                             const UringFactory& make_uring) {
  if (want == IoPath::Posix) return make_posix_backend();
  std::string why;
  if (auto b = make_uring(entries, &why)) return b;
  if (want == IoPath::Uring) throw InputError("--io uring: io_uring is unavailable here (" + why + ")");
  if (fallback_reason) *fallback_reason = why;
  return make_posix_backend();
}

}  // namespace streamq
