// MirroredStore: reads served from memory, every put durable on disk after
// flush (a fresh store adopts it), a resumed boundary read from disk, writer
// failures surfacing by file and staying, drop freeing both sides, the
// writer's queue held in the budget, and the bytes of a plain memory store.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "src/core/error.h"
#include "io/store/compressed_store.h"
#include "io/file/fault_injection.h"
#include "io/store/mirrored_store.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

std::vector<float> make_chunk(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

class MirroredStoreTest : public ::testing::Test {
 protected:
  // The workdir's store as the pipeline opens it: lossless F32, files kept
  // for a later process; small slabs so a chunk is several writes.
  std::unique_ptr<CompressedStore> open_disk(const FaultPlan& plan = {}) {
    injector_ = std::make_shared<FaultInjector>(plan);
    auto inj = injector_;
    return open_compressed_store(options(), [inj](std::unique_ptr<IoBackend> b) { return wrap_with_faults(std::move(b), inj); });
  }
  CompressedStoreOptions options() const {
    CompressedStoreOptions o;
    o.dir = acts();
    o.storage = DType::F32;
    o.keep_files = true;
    o.slab_bytes = 64 << 10;
    o.slabs = 8;
    return o;
  }
  std::unique_ptr<MirroredStore> open(const FaultPlan& plan = {}, MemoryBudget* budget = nullptr, int depth = 2) {
    MirrorOptions mo;
    mo.depth = depth;
    mo.budget = budget;
    mo.chunk_bytes = 4 * 50000;
    return std::make_unique<MirroredStore>(open_disk(plan), mo);
  }
  std::string acts() const { return dir_.file("acts"); }
  std::string path(int64_t b, Flow f, int64_t c) const { return compressed_chunk_path(acts(), b, f, c); }

  test::ScratchDir dir_{"mirror"};
  std::shared_ptr<FaultInjector> injector_;
};

TEST_F(MirroredStoreTest, ReadsComeFromMemoryAndFlushMakesEveryChunkDurable) {
  auto s = open();
  std::map<std::pair<int, int64_t>, std::vector<float>> put;
  for (int64_t c = 0; c < 4; ++c)
    for (const Flow f : {Flow::Fp, Flow::Quant}) {
      auto v = make_chunk(30000 + 1000 * c, 10 * c + static_cast<int>(f));
      s->put(3, f, c, v.data(), static_cast<int64_t>(v.size()));
      put[{static_cast<int>(f), c}] = std::move(v);
    }
  s->flush();
  const int64_t reads_before = injector_->counters().reads;
  std::vector<float> out;
  for (const auto& [key, v] : put) {
    s->get(3, static_cast<Flow>(key.first), key.second, &out);
    EXPECT_EQ(out, v);
  }
  EXPECT_EQ(injector_->counters().reads, reads_before) << "a get went to disk";
  EXPECT_GT(injector_->counters().bytes_written, 8 * 4 * 30000u / 2) << "nothing (or too little) reached the disk";

  // Another process's view: a fresh store on the same directory takes the
  // boundary over and reads every float back, while this one is still open.
  auto fresh = open_compressed_store(options());
  fresh->adopt(3, 4, kAllFlows);
  for (const auto& [key, v] : put) {
    fresh->get(3, static_cast<Flow>(key.first), key.second, &out);
    EXPECT_EQ(std::memcmp(out.data(), v.data(), v.size() * sizeof(float)), 0);
    EXPECT_EQ(out.size(), v.size());
  }
}

TEST_F(MirroredStoreTest, AdoptedBoundaryIsReadFromDiskThenMemoryTakesOver) {
  std::vector<std::vector<float>> first;
  {
    auto earlier = open_compressed_store(options());  // the process that was killed
    for (int64_t c = 0; c < 3; ++c) {
      first.push_back(make_chunk(20000, 100 + c));
      for (const Flow f : {Flow::Fp, Flow::Quant})
        earlier->put(2, f, c, first.back().data(), static_cast<int64_t>(first.back().size()));
    }
    earlier->flush();
  }
  auto s = open();
  s->adopt(2, 3, kAllFlows);
  EXPECT_EQ(s->bytes_held(), 0u);  // nothing of it in memory
  std::vector<float> out;
  for (int64_t c = 0; c < 3; ++c) {
    s->prefetch(2, Flow::Quant, c);  // a hint, as the pipeline's ReadAhead gives: may be refused
    for (const Flow f : {Flow::Quant, Flow::Fp}) {
      s->get(2, f, c, &out);
      EXPECT_EQ(out, first[static_cast<size_t>(c)]) << c;
    }
    auto next = make_chunk(20000, 200 + c);
    s->put(3, Flow::Quant, c, next.data(), static_cast<int64_t>(next.size()));
  }
  EXPECT_GT(injector_->counters().reads, 0);
  const int64_t reads = injector_->counters().reads;
  s->get(3, Flow::Quant, 1, &out);
  EXPECT_EQ(out, make_chunk(20000, 201));
  EXPECT_EQ(injector_->counters().reads, reads);
  EXPECT_TRUE(s->prefetch(3, Flow::Quant, 1));  // in memory: nothing to read
  s->drop(2);
  EXPECT_FALSE(fs::exists(path(2, Flow::Fp, 0)));
  s->flush();
  EXPECT_TRUE(fs::exists(path(3, Flow::Quant, 2)));
}

TEST_F(MirroredStoreTest, DiskFullOnTheWriterSurfacesOnFlushNamingTheFile) {
  FaultPlan plan;
  plan.write_budget = 300 << 10;  // the disk fills during the second or third chunk
  auto s = open(plan);
  std::string message;
  try {
    for (int64_t c = 0; c < 6; ++c) {
      const auto v = make_chunk(50000, c);
      s->put(1, Flow::Fp, c, v.data(), static_cast<int64_t>(v.size()));  // may already report it
    }
    s->flush();
    FAIL() << "a full disk went unnoticed";
  } catch (const InternalError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(std::strerror(ENOSPC)), std::string::npos) << message;
  EXPECT_NE(message.find(acts() + "/b1.fp.c"), std::string::npos) << "names the file: " << message;
  EXPECT_NE(message.find("block 1, flow fp, chunk"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  // The boundary lost a write: no later flush may call it durable, and every
  // call says why, with the same message.
  injector_->set_plan({});
  std::vector<float> out;
  for (int i = 0; i < 2; ++i) {
    try {
      s->flush();
      FAIL() << "flush succeeded after a lost write";
    } catch (const InternalError& e) {
      EXPECT_EQ(std::string(e.what()), message);
    }
  }
  EXPECT_THROW(s->get(1, Flow::Fp, 0, &out), InternalError);
  const auto v = make_chunk(10, 1);
  EXPECT_THROW(s->put(1, Flow::Fp, 7, v.data(), 10), InternalError);
}

TEST_F(MirroredStoreTest, IoErrorOnTheWriterIsReportedByTheNextCall) {
  FaultPlan plan;
  plan.error = EIO;
  plan.fail_write_at = 0;
  auto s = open(plan, nullptr, 1);
  const auto v = make_chunk(50000, 7);
  s->put(0, Flow::Quant, 0, v.data(), static_cast<int64_t>(v.size()));
  std::vector<float> out;
  std::string message;
  try {
    // The failed write is found by the writer's next put or by flush; a get
    // served from memory in between reports it too once it is known.
    for (int64_t c = 1; c < 4; ++c) {
      s->put(0, Flow::Quant, c, v.data(), static_cast<int64_t>(v.size()));
      s->get(0, Flow::Quant, 0, &out);
    }
    s->flush();
    FAIL() << "an I/O error went unnoticed";
  } catch (const InternalError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(std::strerror(EIO)), std::string::npos) << message;
  EXPECT_NE(message.find(path(0, Flow::Quant, 0)), std::string::npos) << message;
}

TEST_F(MirroredStoreTest, DropFreesMemoryAndFiles) {
  auto s = open();
  const auto a = make_chunk(40000, 1), b = make_chunk(25000, 2);
  s->put(0, Flow::Fp, 0, a.data(), static_cast<int64_t>(a.size()));
  s->put(0, Flow::Quant, 0, a.data(), static_cast<int64_t>(a.size()));
  s->put(1, Flow::Fp, 0, b.data(), static_cast<int64_t>(b.size()));
  EXPECT_EQ(s->bytes_held(), (2 * a.size() + b.size()) * sizeof(float));
  s->drop(0);
  EXPECT_EQ(s->bytes_held(), b.size() * sizeof(float));
  EXPECT_FALSE(fs::exists(path(0, Flow::Fp, 0)));
  EXPECT_FALSE(fs::exists(path(0, Flow::Quant, 0)));
  std::vector<float> out;
  EXPECT_THROW(s->get(0, Flow::Fp, 0, &out), InternalError);
  s->flush();
  EXPECT_TRUE(fs::exists(path(1, Flow::Fp, 0)));
  s->drop(1);
  EXPECT_EQ(s->bytes_held(), 0u);
  EXPECT_EQ(s->disk().stats().chunks, 0);
}

TEST_F(MirroredStoreTest, WriterQueueIsHeldInTheBudget) {
  const uint64_t chunk = 4 * 50000;
  MemoryBudget budget(3 * chunk);  // room for fewer writes than the depth asks
  auto s = open({}, &budget, 4);
  for (int64_t c = 0; c < 12; ++c) {
    const auto v = make_chunk(50000, c);
    s->put(0, c % 2 ? Flow::Fp : Flow::Quant, c, v.data(), static_cast<int64_t>(v.size()));
  }
  s->flush();
  EXPECT_LE(budget.high_water(), budget.limit());
  EXPECT_GT(budget.high_water(), 0u);  // the writes did go through the queue
  EXPECT_EQ(budget.in_use(), 0u);      // and gave it all back
}

// Random calls: the same floats as a plain memory store, at every depth.
TEST_F(MirroredStoreTest, RandomCallSequencesMatchTheMemoryStore) {
  for (int depth = 0; depth < 3; ++depth) {
    std::mt19937 rng(depth);
    auto s = open({}, nullptr, depth);
    auto ref = make_memory_store();
    std::map<std::tuple<int64_t, int, int64_t>, bool> present;
    std::vector<float> got, want;
    for (int op = 0; op < 150; ++op) {
      const int64_t b = rng() % 3, c = rng() % 3;
      const Flow f = rng() % 2 ? Flow::Fp : Flow::Quant;
      const int kind = rng() % 10;
      if (kind < 4) {
        const auto v = make_chunk(1 + rng() % 3000, rng());
        s->put(b, f, c, v.data(), static_cast<int64_t>(v.size()));
        ref->put(b, f, c, v.data(), static_cast<int64_t>(v.size()));
        present[{b, static_cast<int>(f), c}] = true;
      } else if (kind < 9) {
        if (!present.count({b, static_cast<int>(f), c})) continue;
        s->get(b, f, c, &got);
        ref->get(b, f, c, &want);
        ASSERT_EQ(got, want) << "depth " << depth << " op " << op;
      } else {
        s->drop(b);
        ref->drop(b);
        for (auto it = present.begin(); it != present.end();)
          it = std::get<0>(it->first) == b ? present.erase(it) : std::next(it);
      }
      if (op % 50 == 49) s->flush();
    }
    s->flush();
    EXPECT_EQ(s->bytes_held(), ref->bytes_held());
    // What is on disk is what is in memory, chunk for chunk.
    EXPECT_EQ(s->disk().stats().chunks, static_cast<int64_t>(present.size()));
    for (int64_t b = 0; b < 3; ++b) s->drop(b);
  }
}

}  // namespace
}  // namespace streamq
