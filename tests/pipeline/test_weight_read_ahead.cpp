// The next block's weight read-ahead: it brings exactly the named tensors into
// the page cache without mapping them (no RSS), and the pipeline reads block
// b+1 ahead while block b computes, traced, with the same output bytes.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/formats/safetensors.h"
#include "src/model/architecture.h"
#include "src/model/model.h"
#include "src/pipeline/weight_read_ahead.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// Whether the file page under `p` is in the page cache (mincore on a file
// mapping reports the cache, mapped into this process or not).
bool page_cached(const void* p) {
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) / kPage * kPage);
  unsigned char v = 0;
  if (::mincore(page, kPage, &v) != 0) throw std::runtime_error("mincore failed");
  return v & 1;
}

TEST(WeightReadAhead, BringsTheNamedTensorsIntoThePageCacheWithoutMappingThem) {
  test::ScratchDir dir("readahead");
  const std::vector<std::pair<std::string, int64_t>> shapes = {{"a", 2 * 262144 + 5}, {"b", 4 * 262144 + 3},
                                                               {"c", 4 * 262144 + 7}};
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
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
  const auto st = SafetensorsModel::open(dir.path());
  auto mid = [&](const std::string& name) {
    const TensorInfo& t = st->info(name);
    return static_cast<const unsigned char*>(st->file_of(name).data(t)) + t.nbytes / 2;
  };
  // Precondition, or the test could not tell a read-ahead from a cache that
  // was never emptied: the file system must drop clean pages on request.
  ASSERT_FALSE(page_cached(mid("b"))) << path << ": the page cache kept the file after POSIX_FADV_DONTNEED";
  ASSERT_FALSE(page_cached(mid("c")));

  EXPECT_EQ(st->read_ahead({"b"}), st->info("b").nbytes);
  // readahead(2) returns once the reads are submitted; give them a moment.
  bool cached = false;
  for (int i = 0; i < 200 && !cached; ++i) {
    cached = page_cached(mid("b"));
    if (!cached) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(cached) << "tensor b is not in the page cache after its read-ahead";
  EXPECT_FALSE(page_cached(mid("c"))) << "tensor c was not asked for";
  EXPECT_FALSE(test::page_mapped(mid("b"))) << "a read-ahead must not map pages (it would count in RSS)";
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
    const auto r = test::run_streamq({"quantize", "--model", test::demo_model_dir(), "--out", dir.file(out),
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
