// Read-ahead and write-behind over any ActivationStore on one I/O thread.
//
// Why one std::thread and not a TBB task: the compute thread waits inside TBB
// parallel_for loops, and a waiting TBB thread may pick up any task of its
// arena, so a long read queued as a task could run inside the compute's
// wait and stall it. A thread of our own only joins the arena when the inner
// store itself goes parallel (the compressed store's codec pipeline), where
// TBB's workers help it as they help the compute.
#include "io/store/prefetch_store.h"

#include <algorithm>
#include <type_traits>
#include <string>
#include <utility>

#include "src/core/error.h"
#include "io/store/compressed_store.h"

namespace streamq {

struct PrefetchStore::Task {
  bool is_read = false;
  Key key;
  std::vector<float> data;
  Reservation reservation;
  Reservation extra;  // what a read-ahead needed beyond its guessed size
  bool started = false, done = false;
  bool orphaned = false;  // a read-ahead nobody will take (put over, dropped)
  bool failed = false;
};

namespace {

std::string describe(bool is_read, int64_t block, int flow, int64_t chunk) {
  return std::string("prefetch store: ") + (is_read ? "read-ahead" : "write-behind") + " of block " +
         std::to_string(block) + ", flow " + to_string(static_cast<Flow>(flow)) + ", chunk " + std::to_string(chunk);
}

}  // namespace

PrefetchStore::PrefetchStore(std::unique_ptr<ActivationStore> inner, PrefetchOptions opts)
    : inner_(std::move(inner)), opts_(opts), budget_(opts.budget ? opts.budget : &own_budget_) {
  if (!inner_) throw InternalError("prefetch store: no inner store");
  if (opts_.depth < 0) throw InternalError("prefetch store: negative depth " + std::to_string(opts_.depth));
  if (opts_.depth > 0) io_thread_ = std::thread([this] { run_io_thread(); });
}

PrefetchStore::~PrefetchStore() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (io_thread_.joinable()) io_thread_.join();
}

void PrefetchStore::run_io_thread() {
  if (opts_.trace) opts_.trace->name_thread("activation io");
  for (;;) {
    std::shared_ptr<Task> t;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      t = std::move(queue_.front());
      queue_.pop_front();
      t->started = true;
    }
    run_task(*t);
    cv_.notify_all();
  }
}

void PrefetchStore::run_task(Task& t) {
  const auto [block, flow, chunk] = t.key;
  std::exception_ptr error;
  {
    TraceSpan span(opts_.trace, t.is_read ? "read-ahead" : "write-behind",
                   t.is_read ? trace_cat::kRead : trace_cat::kWrite);
    span.arg("block", block).arg("flow", to_string(static_cast<Flow>(flow))).arg("chunk", chunk);
    try {
      std::lock_guard inner_lk(inner_mu_);
      if (t.is_read) inner_->get(block, static_cast<Flow>(flow), chunk, &t.data);
      else inner_->put(block, static_cast<Flow>(flow), chunk, t.data.data(), static_cast<int64_t>(t.data.size()));
    } catch (...) {
      error = std::current_exception();
    }
    span.arg("bytes", static_cast<int64_t>(t.data.size() * sizeof(float)));
  }
  std::lock_guard lk(mu_);
  if (error) {
    t.failed = true;
    // A read-ahead nobody will take failed harmlessly; anything else is
    // reported by the next call.
    if (!failure_ && !(t.is_read && t.orphaned)) {
      const std::string msg = describe(t.is_read, block, flow, chunk) + " failed: ";
      try {
        std::rethrow_exception(error);
      } catch (const InputError& e) {
        failure_ = std::make_exception_ptr(InputError(msg + e.what()));
      } catch (const std::exception& e) {
        failure_ = std::make_exception_ptr(InternalError(msg + e.what()));
      } catch (...) {
        failure_ = std::make_exception_ptr(InternalError(msg + "unknown exception"));
      }
    }
  } else if (t.is_read && !t.orphaned) {
    // A chunk larger than reserved (its size was a guess) keeps its bytes only
    // if the budget takes the rest; else it is let go and get() reads directly.
    const uint64_t bytes = t.data.size() * sizeof(float);
    if (bytes > t.reservation.bytes() && !budget_->try_reserve(bytes - t.reservation.bytes(), &t.extra))
      t.orphaned = true;
  }
  if (!t.is_read) {
    --writes_out_;
    write_bytes_ -= t.reservation.bytes();
    if (--writes_per_block_[block] == 0) writes_per_block_.erase(block);
    auto it = writes_.find(t.key);
    if (it != writes_.end() && it->second.get() == &t) writes_.erase(it);
  }
  if (!t.is_read || t.orphaned || t.failed) {
    t.data = {};
    t.reservation.release();
    t.extra.release();
  }
  t.done = true;
}

