// The ActivationStore calls a job makes through its outermost store (flush,
// prefetch, adopt, stats) reach the store that does the work, through every
// decorator, and a store that needs none of them answers with its defaults.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "src/core/error.h"
#include "io/store/chunk_header.h"
#include "io/store/compressed_store.h"
#include "io/store/mirrored_store.h"
#include "io/store/prefetch_store.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

// A memory store that records the calls a decorator passes down.
class RecordingStore final : public ActivationStore {
 public:
  int flushes = 0;
  std::vector<std::tuple<int64_t, int64_t, std::vector<Flow>>> adopted;
  mutable int stats_calls = 0;

  void put(int64_t b, Flow f, int64_t c, const float* d, int64_t n) override { mem_->put(b, f, c, d, n); }
  void get(int64_t b, Flow f, int64_t c, std::vector<float>* out) override { mem_->get(b, f, c, out); }
  void drop(int64_t b) override { mem_->drop(b); }
  uint64_t bytes_held() const override { return mem_->bytes_held(); }
  void flush() override { ++flushes; }
  void adopt(int64_t b, int64_t n, const std::vector<Flow>& flows) override { adopted.emplace_back(b, n, flows); }
  StoreStats stats(int64_t b) const override {
    ++stats_calls;
    StoreStats s;
    s.chunks = b;
    return s;
  }

 private:
  std::unique_ptr<ActivationStore> mem_ = make_memory_store();
};

TEST(StoreInterface, MemoryStoreNeedsNoFlushHasNoReadAheadAndCannotAdopt) {
  auto s = make_memory_store();
  s->flush();
  EXPECT_FALSE(s->prefetch(0, Flow::Quant, 0));
  EXPECT_EQ(s->stats(0).chunks, 0);
  try {
    s->adopt(3, 2, kAllFlows);
    FAIL() << "a memory store adopted a boundary from disk";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("boundary 3"), std::string::npos) << e.what();
  }
}

TEST(StoreInterface, PrefetchStorePassesFlushAdoptAndStatsDown) {
  auto rec = std::make_unique<RecordingStore>();
  RecordingStore* inner = rec.get();
  PrefetchStore s(std::move(rec), PrefetchOptions{});
  const std::vector<float> v(100, 1.5f);
  s.put(1, Flow::Quant, 0, v.data(), 100);
  s.flush();  // the queued put first, then the inner flush
  EXPECT_EQ(inner->flushes, 1);
  std::vector<float> out;
  s.get(1, Flow::Quant, 0, &out);
  EXPECT_EQ(out, v);
  s.adopt(4, 2, {Flow::Quant});
  ASSERT_EQ(inner->adopted.size(), 1u);
  EXPECT_EQ(inner->adopted[0], std::make_tuple(int64_t{4}, int64_t{2}, std::vector<Flow>{Flow::Quant}));
  EXPECT_EQ(s.stats(7).chunks, 7);
  EXPECT_EQ(inner->stats_calls, 1);
}

// A boundary of the quantized flow alone (a method that never reads the FP
// flow), left by one process and adopted by the next through the decorators.
TEST(StoreInterface, OneFlowBoundaryIsAdoptedThroughEveryDecorator) {
  test::ScratchDir dir("store-interface");
  CompressedStoreOptions opts;
  opts.dir = dir.file("acts");
  opts.storage = DType::F32;
  opts.keep_files = true;
  std::vector<std::vector<float>> put;
  {
    auto earlier = open_compressed_store(opts);
    for (int64_t c = 0; c < 3; ++c) {
      put.emplace_back(5000 + 100 * c, 0.25f * static_cast<float>(c + 1));
      earlier->put(2, Flow::Quant, c, put.back().data(), static_cast<int64_t>(put.back().size()));
    }
    earlier->flush();
    EXPECT_EQ(earlier->stats(2).chunks, 3);
  }
  for (const bool mirrored : {false, true}) {
    SCOPED_TRACE(mirrored ? "mirrored" : "read-ahead");
    std::unique_ptr<ActivationStore> s;
    if (mirrored) s = std::make_unique<MirroredStore>(open_compressed_store(opts), MirrorOptions{});
    else s = std::make_unique<PrefetchStore>(open_compressed_store(opts), PrefetchOptions{});
    s->adopt(2, 3, {Flow::Quant});
    EXPECT_EQ(s->stats(2).chunks, 3);
    std::vector<float> out;
    for (int64_t c = 0; c < 3; ++c) {
      s->prefetch(2, Flow::Quant, c);  // a hint: may be refused
      s->get(2, Flow::Quant, c, &out);
      EXPECT_EQ(out, put[static_cast<size_t>(c)]) << c;
    }
  }
  // Asking for a flow the earlier process never wrote names the missing file.
  auto s = open_compressed_store(opts);
  try {
    s->adopt(2, 3, kAllFlows);
    FAIL() << "adopted a boundary whose FP flow is absent";
  } catch (const StoreCorruptionError& e) {
    EXPECT_NE(std::string(e.what()).find(fs::path(compressed_chunk_path(opts.dir, 2, Flow::Fp, 0)).filename().string()),
              std::string::npos)
        << e.what();
  }
}

