// Dropping a finished block's mapped pages: the RSS of the mapping falls by
// what was advised, pages shared with kept tensors stay, and released tensors
// read back unchanged (they fault in again from the file).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "io/formats/safetensors.h"
#include "src/model/model.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// The resident bytes of the mapping that contains `p` (its "Rss:" line in
// /proc/self/smaps): what the kernel attributes to this file mapping.
uint64_t mapping_rss(const void* p) {
  std::ifstream f("/proc/self/smaps");
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find('-')) {
      inside = addr >= lo && addr < hi;
      continue;
    }
    unsigned long kb = 0;
    if (inside && std::sscanf(line.c_str(), "Rss: %lu kB", &kb) == 1) return static_cast<uint64_t>(kb) * 1024;
  }
  throw std::runtime_error("no mapping holds the address");
}

void touch_all(const void* p, uint64_t n) {
  volatile unsigned char sink = 0;
  const auto* b = static_cast<const unsigned char*>(p);
  for (uint64_t i = 0; i < n; i += kPage) sink = sink + b[i];
  sink = sink + b[n - 1];
}

TEST(MappedRelease, ReleasedTensorsLeaveRssKeepSharedPagesAndReadBack) {
  test::ScratchDir dir("release");
  // About 40 MiB: big tensors of odd sizes so that no boundary is page
  // aligned, and a tiny tensor sharing pages with its neighbours.
  const std::vector<std::pair<std::string, int64_t>> shapes = {
      {"a", 10 * 262144 + 25}, {"n", 10}, {"b", 10 * 262144 + 3}, {"c", 10 * 262144 + 7}, {"d", 10 * 262144}};
  std::vector<TensorSpec> plan;
  for (const auto& [name, numel] : shapes) plan.push_back({name, DType::F32, {numel}});
  std::vector<std::vector<float>> values;
  {
    SafetensorsWriter w(dir.path(), plan, {}, UINT64_MAX, "model");
    for (size_t t = 0; t < shapes.size(); ++t) {
      std::vector<float> v(static_cast<size_t>(shapes[t].second));
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(t * 1000003 + i % 65521);
      w.write_f32(shapes[t].first, v.data(), static_cast<int64_t>(v.size()));
      values.push_back(std::move(v));
    }
    w.finish();
  }
  const auto st = SafetensorsModel::open(dir.path());
  const SafetensorsFile& f = st->file_of("a");
  auto span = [&](const std::string& name) {
    const TensorInfo& t = st->info(name);
    return std::pair<const unsigned char*, uint64_t>(static_cast<const unsigned char*>(f.data(t)), t.nbytes);
  };
  const auto* base = static_cast<const unsigned char*>(f.data(st->info("a"))) - st->info("a").offset;
  for (const auto& [name, numel] : shapes) touch_all(span(name).first, span(name).second);
  const uint64_t before = mapping_rss(base);
  ASSERT_GE(before, 39ull << 20) << "the test file's pages should all be resident";

  const uint64_t advised = st->release({"a", "c"});
  const uint64_t after = mapping_rss(base);
  const uint64_t released_bytes = st->info("a").nbytes + st->info("c").nbytes;
  EXPECT_GE(advised, released_bytes - 4 * kPage);  // only the edge pages kept
  EXPECT_LE(advised, released_bytes);
  EXPECT_GE(before - after, advised) << "before " << before << " after " << after;
  std::printf("mapping RSS %.1f MiB -> %.1f MiB after releasing a and c (%.1f MiB advised)\n", before / 1048576.0,
              after / 1048576.0, advised / 1048576.0);

  // Interior pages are gone; pages shared with the header, with "n" and with
  // "b"/"d" at the edges stay, as do the kept tensors.
  const auto [a, a_len] = span("a");
  const auto [c, c_len] = span("c");
  EXPECT_FALSE(test::page_mapped(a + a_len / 2));
  EXPECT_FALSE(test::page_mapped(c + c_len / 2));
  EXPECT_TRUE(test::page_mapped(a));              // shares its page with the header
  EXPECT_TRUE(test::page_mapped(a + a_len - 1));  // shares its page with "n"
  EXPECT_TRUE(test::page_mapped(c));              // shares its page with "b"
  EXPECT_TRUE(test::page_mapped(c + c_len - 1));  // shares its page with "d"
  EXPECT_TRUE(test::page_mapped(span("b").first + span("b").second / 2));
  EXPECT_TRUE(test::page_mapped(span("d").first + span("d").second / 2));

  // Released tensors read back unchanged; releasing twice is harmless.
  EXPECT_EQ(st->read_f32("a"), values[0]);
  EXPECT_EQ(st->read_f32("c"), values[3]);
  EXPECT_EQ(st->read_f32("n"), values[1]);
  st->release({"a", "c"});
  EXPECT_EQ(st->read_f32("c"), values[3]);
}

TEST(MappedRelease, ModelReleaseBlockDropsItsPagesAndReloadsTheSameWeights) {
  const Model model(test::demo_model_dir());
  const BlockWeights w = model.load_block(1);
  // The largest tensor of the block spans several pages; its middle one is
  // resident after the load and gone after the release.
  std::string widest;
  uint64_t bytes = 0;
  for (const auto& l : block_linears(model.config())) {
    const std::string name = block_prefix(1) + l.name + ".weight";
    if (model.tensors().info(name).nbytes > bytes) bytes = model.tensors().info(name).nbytes, widest = name;
  }
  ASSERT_GE(bytes, 4 * kPage) << "the demo model's tensors are too small to have interior pages";
  const TensorInfo& t = model.tensors().info(widest);
  const auto* mid = static_cast<const unsigned char*>(model.tensors().file_of(widest).data(t)) + t.nbytes / 2;
  EXPECT_TRUE(test::page_mapped(mid));
  EXPECT_GT(model.release_block(1), 0u);
  EXPECT_FALSE(test::page_mapped(mid));
  EXPECT_EQ(model.block_stored_bytes(1) > 0, true);
  const BlockWeights again = model.load_block(1);
  for (const auto& [name, lin] : w.linears) EXPECT_EQ(lin.w, again.linears.at(name).w) << name;
  EXPECT_EQ(w.input_norm, again.input_norm);
}

}  // namespace
}  // namespace streamq