void PrefetchStore::throw_failure_locked() {
  if (!failure_) return;
  std::exception_ptr e = opts_.keep_failure ? failure_ : std::exchange(failure_, nullptr);
  std::rethrow_exception(e);
}

void PrefetchStore::forget_read_locked(const Key& key) {
  auto it = reads_.find(key);
  if (it == reads_.end()) return;
  std::shared_ptr<Task> t = std::move(it->second);
  reads_.erase(it);
  if (!t->started) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), t));
    t->reservation.release();
  } else if (!t->done) {
    t->orphaned = true;  // the I/O thread lets its bytes go when it ends
  } else {
    t->data = {};
    t->reservation.release();
    t->extra.release();
  }
}

bool PrefetchStore::prefetch(int64_t block, Flow flow, int64_t chunk) {
  std::unique_lock lk(mu_);
  throw_failure_locked();
  const Key key{block, static_cast<int>(flow), chunk};
  if (opts_.depth == 0 || reads_.count(key) || writes_.count(key)) return false;
  if (static_cast<int>(reads_.size()) >= opts_.depth) return false;
  auto size = sizes_.find(key);
  uint64_t bytes = size != sizes_.end() ? size->second : opts_.chunk_bytes;
  if (bytes == 0 && !budget_->unlimited()) return false;  // unknown size under a limit: cannot bound it
  auto t = std::make_shared<Task>();
  if (!budget_->try_reserve(bytes, &t->reservation)) return false;
  t->is_read = true;
  t->key = key;
  reads_[key] = t;
  queue_.push_back(std::move(t));
  lk.unlock();
  cv_.notify_all();
  return true;
}

void PrefetchStore::put_through(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) {
  std::lock_guard inner_lk(inner_mu_);
  inner_->put(block, flow, chunk, data, numel);
}

void PrefetchStore::put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) {
  const Key key{block, static_cast<int>(flow), chunk};
  const uint64_t bytes = static_cast<uint64_t>(std::max<int64_t>(numel, 0)) * sizeof(float);
  std::unique_lock lk(mu_);
  throw_failure_locked();
  forget_read_locked(key);  // its bytes are about to be stale
  sizes_[key] = bytes;
  Reservation reservation;
  bool through = opts_.depth == 0;
  while (!through) {
    if (writes_out_ < opts_.depth && budget_->try_reserve(bytes, &reservation)) break;
    if (writes_out_ == 0) through = true;  // nothing to wait for and no room: write through
    else cv_.wait(lk);
    throw_failure_locked();
  }
  if (through) {
    // Write through. No put is queued (depth 0, or all ended above), so no
    // older put of this key can land after this one.
    lk.unlock();
    put_through(block, flow, chunk, data, numel);
    return;
  }
  auto t = std::make_shared<Task>();
  t->key = key;
  t->data.assign(data, data + numel);
  t->reservation = std::move(reservation);
  ++writes_out_;
  write_bytes_ += bytes;
  ++writes_per_block_[block];
  writes_[key] = t;
  queue_.push_back(std::move(t));
  lk.unlock();
  cv_.notify_all();
}

