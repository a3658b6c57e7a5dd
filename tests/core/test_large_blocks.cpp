// The large-block cache (src/core/large_blocks.h): a freed block serves the
// next request of its size (or up to half of it) without fresh pages, what
// is kept never takes live + kept past the peak of live bytes since the last
// release, a release unmaps everything kept, and operator new's large
// buffers go through it. Counts are process-wide, so each test starts with
// a release and reads differences.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "src/core/large_blocks.h"

namespace streamq {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
size_t page_rounded(size_t b) { return (b + 4095) / 4096 * 4096; }

TEST(LargeBlocks, AFreedBlockServesTheNextRequestOfItsSize) {
  if (!kLargeBlocksInUse) GTEST_SKIP() << "large blocks are off in this build (AddressSanitizer)";
  release_kept_large_blocks();
  const LargeBlockCounts before = large_block_counts();
  void* a = large_block_allocate(3 * kMiB + 5);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  std::memset(a, 0x5a, 3 * kMiB + 5);  // writable, every byte
  ASSERT_TRUE(free_if_large_block(a));
  EXPECT_EQ(large_block_counts().kept_bytes, before.kept_bytes + page_rounded(3 * kMiB + 5));
  void* b = large_block_allocate(3 * kMiB + 5);
  EXPECT_EQ(b, a);
  const LargeBlockCounts after = large_block_counts();
  EXPECT_EQ(after.reused, before.reused + 1);
  EXPECT_EQ(after.fresh, before.fresh + 1);
  ASSERT_TRUE(free_if_large_block(b));
  EXPECT_FALSE(free_if_large_block(b));  // no longer live
  release_kept_large_blocks();
  EXPECT_EQ(large_block_counts().kept_bytes, 0u);
}

TEST(LargeBlocks, ASmallerRequestTakesAKeptBlockUpToTwiceItsSizeAndHoldsOnlyItsOwnPages) {
  if (!kLargeBlocksInUse) GTEST_SKIP() << "large blocks are off in this build (AddressSanitizer)";
  release_kept_large_blocks();
  const LargeBlockCounts before = large_block_counts();
  void* big = large_block_allocate(8 * kMiB);
  std::memset(big, 1, 8 * kMiB);
  free_if_large_block(big);
  void* half = large_block_allocate(4 * kMiB);  // exactly half: taken
  EXPECT_EQ(half, big);
  // Counted at its own size: live is the request, nothing else kept.
  EXPECT_EQ(large_block_counts().live_bytes, before.live_bytes + 4 * kMiB);
  EXPECT_EQ(large_block_counts().kept_bytes, before.kept_bytes);
  // The dropped tail reads as zeros (fresh pages), the head kept its bytes.
  EXPECT_EQ(static_cast<unsigned char*>(half)[4 * kMiB - 1], 1);
  EXPECT_EQ(static_cast<unsigned char*>(half)[4 * kMiB], 0);
  free_if_large_block(half);
  void* small = large_block_allocate(2 * kMiB - 4096);  // under half of the 8 MiB mapping: fresh
  EXPECT_NE(small, big);
  free_if_large_block(small);
  release_kept_large_blocks();
}

// The bound on fresh random sequences: after every step, live + kept <= the
// largest live total since the last release, where live is what the test
// itself holds (page-rounded requests).
TEST(LargeBlocks, LivePlusKeptNeverPassesThePeakOfLiveSinceTheLastRelease) {
  if (!kLargeBlocksInUse) GTEST_SKIP() << "large blocks are off in this build (AddressSanitizer)";
  std::mt19937_64 rng(std::random_device{}());
  for (int round = 0; round < 4; ++round) {
    release_kept_large_blocks();
    const uint64_t base_live = large_block_counts().live_bytes;  // others' blocks (gtest's, none expected)
    uint64_t live = 0, peak = 0;
    uint64_t reused = 0;
    std::vector<std::pair<void*, size_t>> held;
    const LargeBlockCounts start = large_block_counts();
    for (int step = 0; step < 400; ++step) {
      const bool alloc = held.empty() || (held.size() < 12 && rng() % 2 == 0);
      if (alloc) {
        // A few sizes repeat (as chunks do), others are new.
        const size_t sizes[] = {kMiB, 3 * kMiB, 3 * kMiB + 4096, 5 * kMiB, 9 * kMiB};
        const size_t bytes = rng() % 4 == 0 ? kMiB + (rng() % (8 * kMiB)) : sizes[rng() % 5];
        void* p = large_block_allocate(bytes);
        ASSERT_NE(p, nullptr);
        static_cast<unsigned char*>(p)[bytes - 1] = 7;  // touch the last page
        held.emplace_back(p, bytes);
        live += page_rounded(bytes);
        peak = std::max(peak, live);
      } else {
        const size_t i = rng() % held.size();
        ASSERT_TRUE(free_if_large_block(held[i].first));
        live -= page_rounded(held[i].second);
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      }
      const LargeBlockCounts c = large_block_counts();
      ASSERT_EQ(c.live_bytes - base_live, live) << "step " << step;
      ASSERT_LE(c.live_bytes - base_live + c.kept_bytes, peak) << "step " << step;
      reused = c.reused - start.reused;
    }
    EXPECT_GT(reused, 0u) << "repeated sizes were never served from kept blocks";
    for (const auto& [p, n] : held) free_if_large_block(p);
  }
  release_kept_large_blocks();
  EXPECT_EQ(large_block_counts().kept_bytes, 0u);
}

// What a stage frees is not held past its end, and what the stage before
// kept is not held into it: the case of a block's sweep buffers kept while
// the checkpoint's writing maps file pages (issue 17's rotated RSS, 1.22x).
TEST(LargeBlocks, AStageReleasesWhatIsKeptWhenItStartsAndWhenItEnds) {
  if (!kLargeBlocksInUse) GTEST_SKIP() << "large blocks are off in this build (AddressSanitizer)";
  release_kept_large_blocks();
  const LargeBlockCounts before = large_block_counts();
  void* earlier = large_block_allocate(2 * kMiB);
  ASSERT_TRUE(free_if_large_block(earlier));
  ASSERT_EQ(large_block_counts().kept_bytes, before.kept_bytes + 2 * kMiB);
  {
    const LargeBlockStage stage;
    EXPECT_EQ(large_block_counts().kept_bytes, 0u);  // the stage before's block is gone
    void* inner = large_block_allocate(5 * kMiB);
    std::memset(inner, 7, 5 * kMiB);
    ASSERT_TRUE(free_if_large_block(inner));
    EXPECT_EQ(large_block_counts().kept_bytes, 5 * kMiB);  // kept within the stage
    {
      const LargeBlockStage nested;  // a chunk pass inside a block
      EXPECT_EQ(large_block_counts().kept_bytes, 0u);
    }
  }
  EXPECT_EQ(large_block_counts().kept_bytes, 0u);
  EXPECT_EQ(large_block_counts().live_bytes, before.live_bytes);
}

TEST(LargeBlocks, HeapBlocksAreNotTakenForLargeOnes) {
  void* heap = std::aligned_alloc(4096, 8192);  // page-aligned, but glibc's
  ASSERT_NE(heap, nullptr);
  EXPECT_FALSE(free_if_large_block(heap));
  std::free(heap);
  EXPECT_FALSE(free_if_large_block(nullptr));
}

TEST(LargeBlocks, OperatorNewServesLargeVectorsFromKeptBlocks) {
  if (!kLargeBlocksInUse) GTEST_SKIP() << "large blocks are off in this build (AddressSanitizer)";
  release_kept_large_blocks();
  const LargeBlockCounts before = large_block_counts();
  const double* first = nullptr;
  {
    std::vector<double> v(size_t{1} << 18, 1.5);  // 2 MiB
    first = v.data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 4096, 0u);
  }
  std::vector<double> w(size_t{1} << 18, 2.5);  // the same size again: the same pages
  EXPECT_EQ(w.data(), first);
  EXPECT_EQ(w.back(), 2.5);
  EXPECT_EQ(large_block_counts().reused, before.reused + 1);
  std::vector<char> small(1000);  // below the threshold: glibc's heap
  EXPECT_FALSE(free_if_large_block(small.data()));
}

}  // namespace
}  // namespace streamq
