// EmulatedDeviceMemory: one reserved range, bump allocation with a guard page
// after every block, pages committed on allocation and dropped on free.
#include "kernels/emulated/device_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

#include "src/core/error.h"

namespace streamq {
namespace {

constexpr uint64_t kPage = 4096;
// Virtual address space only (PROT_NONE, MAP_NORESERVE): nothing is committed
// until a block is allocated. Tried from large to small, because some
// machines limit a process's address space.
constexpr uint64_t kReserveTries[] = {uint64_t{4} << 40, uint64_t{1} << 40, uint64_t{256} << 30,
                                      uint64_t{64} << 30};

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

}  // namespace

EmulatedDeviceMemory::EmulatedDeviceMemory(uint64_t capacity) : capacity_(capacity) {
  for (uint64_t size : kReserveTries) {
    void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      base_ = static_cast<char*>(p);
      reserved_ = size;
      break;
    }
  }
  if (base_ == nullptr) throw InternalError("emulated device: cannot reserve an address range for its memory");
}

EmulatedDeviceMemory::~EmulatedDeviceMemory() { munmap(base_, reserved_); }

void* EmulatedDeviceMemory::allocate(uint64_t bytes, const std::string& what) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > capacity_ - in_use_) return nullptr;  // in_use_ <= capacity_ always
  const uint64_t span = round_up(bytes, kPage);
  // One inaccessible guard page after each block: a host loop that runs past
  // the end faults instead of reading the next block.
  if (next_ + span + kPage > reserved_) {
    throw InternalError("emulated device: its " + std::to_string(reserved_ >> 30) +
                        " GiB address range is used up (addresses are never reused, to catch uses after free)");
  }
  char* p = base_ + next_;
  if (mprotect(p, span, PROT_READ | PROT_WRITE) != 0) return nullptr;  // the host is out of memory
  next_ += span + kPage;
  in_use_ += bytes;
  high_water_ = std::max(high_water_, in_use_);
  blocks_[reinterpret_cast<uintptr_t>(p)] = Block{bytes, ++allocations_, true, what};
  return p;
}

void EmulatedDeviceMemory::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == blocks_.end() || !it->second.live) {
    throw InternalError("emulated device: free of " + hex(ptr) +
                        (it == blocks_.end() ? ", which no allocation returned" : ", already freed"));
  }
  const uint64_t span = round_up(it->second.bytes, kPage);
  // Poison: the pages go back to the host and any access now faults.
  madvise(ptr, span, MADV_DONTNEED);
  mprotect(ptr, span, PROT_NONE);
  it->second.live = false;
  in_use_ -= it->second.bytes;
}

bool EmulatedDeviceMemory::in_address_space(const void* ptr) const {
  const auto* c = static_cast<const char*>(ptr);
  return c >= base_ && c < base_ + reserved_;
}

void EmulatedDeviceMemory::check(const void* ptr, uint64_t bytes, const char* op, const char* arg) const {
  if (bytes == 0) return;
  const std::string who = std::string("emulated device: ") + op + ": argument " + arg + " (" + hex(ptr) + ", " +
                          std::to_string(bytes) + " bytes) ";
  if (ptr == nullptr) throw InternalError(who + "is null");
  if (!in_address_space(ptr)) {
    throw InternalError(who + "is a host pointer, not device memory: upload it first");
  }
  std::lock_guard<std::mutex> lock(mu_);
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  auto it = blocks_.upper_bound(addr);
  if (it == blocks_.begin()) throw InternalError(who + "is in no allocation");
  --it;
  const uint64_t offset = addr - it->first;
  const Block& b = it->second;
  const std::string block = "buffer #" + std::to_string(b.id) + (b.what.empty() ? "" : " '" + b.what + "'") + " (" +
                            std::to_string(b.bytes) + " bytes)";
  if (offset >= round_up(b.bytes, kPage)) throw InternalError(who + "is in no allocation");
  if (!b.live) throw InternalError(who + "lies in " + block + ", which was freed");
  if (offset >= b.bytes || bytes > b.bytes - offset) {
    throw InternalError(who + "runs " + std::to_string(offset + bytes - b.bytes) + " bytes past the end of " + block +
                        " (it starts " + std::to_string(offset) + " bytes in)");
  }
}

uint64_t EmulatedDeviceMemory::block_id(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.upper_bound(reinterpret_cast<uintptr_t>(ptr));
  if (it == blocks_.begin()) return 0;
  --it;
  return it->second.live && reinterpret_cast<uintptr_t>(ptr) - it->first < it->second.bytes ? it->second.id : 0;
}

std::string EmulatedDeviceMemory::block_name(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [start, b] : blocks_)
    if (b.id == id) return "buffer #" + std::to_string(b.id) + (b.what.empty() ? "" : " '" + b.what + "'");
  return "buffer #" + std::to_string(id);
}

uint64_t EmulatedDeviceMemory::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

uint64_t EmulatedDeviceMemory::high_water() const {
  std::lock_guard<std::mutex> lock(mu_);
  return high_water_;
}

}  // namespace streamq
