// The emulated device's memory: its own address space (a reserved virtual
// range no host allocation can come from), a hard capacity, and a map of
// every allocation ever made, so any pointer an op receives can be checked:
// inside a live allocation, with the extent the op touches. Freed blocks are
// poisoned: their pages are dropped and made inaccessible, and their
// addresses are never handed out again (the range is large enough for any
// run this machine can do), so a use after free is always named as one.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace streamq {

class EmulatedDeviceMemory {
 public:
  // `capacity`: bytes the device holds at once (its "physical" memory).
  explicit EmulatedDeviceMemory(uint64_t capacity);
  ~EmulatedDeviceMemory();
  EmulatedDeviceMemory(const EmulatedDeviceMemory&) = delete;
  EmulatedDeviceMemory& operator=(const EmulatedDeviceMemory&) = delete;

  // A new block of `bytes`, or nullptr when the device has no room (the
  // caller's MemoryLedger turns that into a BudgetError).
  void* allocate(uint64_t bytes, const std::string& what);
  // Frees a block from allocate() and poisons it. Freeing anything else is a
  // bug in streamq: InternalError.
  void free(void* ptr);

  // Throws InternalError "emulated device: <op>: argument <arg> ..." unless
  // [ptr, ptr + bytes) lies inside one live allocation. bytes == 0 checks
  // nothing (an empty extent touches no memory).
  void check(const void* ptr, uint64_t bytes, const char* op, const char* arg) const;
  // The allocation number of the live block holding ptr (checked before:
  // 0 when there is none) and its name, for the stream-order checks.
  uint64_t block_id(const void* ptr) const;
  std::string block_name(uint64_t id) const;
  // True when ptr lies in the device's address range (live or not).
  bool in_address_space(const void* ptr) const;

  uint64_t capacity() const { return capacity_; }
  uint64_t in_use() const;
  uint64_t high_water() const;

 private:
  struct Block {
    uint64_t bytes = 0;
    uint64_t id = 0;  // allocation number, for messages
    bool live = true;
    std::string what;  // what the allocation is for (the ledger's name of it)
  };

  const uint64_t capacity_;
  char* base_ = nullptr;  // the reserved range
  uint64_t reserved_ = 0;
  mutable std::mutex mu_;
  uint64_t next_ = 0;  // offset of the next block (bump allocation, never reused)
  uint64_t in_use_ = 0, high_water_ = 0, allocations_ = 0;
  std::map<uintptr_t, Block> blocks_;  // start address -> block
};

}  // namespace streamq
