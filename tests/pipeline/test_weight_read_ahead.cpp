// The next block's weight read-ahead: it brings exactly the named tensors,
// whole however large, into the page cache without mapping them (no RSS), and
// the pipeline reads block b+1 ahead while block b computes, traced, with the
// same output bytes.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/file/fd.h"
#include "io/formats/safetensors.h"
#include "src/model/architecture.h"
#include "src/model/model.h"
#include "src/pipeline/weight_read_ahead.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// The file pages that lie wholly inside [begin, end) of a file mapping, and
// how many of them are in the page cache (mincore reports the cache, whether
// this process has the pages mapped or not). A page shared with a neighbour
// tensor is left out: it is the neighbour's too.
struct Residency {
  size_t pages = 0, cached = 0;
};
Residency residency(const unsigned char* begin, const unsigned char* end) {
  const uintptr_t b = (reinterpret_cast<uintptr_t>(begin) + kPage - 1) / kPage * kPage;
  const uintptr_t e = reinterpret_cast<uintptr_t>(end) / kPage * kPage;
  Residency r;
  if (e <= b) return r;
  std::vector<unsigned char> v((e - b) / kPage);
  if (::mincore(reinterpret_cast<void*>(b), e - b, v.data()) != 0) throw std::runtime_error("mincore failed");
  r.pages = v.size();
  for (unsigned char x : v) r.cached += x & 1;
  return r;
}

// Polls `done` every 10 ms until it holds or `seconds` pass; returns it.
template <class F>
bool wait_for(F done, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST(WeightReadAhead, BringsTheNamedTensorsIntoThePageCacheWithoutMappingThem) {
  test::ScratchDir dir("readahead");
  // MiB-sized and odd: a is larger than the mmap read-around window (8 MiB on
  // the 2-core VM), so reading the header through the mapping brings in none
  // of b; b is twice that window, past which one readahead(2) reads nothing.
  constexpr int64_t kMiB = 262144;  // floats
  const std::vector<std::pair<std::string, int64_t>> shapes = {{"a", 9 * kMiB + 5}, {"b", 16 * kMiB + 3},
                                                               {"c", 2 * kMiB + 7}};
  {
    std::vector<TensorSpec> plan;
    for (const auto& [name, numel] : shapes) plan.push_back({name, DType::F32, {numel}});
    SafetensorsWriter w(dir.path(), plan, {}, UINT64_MAX, "model");
    for (const auto& [name, numel] : shapes) {
      std::vector<float> v(static_cast<size_t>(numel), 1.5f);
      w.write_f32(name, v.data(), numel);
    }
    w.finish();  // fsynced: every page is clean, so the kernel can drop it
  }
  const std::string path = dir.file("model.safetensors");
  const auto st = SafetensorsModel::open(dir.path());
  auto pages_of = [&](const std::string& name) {
    const TensorInfo& t = st->info(name);
    const auto* begin = static_cast<const unsigned char*>(st->file_of(name).data(t));
    return residency(begin, begin + t.nbytes);
  };
  // Start from b and c out of the cache. Opening faulted the header in, and
  // the kernel reads the window around such a fault in the background; pages
  // still being read cannot be dropped, so drop until none is left. (Dropping
  // once before opening was the flaky version: on a loaded machine the
  // read-around could complete before the first look.)
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  const bool evicted = wait_for(
      [&] {
        if (::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) != 0) throw std::runtime_error("fadvise failed");
        return pages_of("b").cached + pages_of("c").cached == 0;
      },
      10);
  // Without it the test could not tell a read-ahead from a cache that was never emptied.
  ASSERT_TRUE(evicted) << path << ": the page cache kept the file after POSIX_FADV_DONTNEED";

  EXPECT_EQ(st->read_ahead({"b"}), st->info("b").nbytes);
  // readahead(2) returns once the reads are submitted; a loaded machine's
  // disk may take seconds to finish them.
  const Residency b_pages = pages_of("b");
  EXPECT_TRUE(wait_for([&] { return pages_of("b").cached == b_pages.pages; }, 30))
      << pages_of("b").cached << " of tensor b's " << b_pages.pages << " pages are cached after its read-ahead";
  EXPECT_EQ(pages_of("c").cached, 0u) << "tensor c was not asked for";
  const TensorInfo& b = st->info("b");
  EXPECT_FALSE(test::page_mapped(static_cast<const unsigned char*>(st->file_of("b").data(b)) + b.nbytes / 2))
      << "a read-ahead must not map pages (it would count in RSS)";
  EXPECT_EQ(st->read_f32("b")[17], 1.5f);
}

