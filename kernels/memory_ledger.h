// The budget of every backend's memory pool: a byte limit, the bytes in use,
// the high-water mark and the error that names what did not fit. The
// allocator is a callback, so one ledger serves every backend: the CPU
// backend plugs in aligned host allocation (kernels/cpu/cpu_backend.cpp),
// kernels/cuda/device_pool.h cudaMalloc/cudaFree; tests/kernels/
// test_memory_ledger.cpp checks the arithmetic with a fake allocator.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "src/core/error.h"  // BudgetError

namespace streamq {

// "1.50 GiB (1610612736 bytes)": exact bytes too, because a limit that is off
// by a few hundred bytes reads the same in GiB.
inline std::string memory_size_text(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.2f %s (%llu bytes)", v, units[u],
                static_cast<unsigned long long>(bytes));
  return buf;
}

// Thread-safe. Every byte handed out is counted from the reservation until
// free(), so the high-water mark is the true peak of what this pool held.
class MemoryLedger {
 public:
  // Returns the new block, or nullptr when the device itself has no room (the
  // ledger then reports it with the same context as a limit refusal).
  using AllocateFn = std::function<void*(uint64_t bytes, const std::string& what)>;
  using FreeFn = std::function<void(void* ptr)>;

  // `flag` is what the error tells the user to change; `name` is the pool
  // errors are reported for.
  MemoryLedger(uint64_t limit, AllocateFn allocate, FreeFn free, std::string flag = "--gpu-mem-limit",
               std::string name = "device memory pool")
      : limit_(limit), allocate_(std::move(allocate)), free_(std::move(free)),
        flag_(std::move(flag)), name_(std::move(name)) {}
  MemoryLedger(const MemoryLedger&) = delete;
  MemoryLedger& operator=(const MemoryLedger&) = delete;

  // A block of `bytes` for `what` (e.g. "cuSOLVER workspace for a 4096x4096
  // potrf"). Zero bytes gives nullptr without touching the allocator. Throws
  // BudgetError when in_use() + bytes would pass the limit, or when the
  // allocator finds the device full below the limit.
  void* allocate(uint64_t bytes, const std::string& what) {
    if (bytes == 0) return nullptr;
    uint64_t in_use_before = 0;
    {
      std::lock_guard lk(mu_);
      in_use_before = in_use_;
      if (bytes > limit_ - in_use_) {  // in_use_ <= limit_ always: no overflow
        throw BudgetError(name_ + ": " + what + " needs " +
                          memory_size_text(bytes) + " but " +
                          memory_size_text(in_use_) + " of the " +
                          memory_size_text(limit_) + " limit is in use (only " +
                          memory_size_text(limit_ - in_use_) + " allowed); raise " +
                          flag_ + " or use smaller chunks");
      }
      // Reserved before the (slow, lock-free) allocation so two threads
      // cannot both pass the check with the same free bytes.
      in_use_ += bytes;
      if (in_use_ > high_water_) high_water_ = in_use_;
    }
    void* ptr = nullptr;
    try {
      ptr = allocate_(bytes, what);
    } catch (...) {
      give_back(bytes);
      throw;
    }
    if (ptr == nullptr) {
      give_back(bytes);
      throw BudgetError(name_ + ": the memory behind it has no room for " + what + " (" +
                        memory_size_text(bytes) + ") although this pool holds only " +
                        memory_size_text(in_use_before) + " of its " +
                        memory_size_text(limit_) +
                        " limit: other processes use that memory; lower " + flag_ +
                        " or free memory");
    }
    return ptr;
  }

  // Returns a block from allocate(); `bytes` is the size it was allocated with.
  void free(void* ptr, uint64_t bytes) noexcept {
    if (ptr == nullptr) return;
    free_(ptr);
    give_back(bytes);
  }

  uint64_t limit() const { return limit_; }
  const std::string& name() const { return name_; }
  uint64_t in_use() const {
    std::lock_guard lk(mu_);
    return in_use_;
  }
  // The most bytes ever held at once.
  uint64_t high_water() const {
    std::lock_guard lk(mu_);
    return high_water_;
  }

 private:
  void give_back(uint64_t bytes) noexcept {
    std::lock_guard lk(mu_);
    in_use_ -= bytes;
  }

  const uint64_t limit_;
  const AllocateFn allocate_;
  const FreeFn free_;
  const std::string flag_;
  const std::string name_;
  mutable std::mutex mu_;
  uint64_t in_use_ = 0;
  uint64_t high_water_ = 0;
};

// count elements of T from a MemoryLedger, returned on destruction.
// Move-only; a default-constructed one holds nothing. The ledger must outlive it.
template <typename T>
class PoolBuffer {
 public:
  PoolBuffer() = default;
  PoolBuffer(MemoryLedger& ledger, size_t count, const std::string& what)
      : ledger_(&ledger), count_(count) {
    if (count > UINT64_MAX / sizeof(T)) {
      throw BudgetError(ledger.name() + ": " + what + " asks for " + std::to_string(count) +
                        " elements of " + std::to_string(sizeof(T)) +
                        " bytes, more than 2^64 bytes");
    }
    ptr_ = static_cast<T*>(ledger.allocate(bytes(), what));
  }
  ~PoolBuffer() { reset(); }
  PoolBuffer(PoolBuffer&& o) noexcept
      : ledger_(std::exchange(o.ledger_, nullptr)), ptr_(std::exchange(o.ptr_, nullptr)),
        count_(std::exchange(o.count_, 0)) {}
  PoolBuffer& operator=(PoolBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ledger_ = std::exchange(o.ledger_, nullptr);
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  PoolBuffer(const PoolBuffer&) = delete;
  PoolBuffer& operator=(const PoolBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  uint64_t bytes() const { return static_cast<uint64_t>(count_) * sizeof(T); }

  void reset() noexcept {
    if (ledger_ != nullptr) ledger_->free(ptr_, bytes());
    ledger_ = nullptr;
    ptr_ = nullptr;
    count_ = 0;
  }

 private:
  MemoryLedger* ledger_ = nullptr;
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace streamq
