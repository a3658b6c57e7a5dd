// MirroredStore: a map of memory copies in front of PrefetchStore's
// write-behind into the compressed store. The write-behind is reused as is:
// its queue is already bounded by depth and by the MemoryBudget, its one I/O
// thread already keeps long writes out of the compute's TBB arena, and its
// flush already ends with the compressed store's fsyncs.
#include "io/store/mirrored_store.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "src/core/error.h"

namespace streamq {

MirroredStore::MirroredStore(std::unique_ptr<CompressedStore> disk, MirrorOptions opts) : disk_(disk.get()) {
  if (!disk) throw InternalError("mirrored store: no disk store");
  PrefetchOptions po;
  po.depth = std::max(opts.depth, 0);
  po.budget = opts.budget;
  po.chunk_bytes = opts.chunk_bytes;
  po.trace = opts.trace;
  po.keep_failure = true;  // a lost write fails every later call, whichever consumes it first
  writer_ = std::make_unique<PrefetchStore>(std::move(disk), po);
}

MirroredStore::~MirroredStore() = default;

template <class F>
auto MirroredStore::on_disk(F&& f, bool lasting) -> decltype(f()) {
  std::lock_guard lk(disk_mu_);
  throw_if_failed();
  try {
    return f();
  } catch (...) {
    if (lasting) fail(std::current_exception());
    throw;
  }
}

void MirroredStore::throw_if_failed() const {
  std::lock_guard lk(fail_mu_);
  if (failure_) std::rethrow_exception(failure_);
}

void MirroredStore::fail(std::exception_ptr e) {
  std::lock_guard lk(fail_mu_);
  if (!failure_) failure_ = std::move(e);
}

void MirroredStore::put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) {
  if (numel < 0) throw InternalError("mirrored store: negative size " + std::to_string(numel));
  // Disk first: an earlier write's failure is reported before any work.
  on_disk([&] { writer_->put(block, flow, chunk, data, numel); });
  std::vector<float> copy(data, data + numel);
  std::lock_guard lk(mem_mu_);
  auto& slot = memory_[{block, static_cast<int>(flow), chunk}];
  memory_bytes_ -= slot.size() * sizeof(float);
  slot = std::move(copy);
  memory_bytes_ += slot.size() * sizeof(float);
}

void MirroredStore::get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) {
  serve(block, flow, chunk, out);
}

void MirroredStore::get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) {
  serve(block, flow, chunk, out);
}

template <class Out>
void MirroredStore::serve(int64_t block, Flow flow, int64_t chunk, Out out) {
  // A writer failure is reported by the next call, even one memory serves.
  // check() only takes PrefetchStore's own lock, so a put waiting for room
  // under disk_mu_ does not hold up reads from memory.
  throw_if_failed();
  try {
    writer_->check();
  } catch (...) {
    fail(std::current_exception());
    throw;
  }
  {
    std::lock_guard lk(mem_mu_);
    auto it = memory_.find({block, static_cast<int>(flow), chunk});
    if (it != memory_.end()) {
      if constexpr (std::is_same_v<Out, std::span<float>>) {
        copy_chunk_into(block, flow, chunk, it->second, out);
      } else {
        *out = it->second;
      }
      return;
    }
  }
  // A read that fails (absent, damaged) says so and leaves the writes be; a
  // writer failure it meets stays in the writer (keep_failure).
  on_disk([&] {
    if constexpr (std::is_same_v<Out, std::span<float>>) writer_->get_into(block, flow, chunk, out);
    else writer_->get(block, flow, chunk, out);
  }, false);
}

void MirroredStore::drop(int64_t block) {
  {
    std::lock_guard lk(mem_mu_);
    for (auto it = memory_.begin(); it != memory_.end();) {
      if (std::get<0>(it->first) == block) {
        memory_bytes_ -= it->second.size() * sizeof(float);
        it = memory_.erase(it);
      } else {
        ++it;
      }
    }
  }
  on_disk([&] { writer_->drop(block); });
}

uint64_t MirroredStore::bytes_held() const {
  std::lock_guard lk(mem_mu_);
  return memory_bytes_;
}

void MirroredStore::flush() {
  on_disk([&] { writer_->flush(); });
}

void MirroredStore::adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) {
  // Nothing of `block` is queued (no put yet), so the compressed store is
  // called directly, past the I/O thread, under the same lock as every
  // other disk call.
  on_disk([&] { disk_->adopt(block, nchunks, flows); });
}

StoreStats MirroredStore::stats(int64_t block) const {
  // Counters only: no lasting failure to check, and the compressed store
  // locks its own table.
  return disk_->stats(block);
}

bool MirroredStore::prefetch(int64_t block, Flow flow, int64_t chunk) {
  {
    std::lock_guard lk(mem_mu_);
    if (memory_.count({block, static_cast<int>(flow), chunk})) return true;  // nothing to read
  }
  return on_disk([&] { return writer_->prefetch(block, flow, chunk); }, false);
}

}  // namespace streamq
