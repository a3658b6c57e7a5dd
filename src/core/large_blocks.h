// Reuse of large heap blocks across chunks and linears (issue 16): a
// deliberate process-wide facility, like the allocator policy streamq's main
// sets. Every block of kLargeBlockMinBytes or more (operator new, and the CPU
// backend's pools) is pages of its own, as glibc's fixed mmap threshold made
// them; but a freed one is kept for the next request of the same size
// instead of being unmapped and faulted in again page by page. A SmolLM2
// GPTQ job touched 17 GiB of fresh pages that way (4-5 M minor faults, a
// quarter of its wall time in system time), though every chunk and every
// block asks for the same sizes again.
//
// What is kept never raises the process's footprint past a stage's own peak:
// live + kept bytes <= the most live since the last release_kept_large_blocks()
// (a fresh block that would pass it first unmaps kept ones). Each stage
// (LargeBlockStage: a chunk pass, a block, the rotated ends, the checkpoint's
// writing) releases at its start and end, so one stage's freed buffers are
// not held into the next, and the memory plan's per-stage peaks still hold.
//
// streamq's main turns keeping off where STREAMQ_KEEP_LARGE_BLOCKS=0 is in
// the environment (every large block unmapped when freed), for measurement
// (keep_freed_large_blocks). Under AddressSanitizer
// (STREAMQ_LARGE_BLOCKS 0) operator new stays the sanitizer's and the CPU
// backend allocates as before: its checks need redzones and every block freed.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#define STREAMQ_LARGE_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STREAMQ_LARGE_BLOCKS 0
#endif
#endif
#ifndef STREAMQ_LARGE_BLOCKS
#define STREAMQ_LARGE_BLOCKS 1
#endif

namespace streamq {

// glibc's mmap threshold as streamq's main fixes it (src/pipeline/
// memory_plan.h kPlanMmapThresholdBytes): smaller blocks live in glibc's heap,
// which reuses them anyway.
inline constexpr size_t kLargeBlockMinBytes = size_t{1} << 20;
// Whether operator new and the CPU backend use the cache (not under ASan).
inline constexpr bool kLargeBlocksInUse = STREAMQ_LARGE_BLOCKS != 0;

// A page-aligned block of `bytes` (>= kLargeBlockMinBytes): a kept block of
// the same page-rounded size, else fresh pages. nullptr when the system has
// no memory for it.
void* large_block_allocate(size_t bytes) noexcept;
// Frees p if large_block_allocate gave it (and it is live): true; else does
// nothing and returns false (the caller's own block: a heap one). Large blocks
// are page-aligned; a heap block rarely is, and only those are looked up.
bool free_if_large_block(void* p) noexcept;
// A stage boundary: unmaps every kept block; the bound on what is kept
// restarts from what is live now.
void release_kept_large_blocks() noexcept;

// A stage of the memory plan, as a scope: a release when it starts and one
// when it ends, so neither what the stage before kept nor this stage's freed
// intermediates are held into the next. The bound on kept blocks counts large
// blocks only: blocks kept from a stage whose peak was buffers, held into one
// whose peak is something else (mapped file pages while a checkpoint is
// written), would add up past either stage's own peak RSS. Stages nest.
class LargeBlockStage {
 public:
  LargeBlockStage() noexcept { release_kept_large_blocks(); }
  ~LargeBlockStage() { release_kept_large_blocks(); }
  LargeBlockStage(const LargeBlockStage&) = delete;
  LargeBlockStage& operator=(const LargeBlockStage&) = delete;
};

// Whether freed blocks are kept (the default) or unmapped at once; false
// also unmaps what is kept now.
void keep_freed_large_blocks(bool keep) noexcept;

struct LargeBlockCounts {
  uint64_t live_bytes = 0, kept_bytes = 0;
  uint64_t reused = 0, fresh = 0;  // allocations served from kept blocks / from new pages
};
LargeBlockCounts large_block_counts() noexcept;

}  // namespace streamq
