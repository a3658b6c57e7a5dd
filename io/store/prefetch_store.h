// An ActivationStore decorator that moves the inner store's work off the
// compute thread: read-ahead of chunks the job will want next and
// write-behind of chunks it has produced, on one I/O thread of its own, with
// the buffers' bytes held in a MemoryBudget.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "io/store/activation_store.h"
#include "io/store/background_io_options.h"
#include "scheduler/memory_budget.h"
#include "scheduler/trace.h"

namespace streamq {

// depth, chunk_bytes, trace: as in BackgroundIoOptions. A null budget is an
// unlimited budget of the store's own (see budget()).
struct PrefetchOptions : BackgroundIoOptions {
  // A background failure stays: every later call rethrows it, not just the
  // next (a store whose lost write must block every later checkpoint).
  bool keep_failure = false;
};

// Every chunk a get() returns is byte-for-byte what the inner store would
// return had every call been made synchronously in the caller's order
// (read-your-writes included): timing changes only when the bytes move.
// A failure of background work is rethrown, as InternalError (InputError
// when the inner store threw one) naming the direction, block, flow and
// chunk, by the next call of any method below; it is reported once (every
// time with keep_failure).
// The public methods are for one caller thread (the job's), as the inner
// stores are; only the I/O thread runs beside it. The inner store is only
// ever called by one thread at a time, so any ActivationStore works.
class PrefetchStore final : public ActivationStore {
 public:
  PrefetchStore(std::unique_ptr<ActivationStore> inner, PrefetchOptions opts);
  // Abandons queued work (call flush() first to keep the puts) and joins
  // the I/O thread.
  ~PrefetchStore() override;
  PrefetchStore(const PrefetchStore&) = delete;
  PrefetchStore& operator=(const PrefetchStore&) = delete;

  // Starts reading the chunk in the background. A hint: returns false (and
  // does nothing) when depth read-aheads are already out, the buffer does not
  // fit the budget, the chunk is already read ahead, or its put is still
  // queued (get() then serves the put's bytes).
  bool prefetch(int64_t block, Flow flow, int64_t chunk) override;
  // Copies the data and queues the inner put; returns at once unless depth
  // write-behinds are out or the budget is full, then waits for one to end.
  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override;
  // The queued put's bytes, else the read-ahead's (waiting for it if it is
  // being read), else a direct read on the calling thread.
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override;
  void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) override;
  // Waits for block's queued puts, forgets its read-aheads, drops it inside.
  void drop(int64_t block) override;
  // The inner store's bytes plus the write-behind buffers'.
  uint64_t bytes_held() const override;
  // Waits for every queued put, rethrows the first failure, then flushes the
  // inner store (durable on disk).
  void flush() override;
  // The inner store's adopt (nothing of `block` may be queued yet).
  void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) override;
  // The inner store's: the queued puts are not on disk yet.
  StoreStats stats(int64_t block = -1) const override;
  // Rethrows a background failure now, as every call above does first (for a
  // caller that serves some reads elsewhere, io/store/mirrored_store.h).
  void check();

  const MemoryBudget& budget() const { return *budget_; }
  // Counters for tests and the report: read-aheads get() used, and gets
  // that had to read directly.
  int64_t prefetch_hits() const;
  int64_t direct_reads() const;

 private:
  using Key = std::tuple<int64_t, int, int64_t>;  // block, flow, chunk
  struct Task;

  void run_io_thread();
  void run_task(Task& t);
  // Rethrows (and clears) the first background failure. Caller holds mu_.
  void throw_failure_locked();
  // Cancels or orphans a read-ahead of key. Caller holds mu_.
  void forget_read_locked(const Key& key);
  // get and get_into: Out is std::vector<float>* or std::span<float>.
  template <class Out>
  void serve(int64_t block, Flow flow, int64_t chunk, Out out);
  void put_through(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel);

  std::unique_ptr<ActivationStore> inner_;
  const PrefetchOptions opts_;
  MemoryBudget own_budget_;
  MemoryBudget* budget_;

  mutable std::mutex inner_mu_;  // one inner call at a time
  mutable std::mutex mu_;        // everything below
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> queue_;      // the I/O thread's work, in order
  std::map<Key, std::shared_ptr<Task>> reads_;   // read-aheads out: queued, reading or ready
  std::map<Key, std::shared_ptr<Task>> writes_;  // the latest queued put of each key
  std::map<int64_t, int> writes_per_block_;      // queued puts per block (superseded ones too)
  std::map<Key, uint64_t> sizes_;                // bytes of each chunk put through this store
  int writes_out_ = 0;
  uint64_t write_bytes_ = 0;
  std::exception_ptr failure_;
  int64_t hits_ = 0, direct_ = 0;
  bool stop_ = false;
  std::thread io_thread_;
};

}  // namespace streamq
