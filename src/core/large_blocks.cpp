// The large-block cache (large_blocks.h) and the global operator new/delete
// that route blocks of kLargeBlockMinBytes and more through it.
#include "src/core/large_blocks.h"

#include <sys/mman.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace streamq {
namespace {

constexpr size_t kPage = 4096;
size_t page_rounded(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

// The cache's own containers allocate with malloc: operator new would come
// back here for a large bucket array while the lock is held.
template <typename T>
struct MallocAllocator {
  using value_type = T;
  MallocAllocator() = default;
  template <typename U>
  MallocAllocator(const MallocAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (void* p = std::malloc(n * sizeof(T))) return static_cast<T*>(p);
    throw std::bad_alloc();
  }
  void deallocate(T* p, size_t) noexcept { std::free(p); }
  template <typename U>
  bool operator==(const MallocAllocator<U>&) const noexcept { return true; }
};

void* map_pages(size_t rounded) noexcept {
  void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void unmap_pages(void* p, size_t rounded) noexcept { munmap(p, rounded); }

// A block's pages: `mapped` bytes from mmap, of which the first `resident`
// are counted (touched, or about to be); the rest were dropped (madvise), so
// they cost nothing until touched again.
struct Block {
  void* p = nullptr;
  size_t mapped = 0, resident = 0;
};

class LargeBlockCache {
 public:
  void set_keep(bool keep) noexcept {
    {
      std::lock_guard lk(mu_);
      keep_ = keep;
    }
    if (!keep) release_kept();
  }

  void* allocate(size_t bytes) noexcept {
    const size_t rounded = page_rounded(bytes);
    Blocks to_unmap;
    Block b;
    {
      std::lock_guard lk(mu_);
      // The smallest kept block that holds it, if at most twice its size
      // (a bigger one is left for a bigger request).
      if (auto it = kept_.lower_bound(rounded); it != kept_.end() && it->first / 2 <= rounded) {
        b = it->second;
        kept_.erase(it);
        kept_bytes_ -= b.resident;
        make_room(rounded, to_unmap);
        if (!note_live({b.p, b.mapped, rounded})) {
          to_unmap.push_back(b);
          b.p = nullptr;
        } else {
          ++reused_;
        }
      } else {
        make_room(rounded, to_unmap);
      }
    }
    for (const Block& k : to_unmap) unmap_pages(k.p, k.mapped);
    if (b.p != nullptr) {
      // Pages past the request are dropped: the block counts (and holds)
      // only what this request touches.
      if (b.resident > rounded) madvise(static_cast<char*>(b.p) + rounded, b.resident - rounded, MADV_DONTNEED);
      return b.p;
    }
    void* p = map_pages(rounded);
    if (p == nullptr) {  // no memory: kept blocks first
      release_kept();
      p = map_pages(rounded);
      if (p == nullptr) return nullptr;
    }
    std::lock_guard lk(mu_);
    if (!note_live({p, rounded, rounded})) {
      unmap_pages(p, rounded);
      return nullptr;
    }
    ++fresh_;
    return p;
  }

  // Frees p if it is a live large block; false (nothing done) if it is not.
  bool free_if_owned(void* p) noexcept {
    Block b;
    {
      std::lock_guard lk(mu_);
      auto it = live_.find(p);
      if (it == live_.end()) return false;
      b = it->second;
      live_.erase(it);
      live_bytes_ -= b.resident;
      if (keep_) {
        try {
          kept_.emplace(b.mapped, b);  // live -> kept: live + kept unchanged, within the peak
          kept_bytes_ += b.resident;
          return true;
        } catch (...) {  // no memory for the node: unmap instead
        }
      }
    }
    unmap_pages(b.p, b.mapped);
    return true;
  }

  void release_kept() noexcept {
    Blocks to_unmap;
    {
      std::lock_guard lk(mu_);
      for (const auto& [mapped, k] : kept_) to_unmap.push_back(k);
      kept_.clear();
      kept_bytes_ = 0;
      stage_peak_ = live_bytes_;
    }
    for (const Block& k : to_unmap) unmap_pages(k.p, k.mapped);
  }

  LargeBlockCounts counts() noexcept {
    std::lock_guard lk(mu_);
    return {live_bytes_, kept_bytes_, reused_, fresh_};
  }

 private:
  using Blocks = std::vector<Block, MallocAllocator<Block>>;

  // Before `incoming` bytes become live: kept blocks to unmap (largest first:
  // fewest calls) until live + kept stays within the stage's peak of live
  // bytes, that peak counting this block.
  void make_room(size_t incoming, Blocks& to_unmap) {
    const uint64_t peak = std::max<uint64_t>(stage_peak_, live_bytes_ + incoming);
    while (!kept_.empty() && live_bytes_ + incoming + kept_bytes_ > peak) {
      auto last = std::prev(kept_.end());
      kept_bytes_ -= last->second.resident;
      try {
        to_unmap.push_back(last->second);
      } catch (...) {
        unmap_pages(last->second.p, last->second.mapped);  // under the lock, but unmapped
      }
      kept_.erase(last);
    }
  }

  bool note_live(const Block& b) noexcept {
    try {
      live_.emplace(b.p, b);
    } catch (...) {
      return false;
    }
    live_bytes_ += b.resident;
    stage_peak_ = std::max(stage_peak_, live_bytes_);
    return true;
  }

  bool keep_ = true;
  std::mutex mu_;
  std::unordered_map<void*, Block, std::hash<void*>, std::equal_to<void*>,
                     MallocAllocator<std::pair<void* const, Block>>>
      live_;
  std::multimap<size_t, Block, std::less<size_t>, MallocAllocator<std::pair<const size_t, Block>>> kept_;  // by mapped size
  uint64_t live_bytes_ = 0, kept_bytes_ = 0, stage_peak_ = 0, reused_ = 0, fresh_ = 0;
};

// Never destroyed: operator delete may run after static destructors.
LargeBlockCache& cache() {
  alignas(LargeBlockCache) static unsigned char storage[sizeof(LargeBlockCache)];
  static LargeBlockCache* c = new (storage) LargeBlockCache();
  return *c;
}

}  // namespace

void* large_block_allocate(size_t bytes) noexcept { return cache().allocate(bytes); }

bool free_if_large_block(void* p) noexcept {
  return p != nullptr && reinterpret_cast<uintptr_t>(p) % kPage == 0 && cache().free_if_owned(p);
}

void release_kept_large_blocks() noexcept { cache().release_kept(); }

void keep_freed_large_blocks(bool keep) noexcept { cache().set_keep(keep); }

LargeBlockCounts large_block_counts() noexcept { return cache().counts(); }

}  // namespace streamq

#if STREAMQ_LARGE_BLOCKS
// The replaceable global operators: libstdc++'s array, nothrow and sized
// forms call these two, so every std::vector buffer of a MiB or more is a
// large block. The aligned forms stay glibc's (they call aligned_alloc/free
// themselves and never see these blocks).
void* operator new(std::size_t bytes) {
  for (;;) {
    void* p = bytes >= streamq::kLargeBlockMinBytes ? streamq::large_block_allocate(bytes)
                                                    : std::malloc(bytes == 0 ? 1 : bytes);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void operator delete(void* p) noexcept {
  if (!streamq::free_if_large_block(p)) std::free(p);
}

void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
#endif
