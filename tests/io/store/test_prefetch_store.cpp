// PrefetchStore: the same bytes as the plain store under random call
// sequences, background failures surfacing by name, the budget held, and
// reads overlapping the caller's compute.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "src/core/error.h"
#include "io/store/prefetch_store.h"

namespace streamq {
namespace {

using Clock = std::chrono::steady_clock;

// A memory store that can be slow and can fail its k-th put or get; it
// records when each get ran.
class ScriptedStore final : public ActivationStore {
 public:
  int fail_put_at = -1, fail_get_at = -1;  // 0-based call index
  std::chrono::milliseconds delay{0};
  std::map<int64_t, std::pair<Clock::time_point, Clock::time_point>> get_times;  // by chunk
  std::atomic<int> concurrent{0}, max_concurrent{0};
  std::atomic<int> gets_ended{0};
  std::atomic<bool> hold_gets{false};  // gets wait while set: the test decides when read-aheads run

  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    Busy busy(this);
    if (puts_++ == fail_put_at) throw InternalError("disk full");
    std::this_thread::sleep_for(delay);
    inner_->put(block, flow, chunk, data, numel);
  }
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override {
    Busy busy(this);
    struct Ended {
      std::atomic<int>& n;
      ~Ended() { ++n; }
    } ended{gets_ended};
    while (hold_gets) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto t0 = Clock::now();
    if (gets_++ == fail_get_at) throw InternalError("bad sector");
    std::this_thread::sleep_for(delay);
    inner_->get(block, flow, chunk, out);
    get_times[chunk] = {t0, Clock::now()};
  }
  void drop(int64_t block) override { inner_->drop(block); }
  uint64_t bytes_held() const override { return inner_->bytes_held(); }