TEST(WeightReadAhead, ModelReadsAheadItsBlockAndNothingOutOfRange) {
  const Model model(test::demo_model_dir());
  TraceRecorder trace;
  {
    WeightReadAhead ahead(model, 2, &trace);
    EXPECT_EQ(ahead.join(), model.block_stored_bytes(2));
  }
  {
    WeightReadAhead none(model, model.config().layers, &trace);
    EXPECT_EQ(none.join(), 0u);
  }
  int events = 0;
  const nlohmann::json j = trace.to_json();  // named: a temporary's element would dangle in the loop
  for (const auto& e : j["traceEvents"])
    if (e.value("name", "") == "read-ahead weights") {
      ++events;
      EXPECT_EQ(e["args"]["block"], 2);
      EXPECT_EQ(e["args"]["bytes"].get<uint64_t>(), model.block_stored_bytes(2));
    }
  EXPECT_EQ(events, 1);
}

struct Span {
  double begin = 0, end = 0;
};

// block -> span of the named events in a quantize trace.
std::map<int64_t, Span> spans_named(const nlohmann::json& trace, const std::string& name) {
  std::map<int64_t, Span> out;
  for (const auto& e : trace["traceEvents"])
    if (e.value("ph", "") == "X" && e.value("name", "") == name) {
      const double ts = e["ts"].get<double>();
      out[e["args"]["block"].get<int64_t>()] = {ts, ts + e["dur"].get<double>()};
    }
  return out;
}

TEST(WeightReadAhead, PipelineReadsEachNextBlockWhileTheCurrentOneComputes) {
  test::ScratchDir dir("readahead-job");
  const std::string calib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
  auto run = [&](const std::string& out, const std::string& depth) {
    const auto r = test::run_streamq({"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", dir.file(out),
                                      "--calib", calib, "--nsamples", "8", "--seqlen", "64", "--activations",
                                      "disk", "--prefetch-depth", depth, "--trace", dir.file(out + ".json"),
                                      "--quiet"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(test::read_all(dir.file(out + ".json")));
  };
  const nlohmann::json ahead = run("ahead", "2");
  const nlohmann::json none = run("none", "0");
  const Model model(test::demo_model_dir());
  const int64_t layers = model.config().layers;

  const auto reads = spans_named(ahead, "read-ahead weights");
  const auto loads = spans_named(ahead, "load weights");
  ASSERT_EQ(static_cast<int64_t>(loads.size()), layers);
  ASSERT_EQ(static_cast<int64_t>(reads.size()), layers - 1) << "one read-ahead per block after the first";
  for (const auto& [b, read] : reads) {
    ASSERT_GE(b, 1);
    // Started once block b-1's weights were loaded, done before block b loads.
    EXPECT_GE(read.begin, loads.at(b - 1).end) << b;
    EXPECT_LE(read.end, loads.at(b).begin) << b;
  }
  for (const auto& e : ahead["traceEvents"]) {
    if (e.value("name", "") != "read-ahead weights") continue;
    EXPECT_EQ(e["args"]["bytes"].get<uint64_t>(), model.block_stored_bytes(e["args"]["block"].get<int64_t>()));
  }
  EXPECT_TRUE(spans_named(none, "read-ahead weights").empty()) << "--prefetch-depth 0 reads nothing ahead";
  EXPECT_EQ(static_cast<int64_t>(spans_named(none, "load weights").size()), layers);
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"}) {
    EXPECT_TRUE(test::read_all(dir.file(std::string("ahead/") + f)) == test::read_all(dir.file(std::string("none/") + f)))
        << f << " differs with the read-ahead";
  }
}

}  // namespace
}  // namespace streamq