// get_into (what a chunk pass reads into its pinned staging with) gives get's
// floats from every store, whichever way the store serves the chunk: from
// memory, decoded from disk, read ahead, or from a put still queued; and a
// buffer of another size is an error naming the chunk, with nothing read.
TEST(StoreInterface, GetIntoGivesGetsFloatsFromEveryStoreAndRefusesAnotherSize) {
  STREAMQ_FRESH_RNG(rng);
  test::ScratchDir dir("store-get-into");
  std::vector<std::vector<float>> put;
  std::normal_distribution<float> normal;
  for (int64_t c = 0; c < 4; ++c) {
    put.emplace_back(static_cast<size_t>(3000 + 517 * c));
    for (float& v : put.back()) v = normal(rng);
  }
  auto compressed = [&](const std::string& name, DType storage) {
    CompressedStoreOptions opts;
    opts.dir = dir.file(name);
    opts.storage = storage;
    opts.frame_elems = 1024;  // several frames a chunk: decoded in parallel into the buffer
    return open_compressed_store(opts);
  };
  std::vector<std::pair<std::string, std::unique_ptr<ActivationStore>>> stores;
  stores.emplace_back("memory", make_memory_store());
  stores.emplace_back("compressed f32", compressed("f32", DType::F32));
  stores.emplace_back("compressed bf16", compressed("bf16", DType::BF16));
  stores.emplace_back("read-ahead", std::make_unique<PrefetchStore>(compressed("ra", DType::BF16), PrefetchOptions{}));
  stores.emplace_back("mirrored", std::make_unique<MirroredStore>(compressed("mirror", DType::F32), MirrorOptions{}));
  stores.emplace_back("decorator's default", std::make_unique<RecordingStore>());
  for (auto& [name, s] : stores) {
    SCOPED_TRACE(name);
    for (int64_t c = 0; c < 4; ++c)
      s->put(1, Flow::Quant, c, put[static_cast<size_t>(c)].data(), static_cast<int64_t>(put[c].size()));
    s->flush();
    s->prefetch(1, Flow::Quant, 2);  // a hint: served from the read-ahead where taken
    for (int64_t c = 0; c < 4; ++c) {
      std::vector<float> want;
      s->get(1, Flow::Quant, c, &want);
      std::vector<float> got(want.size(), -7.0f);
      s->get_into(1, Flow::Quant, c, got);
      EXPECT_EQ(got, want) << "chunk " << c;
      if (name.find("bf16") == std::string::npos && name != "read-ahead") {
        EXPECT_EQ(got, put[c]) << "chunk " << c;
      }
    }
    std::vector<float> short_buffer(put[3].size() - 1, -7.0f);
    try {
      s->get_into(1, Flow::Quant, 3, short_buffer);
      FAIL() << "read a chunk of " << put[3].size() << " into " << short_buffer.size();
    } catch (const InternalError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("block 1, flow quant, chunk 3"), std::string::npos) << what;
      EXPECT_NE(what.find(std::to_string(put[3].size())), std::string::npos) << what;
    }
    EXPECT_EQ(short_buffer, std::vector<float>(put[3].size() - 1, -7.0f)) << "nothing read";
  }
}

}  // namespace
}  // namespace streamq
