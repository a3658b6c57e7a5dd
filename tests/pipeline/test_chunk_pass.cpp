// The chunk pass (src/pipeline/chunk_pass.h): on the CPU backend and the
// emulated device, items give exactly what a plain serial loop of read ->
// compute -> write gives, store calls come in item order, a pass without
// writes leaves its results to compute, errors surface, the device holds the
// slots and no more, and on a device with slow copy engines the uploads and
// downloads of neighbouring items overlap.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <span>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "scheduler/trace.h"
#include "src/core/error.h"
#include "src/pipeline/chunk_pass.h"
#include "tests/support/backend_test_util.h"

namespace streamq {
namespace {

std::vector<std::unique_ptr<Backend>> backends(double pcie_gbps = 0) {
  std::vector<std::unique_ptr<Backend>> out;
  out.push_back(make_cpu_backend());
  out.push_back(make_emulated_backend({.memory_bytes = uint64_t{64} << 20, .pcie_gbps = pcie_gbps}));
  return out;
}

// Items of different sizes: x -> 2x + w (w a resident buffer), the add on
// the backend's compute stream, as a forward would queue it.
struct Fixture {
  std::vector<std::vector<float>> inputs;
  std::vector<float> w;
  explicit Fixture(std::mt19937_64& rng, int n) {
    for (int i = 0; i < n; ++i) inputs.push_back(test::random_normal<float>(rng, 1000 + 137 * (i % 4)));
    w = test::random_normal<float>(rng, 1000 + 137 * 3);
  }
};

TEST(ChunkPass, ItemsGiveTheSerialLoopsResultWithStoreCallsInOrder) {
  STREAMQ_SEEDED_RNG(rng);
  const Fixture f(rng, 7);
  for (const int slots : {1, 2, 3}) {
    for (auto& be : backends()) {
      SCOPED_TRACE(be->name() + " slots " + std::to_string(slots));
      Buffer<float> dw = be->upload_new(f.w, "w");
      be->synchronize();
      std::mutex mu;
      std::vector<std::string> calls;
      std::map<size_t, std::vector<float>> written;
      std::map<size_t, const float*> read_at, written_from;
      std::vector<ChunkPassItem> items;
      for (size_t i = 0; i < f.inputs.size(); ++i) {
        const auto n = static_cast<int64_t>(f.inputs[i].size());
        ChunkPassItem it;
        it.floats = n;
        it.read = [&, i](std::span<float> x) {
          std::lock_guard<std::mutex> lock(mu);
          calls.push_back("read " + std::to_string(i));
          read_at[i] = x.data();
          ASSERT_EQ(x.size(), f.inputs[i].size());
          std::copy(f.inputs[i].begin(), f.inputs[i].end(), x.begin());
        };
        it.compute = [&, n](float* x) {
          be->add_inplace(x, x, n);
          be->add_inplace(x, dw.data(), n);
        };
        it.write = [&, i](std::span<const float> x) {
          std::lock_guard<std::mutex> lock(mu);
          calls.push_back("write " + std::to_string(i));
          written_from[i] = x.data();
          written[i] = std::vector<float>(x.begin(), x.end());
        };
        items.push_back(std::move(it));
      }
      run_chunk_pass(*be, std::move(items), {.slots = slots, .what = "test chunk"});
      ASSERT_EQ(written.size(), f.inputs.size());
      // On a device every slot was staged through pinned host memory (the
      // copies run asynchronously from it), all of it returned; the CPU
      // copies nothing and pins nothing.
      EXPECT_EQ(be->pinned_memory().in_use(), 0u);
      EXPECT_GE(be->pinned_memory().high_water(), chunk_pass_pinned_bytes(*be, slots, 1000 + 137 * 3));
      if (be->host_addressable()) {
        EXPECT_EQ(be->pinned_memory().high_water(), 0u);
      }
      // The store reads into and writes from one host buffer per slot (on a
      // device the pinned staging the copies use: nothing between them).
      std::set<const float*> slot_buffers;
      for (size_t i = 0; i < f.inputs.size(); ++i) {
        EXPECT_EQ(read_at[i], written_from[i]) << "item " << i;
        EXPECT_EQ(read_at[i], read_at[i % static_cast<size_t>(slots)]) << "item " << i;
        slot_buffers.insert(read_at[i]);
      }
      EXPECT_EQ(slot_buffers.size(), static_cast<size_t>(slots));
      for (size_t i = 0; i < f.inputs.size(); ++i) {
        std::vector<float> want = f.inputs[i];
        for (size_t k = 0; k < want.size(); ++k) want[k] = (want[k] + want[k]) + f.w[k];
        EXPECT_EQ(written[i], want) << "item " << i;
      }
      std::vector<std::string> reads, writes;
      for (const auto& c : calls) (c.rfind("read", 0) == 0 ? reads : writes).push_back(c);
      for (size_t i = 0; i < f.inputs.size(); ++i) {
        EXPECT_EQ(reads[i], "read " + std::to_string(i));
        EXPECT_EQ(writes[i], "write " + std::to_string(i));
      }
      // A slot is reused only after its item was written: item i is read
      // after item i - slots was written.
      for (size_t i = static_cast<size_t>(slots); i < f.inputs.size(); ++i) {
        const auto at = [&](const std::string& c) { return std::find(calls.begin(), calls.end(), c) - calls.begin(); };
        EXPECT_LT(at("write " + std::to_string(i - slots)), at("read " + std::to_string(i)));
      }
    }
  }
}

TEST(ChunkPass, WithoutWritesComputeKeepsTheResultsAndTheDeviceHoldsOnlyTheSlots) {
  STREAMQ_SEEDED_RNG(rng);
  const Fixture f(rng, 5);
  for (auto& be : backends()) {
    SCOPED_TRACE(be->name());
    // A sum over items on the compute stream, as statistics accumulate.
    Buffer<float> sum = be->alloc<float>(1000, "sum");
    be->fill_bytes(sum.data(), 0, sum.bytes());
    be->synchronize();
    const uint64_t before = be->memory().in_use();
    uint64_t peak_in_pass = 0;
    std::vector<ChunkPassItem> items;
    for (size_t i = 0; i < f.inputs.size(); ++i) {
      ChunkPassItem it;
      it.floats = static_cast<int64_t>(f.inputs[i].size());
      it.read = [&, i](std::span<float> x) { std::copy(f.inputs[i].begin(), f.inputs[i].end(), x.begin()); };
      it.compute = [&](float* x) {
        be->add_inplace(sum.data(), x, 1000);
        peak_in_pass = std::max(peak_in_pass, be->memory().in_use());
      };
      items.push_back(std::move(it));
    }
    run_chunk_pass(*be, std::move(items), {.slots = 2, .what = "test chunk"});
    std::vector<float> want(1000, 0.0f);
    for (const auto& in : f.inputs)
      for (size_t k = 0; k < 1000; ++k) want[k] += in[k];
    EXPECT_EQ(be->download_all(sum), want);
    const int64_t largest = 1000 + 137 * 3;
    EXPECT_EQ(peak_in_pass - before, chunk_pass_device_bytes(*be, 2, largest));
    EXPECT_EQ(be->memory().in_use(), before) << "the slots are returned";
  }
}

TEST(ChunkPass, TheFirstErrorSurfacesAndNothingIsLeftQueued) {
  for (auto& be : backends()) {
    SCOPED_TRACE(be->name());
    int writes = 0;
    std::vector<ChunkPassItem> items;
    for (int i = 0; i < 6; ++i) {
      ChunkPassItem it;
      it.floats = 100;
      it.read = [i](std::span<float> x) {
        if (i == 3) throw InputError("chunk 3 is truncated");
        std::fill(x.begin(), x.end(), 1.0f);
      };
      it.compute = [&](float* x) { be->add_inplace(x, x, 100); };
      it.write = [&](std::span<const float>) { ++writes; };
      items.push_back(std::move(it));
    }
    try {
      run_chunk_pass(*be, std::move(items), {});
      FAIL() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("chunk 3 is truncated"), std::string::npos);
    }
    EXPECT_LE(writes, 3) << "nothing after the failing item was written";
    EXPECT_EQ(be->memory().in_use(), 0u);
  }
}

// Copy engines slowed to 1.5 MB/s: each 120 KB copy takes ~80 ms, compute
// is microseconds. Item i+1's upload is queued as soon as its read is done,
// before item i's download can start (that waits for i's compute, which
// waits for i's upload), so the upload stream's and the download stream's
// spans overlap by tens of milliseconds: a deterministic consequence of
// the stream order, not of scheduling luck.
TEST(ChunkPass, OnADeviceUploadsAndDownloadsOfNeighbouringItemsOverlap) {
  auto be = make_emulated_backend({.memory_bytes = uint64_t{64} << 20, .pcie_gbps = 0.0015});
  TraceRecorder trace;
  be->set_trace(&trace);
  std::vector<ChunkPassItem> items;
  for (int i = 0; i < 4; ++i) {
    ChunkPassItem it;
    it.floats = 30000;
    it.read = [](std::span<float> x) { std::fill(x.begin(), x.end(), 1.0f); };
    it.compute = [&](float* x) { be->add_inplace(x, x, 30000); };
    it.write = [](std::span<const float> x) { ASSERT_EQ(x[0], 2.0f); };
    items.push_back(std::move(it));
  }
  run_chunk_pass(*be, std::move(items), {});
  be->set_trace(nullptr);
  const nlohmann::json j = trace.to_json();
  std::map<int, std::string> lanes;
  for (const auto& e : j["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name") lanes[e["tid"].get<int>()] = e["args"]["name"];
  std::vector<std::pair<double, double>> up, down;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] != "X") continue;
    const std::string& lane = lanes[e["tid"].get<int>()];
    const std::pair<double, double> span{e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()};
    if (lane == "device (emulated, upload stream)") up.push_back(span);
    if (lane == "device (emulated, download stream)") down.push_back(span);
  }
  ASSERT_EQ(up.size(), 4u) << j.dump();
  ASSERT_EQ(down.size(), 4u) << j.dump();
  double overlap_us = 0;
  for (const auto& u : up)
    for (const auto& d : down) overlap_us += std::max(0.0, std::min(u.second, d.second) - std::max(u.first, d.first));
  EXPECT_GT(overlap_us, 40000) << "copies in both directions at once for at least 40 ms of the ~80 ms each";
}

}  // namespace
}  // namespace streamq