void PrefetchStore::get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) {
  serve(block, flow, chunk, out);
}

void PrefetchStore::get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) {
  serve(block, flow, chunk, out);
}

template <class Out>
void PrefetchStore::serve(int64_t block, Flow flow, int64_t chunk, Out out) {
  constexpr bool into_span = std::is_same_v<Out, std::span<float>>;
  // A held vector into out: swapped into a vector when it may be taken, copied into a span.
  auto give = [&](std::vector<float>& held, bool may_take) {
    if constexpr (into_span) {
      copy_chunk_into(block, flow, chunk, held, out);
    } else if (may_take) {
      out->swap(held);
    } else {
      *out = held;
    }
  };
  const Key key{block, static_cast<int>(flow), chunk};
  {
    std::unique_lock lk(mu_);
    throw_failure_locked();
    if (auto w = writes_.find(key); w != writes_.end()) {
      give(w->second->data, false);  // read-your-writes: the put is still queued or writing
      ++hits_;
      return;
    }
    if (auto r = reads_.find(key); r != reads_.end()) {
      std::shared_ptr<Task> t = r->second;
      if (t->started) {
        cv_.wait(lk, [&] { return t->done; });
        reads_.erase(key);
        throw_failure_locked();
        if (!t->failed && !t->orphaned) {
          give(t->data, true);
          t->reservation.release();
          t->extra.release();
          ++hits_;
          return;
        }
      } else {
        forget_read_locked(key);  // still queued: reading here is no slower
      }
    }
    ++direct_;
  }
  std::lock_guard inner_lk(inner_mu_);
  if constexpr (into_span) inner_->get_into(block, flow, chunk, out);
  else inner_->get(block, flow, chunk, out);
}

void PrefetchStore::drop(int64_t block) {
  {
    std::unique_lock lk(mu_);
    throw_failure_locked();
    std::vector<Key> gone;
    for (const auto& [key, t] : reads_)
      if (std::get<0>(key) == block) gone.push_back(key);
    for (const Key& key : gone) forget_read_locked(key);
    cv_.wait(lk, [&] { return !writes_per_block_.count(block); });
    for (auto it = sizes_.begin(); it != sizes_.end();)
      it = std::get<0>(it->first) == block ? sizes_.erase(it) : std::next(it);
    throw_failure_locked();
  }
  std::lock_guard inner_lk(inner_mu_);
  inner_->drop(block);
}

uint64_t PrefetchStore::bytes_held() const {
  uint64_t queued;
  {
    std::lock_guard lk(mu_);
    queued = write_bytes_;
  }
  std::lock_guard inner_lk(inner_mu_);
  return inner_->bytes_held() + queued;
}

void PrefetchStore::flush() {
  {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return writes_out_ == 0; });
    throw_failure_locked();
  }
  std::lock_guard inner_lk(inner_mu_);
  inner_->flush();
}

void PrefetchStore::adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) {
  {
    std::lock_guard lk(mu_);
    throw_failure_locked();
  }
  // Nothing of `block` is queued yet (adopt comes before its puts), so the
  // inner store is called directly, past the I/O thread.
  std::lock_guard inner_lk(inner_mu_);
  inner_->adopt(block, nchunks, flows);
}

StoreStats PrefetchStore::stats(int64_t block) const {
  std::lock_guard inner_lk(inner_mu_);
  return inner_->stats(block);
}

void PrefetchStore::check() {
  std::lock_guard lk(mu_);
  throw_failure_locked();
}

int64_t PrefetchStore::prefetch_hits() const {
  std::lock_guard lk(mu_);
  return hits_;
}

int64_t PrefetchStore::direct_reads() const {
  std::lock_guard lk(mu_);
  return direct_;
}

}  // namespace streamq
