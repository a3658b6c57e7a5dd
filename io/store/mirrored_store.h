// The activation store of a resumable job whose activations fit in memory:
// reads are served from memory, and every put is also written, behind the
// caller's back, to the durable compressed store in the workdir, so each
// boundary a manifest names can be resumed from disk.
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "io/store/compressed_store.h"
#include "io/store/background_io_options.h"
#include "scheduler/memory_budget.h"
#include "io/store/prefetch_store.h"
#include "scheduler/trace.h"

namespace streamq {

// depth: writes to disk in flight, whose buffers are the writer's queue (0:
// every put writes through before it returns). budget: where the queued
// writes' (and a resumed boundary's read-aheads') buffers are reserved, null:
// unlimited; a put that does not fit waits for earlier writes, then writes
// through. The memory copies are not reserved here: the memory plan counts
// them (Placement::MemoryMirrored). chunk_bytes sizes the read-aheads; trace
// takes the writer's spans.
struct MirrorOptions : BackgroundIoOptions {};

// Every get returns exactly the floats put (the disk store must be lossless,
// F32, for a resumed job to give the same bytes). Reads of a chunk not in
// memory (the boundary a resumed job adopted) go to disk. After a failure of
// the writing side (ENOSPC, EIO on the writer thread, a failed fsync or
// adopt) the store stays failed: every later call rethrows it, since a
// boundary that lost a write can never be named durable. A failed read from
// disk is reported by its get alone. Calls may come from several threads;
// the disk side serializes them.
class MirroredStore final : public ActivationStore {
 public:
  MirroredStore(std::unique_ptr<CompressedStore> disk, MirrorOptions opts);
  // Abandons queued writes (flush() first to keep them).
  ~MirroredStore() override;
  MirroredStore(const MirroredStore&) = delete;
  MirroredStore& operator=(const MirroredStore&) = delete;

  // Keeps a copy in memory and queues the write to disk; waits only when
  // `depth` writes are already out or the budget is full.
  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override;
  // From memory, else from disk.
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override;
  void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) override;
  // Frees the memory copies and the files of `block` (after its queued writes).
  void drop(int64_t block) override;
  // Bytes of the memory copies (the queued writes' buffers are in the budget).
  uint64_t bytes_held() const override;

  // Returns once every put so far is durable on disk (written and fsynced);
  // rethrows the first failure, naming block, flow, chunk and file.
  void flush() override;
  // A resumed job's boundary: its chunk files, left by an earlier process,
  // are taken over (CompressedStore::adopt) and read from disk. Call before
  // any put of that block.
  void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) override;
  // A read-ahead hint (ReadAheadHint): true at once for a chunk in memory,
  // else PrefetchStore::prefetch of the disk copy.
  bool prefetch(int64_t block, Flow flow, int64_t chunk) override;
  // The disk copy's (the queued writes are not on disk yet).
  StoreStats stats(int64_t block = -1) const override;

  CompressedStore& disk() { return *disk_; }

 private:
  // get and get_into: Out is std::vector<float>* or std::span<float>.
  template <class Out>
  void serve(int64_t block, Flow flow, int64_t chunk, Out out);
  using Key = std::tuple<int64_t, int, int64_t>;  // block, flow, chunk

  // Runs f on the disk side under disk_mu_ after rethrowing a lasting
  // failure; with `lasting`, an exception of f becomes one.
  template <class F>
  auto on_disk(F&& f, bool lasting = true) -> decltype(f());
  void throw_if_failed() const;
  void fail(std::exception_ptr e);  // keeps the first failure

  CompressedStore* disk_;                  // owned by writer_
  std::unique_ptr<PrefetchStore> writer_;  // the I/O thread and its queue

  mutable std::mutex mem_mu_;  // memory_, memory_bytes_
  std::map<Key, std::vector<float>> memory_;
  uint64_t memory_bytes_ = 0;

  std::mutex disk_mu_;          // writer_ calls: one caller thread at a time, as it requires
  mutable std::mutex fail_mu_;  // failure_
  std::exception_ptr failure_;
};

}  // namespace streamq