 private:
  struct Busy {
    ScriptedStore* s;
    explicit Busy(ScriptedStore* st) : s(st) {
      const int now = ++s->concurrent;
      int m = s->max_concurrent;
      while (now > m && !s->max_concurrent.compare_exchange_weak(m, now)) {
      }
    }
    ~Busy() { --s->concurrent; }
  };
  std::unique_ptr<ActivationStore> inner_ = make_memory_store();
  int puts_ = 0, gets_ = 0;
};

std::vector<float> chunk_data(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(PrefetchStore, RandomCallSequencesReturnWhatThePlainStoreReturns) {
  for (int seed = 0; seed < 12; ++seed) {
    std::mt19937 rng(seed);
    const int depth = seed % 4;
    // Every other seed, a budget of about two chunks: puts wait or write through.
    MemoryBudget budget(seed % 2 ? 2 * 4 * 300 : kUnlimitedBytes);
    auto scripted = std::make_unique<ScriptedStore>();
    ScriptedStore* inner = scripted.get();
    PrefetchStore store(std::move(scripted), {depth, &budget, 4 * 300, nullptr});
    auto reference = make_memory_store();
    std::map<std::tuple<int64_t, int, int64_t>, bool> present;
    std::vector<float> got, want;
    for (int op = 0; op < 400; ++op) {
      const int64_t b = rng() % 3, c = rng() % 4;
      const Flow f = rng() % 2 ? Flow::Fp : Flow::Quant;
      const auto key = std::make_tuple(b, static_cast<int>(f), c);
      const int kind = rng() % 10;
      if (kind < 4) {
        const auto v = chunk_data(rng, 1 + rng() % 300);
        store.put(b, f, c, v.data(), static_cast<int64_t>(v.size()));
        reference->put(b, f, c, v.data(), static_cast<int64_t>(v.size()));
        present[key] = true;
      } else if (kind < 6) {
        if (present.count(key)) store.prefetch(b, f, c);
      } else if (kind < 9) {
        if (!present.count(key)) continue;
        store.get(b, f, c, &got);
        reference->get(b, f, c, &want);
        ASSERT_EQ(got, want) << "seed " << seed << " op " << op;
      } else {
        store.drop(b);
        reference->drop(b);
        for (auto it = present.begin(); it != present.end();)
          it = std::get<0>(it->first) == b ? present.erase(it) : std::next(it);
      }
      EXPECT_LE(budget.high_water(), budget.limit());
    }
    store.flush();
    EXPECT_EQ(store.bytes_held(), reference->bytes_held());
    EXPECT_EQ(inner->max_concurrent.load(), 1);  // the inner store never sees two calls at once
  }
}

TEST(PrefetchStore, WriteBehindFailureSurfacesOnceNamingTheChunk) {
  for (int k = 0; k < 6; ++k) {
    auto scripted = std::make_unique<ScriptedStore>();
    scripted->fail_put_at = k;
    PrefetchStore store(std::move(scripted), {2, nullptr, 0, nullptr});
    std::vector<float> v(100, 1.0f);
    int thrown = 0;
    std::string message;
    for (int64_t c = 0; c < 6; ++c) {
      try {
        store.put(1, Flow::Quant, c, v.data(), 100);
      } catch (const InternalError& e) {
        ++thrown;
        message = e.what();
      }
    }
    try {
      store.flush();
    } catch (const InternalError& e) {
      ++thrown;
      message = e.what();
    }
    EXPECT_EQ(thrown, 1) << "k=" << k;
    EXPECT_NE(message.find("write-behind of block 1, flow quant, chunk " + std::to_string(k)), std::string::npos)
        << message;
    EXPECT_NE(message.find("disk full"), std::string::npos) << message;
    EXPECT_NO_THROW(store.flush());  // reported once
    std::vector<float> out;
    EXPECT_THROW(store.get(1, Flow::Quant, k, &out), InternalError);  // that chunk never landed
  }
}

TEST(PrefetchStore, ReadAheadFailureSurfacesNamingTheChunk) {
  for (int k = 0; k < 4; ++k) {
    auto scripted = std::make_unique<ScriptedStore>();
    std::vector<float> v(50, 2.0f);
    for (int64_t c = 0; c < 4; ++c) scripted->put(0, Flow::Fp, c, v.data(), 50);
    scripted->fail_get_at = k;
    ScriptedStore* inner = scripted.get();
    PrefetchStore store(std::move(scripted), {4, nullptr, 0, nullptr});
    // Held until all four are queued: a read-ahead failing before the next
    // prefetch() call would (rightly) be reported by that call instead.
    inner->hold_gets = true;
    for (int64_t c = 0; c < 4; ++c) EXPECT_TRUE(store.prefetch(0, Flow::Fp, c));
    inner->hold_gets = false;
    // Let every read-ahead run (a get of one still queued would read directly).
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (inner->gets_ended < 4 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::string message;
    std::vector<float> out;
    for (int64_t c = 0; c < 4; ++c) {
      try {
        store.get(0, Flow::Fp, c, &out);
        EXPECT_EQ(out, v);
      } catch (const InternalError& e) {
        EXPECT_TRUE(message.empty()) << "a second failure: " << e.what();
        message = e.what();
      }
    }
    EXPECT_NE(message.find("read-ahead of block 0, flow fp, chunk " + std::to_string(k)), std::string::npos)
        << message;
    EXPECT_NE(message.find("bad sector"), std::string::npos) << message;
  }
}

TEST(PrefetchStore, ReadYourWritesWhilePutsAreQueued) {
  auto scripted = std::make_unique<ScriptedStore>();
  scripted->delay = std::chrono::milliseconds(20);  // puts stay queued for a while
  PrefetchStore store(std::move(scripted), {3, nullptr, 0, nullptr});
  std::mt19937 rng(3);
  const auto a = chunk_data(rng, 64), b = chunk_data(rng, 64);
  store.put(2, Flow::Fp, 0, a.data(), 64);
  store.put(2, Flow::Fp, 0, b.data(), 64);  // overwrites while the first may still be queued
  EXPECT_FALSE(store.prefetch(2, Flow::Fp, 0));  // served from the queued put
  std::vector<float> out;
  store.get(2, Flow::Fp, 0, &out);
  EXPECT_EQ(out, b);
  store.flush();
  store.get(2, Flow::Fp, 0, &out);
  EXPECT_EQ(out, b);
}

TEST(PrefetchStore, WriteBehindStaysInsideTheBudget) {
  const int64_t numel = 1000;
  const uint64_t chunk = numel * sizeof(float);
  MemoryBudget budget(5 * chunk / 2);  // room for two queued chunks, not three
  auto scripted = std::make_unique<ScriptedStore>();
  scripted->delay = std::chrono::milliseconds(5);
  PrefetchStore store(std::move(scripted), {4, &budget, chunk, nullptr});
  std::mt19937 rng(1);
  std::vector<std::vector<float>> written;
  for (int64_t c = 0; c < 10; ++c) {
    written.push_back(chunk_data(rng, numel));
    store.put(0, Flow::Quant, c, written.back().data(), numel);
    EXPECT_LE(budget.in_use(), budget.limit());
  }
  store.flush();
  EXPECT_EQ(budget.high_water(), 2 * chunk);  // waited rather than exceeded, and did queue two
  EXPECT_EQ(budget.in_use(), 0u);
  std::vector<float> out;
  for (int64_t c = 0; c < 10; ++c) {
    store.get(0, Flow::Quant, c, &out);
    EXPECT_EQ(out, written[c]);
  }
}

// With reads as slow as the compute between them, each read-ahead runs
// during the previous chunk's compute. Asserted on the order of the
// recorded times, so a slow machine cannot make it flaky.
TEST(PrefetchStore, ReadAheadOverlapsTheCallersCompute) {
  const int64_t n = 6;
  const auto step = std::chrono::milliseconds(40);
  auto scripted = std::make_unique<ScriptedStore>();
  ScriptedStore* inner = scripted.get();
  std::vector<float> v(256, 0.5f);
  for (int64_t c = 0; c < n; ++c) scripted->put(0, Flow::Quant, c, v.data(), 256);
  scripted->delay = step;
  TraceRecorder trace;
  PrefetchStore store(std::move(scripted), {2, nullptr, 0, &trace});
  std::vector<std::pair<Clock::time_point, Clock::time_point>> compute(n);
  store.prefetch(0, Flow::Quant, 0);
  store.prefetch(0, Flow::Quant, 1);
  std::vector<float> out;
  const auto t0 = Clock::now();
  for (int64_t c = 0; c < n; ++c) {
    store.get(0, Flow::Quant, c, &out);
    ASSERT_EQ(out, v);
    if (c + 2 < n) store.prefetch(0, Flow::Quant, c + 2);
    compute[c].first = Clock::now();
    std::this_thread::sleep_for(step);  // the block forward
    compute[c].second = Clock::now();
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  // The first get may find its read-ahead still queued and read directly.
  EXPECT_GE(store.prefetch_hits(), n - 1);
  EXPECT_EQ(store.prefetch_hits() + store.direct_reads(), n);
  for (int64_t c = 1; c < n; ++c)
    EXPECT_LT(inner->get_times.at(c).first, compute[c - 1].second) << "read " << c << " waited for compute " << c - 1;
  // Serial would be 2 * n steps; overlapped about n + 1.
  EXPECT_LT(wall, 0.9 * 2 * n * std::chrono::duration<double>(step).count());
  // The reads are on the I/O thread's own lane.
  const auto j = trace.to_json();
  int lane_of_reads = -1;
  int reads = 0;
  for (const auto& e : j["traceEvents"]) {
    if (e.value("ph", "") != "X" || e.value("cat", "") != "read") continue;
    ++reads;
    if (lane_of_reads >= 0) {
      EXPECT_EQ(e["tid"].get<int>(), lane_of_reads);
    }
    lane_of_reads = e["tid"].get<int>();
  }
  EXPECT_EQ(reads, store.prefetch_hits());
  bool named = false;
  for (const auto& e : j["traceEvents"])
    if (e.value("ph", "") == "M" && e.value("name", "") == "thread_name" && e["tid"] == lane_of_reads)
      named = e["args"]["name"] == "activation io";
  EXPECT_TRUE(named) << j.dump();
}

TEST(PrefetchStore, DropWaitsForQueuedPutsAndForgetsReadAheads) {
  auto scripted = std::make_unique<ScriptedStore>();
  scripted->delay = std::chrono::milliseconds(10);
  PrefetchStore store(std::move(scripted), {2, nullptr, 0, nullptr});
  std::vector<float> v(10, 3.0f);
  store.put(0, Flow::Fp, 0, v.data(), 10);
  store.put(1, Flow::Fp, 0, v.data(), 10);
  store.flush();
  EXPECT_TRUE(store.prefetch(0, Flow::Fp, 0));
  store.put(0, Flow::Quant, 1, v.data(), 10);
  store.drop(0);
  EXPECT_EQ(store.bytes_held(), 40u);  // only block 1 is left, nothing queued
  std::vector<float> out;
  EXPECT_THROW(store.get(0, Flow::Fp, 0, &out), InternalError);
  EXPECT_THROW(store.get(0, Flow::Quant, 1, &out), InternalError);
  store.get(1, Flow::Fp, 0, &out);
  EXPECT_EQ(out, v);
}

}  // namespace
}  // namespace streamq
