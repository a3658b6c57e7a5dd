// A block's stages run as the task graph in quantize.cpp declares them
// (issue 13): per sub-layer group, true-sequential, stats -> factor -> the
// group's sweeps -> the next group's stats; the block file and the
// propagation only after the last linear; checked on the spans a traced job
// records, on the CPU and on the emulated device. The block file and the
// propagation may overlap (they are independent tasks); whether they do in
// a run is scheduling, so it is not asserted.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace streamq {
namespace {

struct Span {
  std::string name;
  double begin = 0, end = 0;
};

// The trace's complete spans by block (those with a "block" argument).
std::map<int64_t, std::vector<Span>> spans_by_block(const std::string& trace_path) {
  const auto j = nlohmann::json::parse(test::read_all(trace_path));
  std::map<int64_t, std::vector<Span>> out;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] != "X" || !e.contains("args") || !e["args"].contains("block")) continue;
    const double ts = e["ts"].get<double>();
    out[e["args"]["block"].get<int64_t>()].push_back({e["name"].get<std::string>(), ts, ts + e["dur"].get<double>()});
  }
  return out;
}

// The sub-layer group (0 qkv, 1 o, 2 gate_up, 3 down) a stats, factor or
// quantize span belongs to; -1 for other spans.
int group_of(const std::string& name) {
  static const std::vector<std::pair<std::string, int>> kGroups = {
      {"stats qkv", 0},          {"factor qkv", 0},           {"quantize self_attn.q_proj", 0},
      {"quantize self_attn.k_proj", 0}, {"quantize self_attn.v_proj", 0}, {"stats o", 1},
      {"factor o", 1},           {"quantize self_attn.o_proj", 1}, {"stats gate_up", 2},
      {"factor gate_up", 2},     {"quantize mlp.gate_proj", 2}, {"quantize mlp.up_proj", 2},
      {"stats down", 3},         {"factor down", 3},          {"quantize mlp.down_proj", 3}};
  for (const auto& [n, g] : kGroups)
    if (name == n) return g;
  return -1;
}

int stage_of(const std::string& name) {  // 0 stats, 1 factor, 2 sweep
  if (name.rfind("stats ", 0) == 0) return 0;
  if (name.rfind("factor ", 0) == 0) return 1;
  return 2;
}

void check_block_order(int64_t block, const std::vector<Span>& spans) {
  SCOPED_TRACE("block " + std::to_string(block));
  // (group, stage) -> [first begin, last end]
  std::map<std::pair<int, int>, std::pair<double, double>> range;
  double last_sweep_end = 0, block_file_begin = -1, first_propagate_begin = -1;
  for (const Span& s : spans) {
    const int g = group_of(s.name);
    if (g >= 0) {
      auto [it, fresh] = range.try_emplace({g, stage_of(s.name)}, s.begin, s.end);
      if (!fresh) it->second = {std::min(it->second.first, s.begin), std::max(it->second.second, s.end)};
      if (stage_of(s.name) == 2) last_sweep_end = std::max(last_sweep_end, s.end);
    }
    if (s.name == "write block file") block_file_begin = s.begin;
    if (s.name == "forward quant" && (first_propagate_begin < 0 || s.begin < first_propagate_begin))
      first_propagate_begin = s.begin;
  }
  ASSERT_EQ(range.size(), 12u) << "stats, factor and sweeps of four groups";
  for (int g = 0; g < 4; ++g) {
    SCOPED_TRACE("group " + std::to_string(g));
    const auto& stats = range[std::make_pair(g, 0)];
    const auto& factor = range[std::make_pair(g, 1)];
    const auto& sweeps = range[std::make_pair(g, 2)];
    EXPECT_LE(stats.second, factor.first) << "the factor starts after the last stats chunk";
    EXPECT_LE(factor.second, sweeps.first) << "the sweeps start after the factor";
    if (g + 1 < 4) {
      EXPECT_LE(sweeps.second, range[std::make_pair(g + 1, 0)].first) << "true-sequential: the next group's stats";
    }
  }
  ASSERT_GE(block_file_begin, 0) << "no block file span";
  ASSERT_GE(first_propagate_begin, 0) << "no propagation span";
  EXPECT_LE(last_sweep_end, block_file_begin);
  EXPECT_LE(last_sweep_end, first_propagate_begin);
}

TEST(BlockGraph, StagesRunInTheDeclaredOrderOnEveryDevice) {
  test::ScratchDir dir("block-graph");
  for (const std::string device : {"cpu", "emulated"}) {
    SCOPED_TRACE(device);
    const std::string trace = dir.file(device + ".trace.json");
    std::vector<std::string> args = {"quantize", "--model", test::demo_model_dir(), "--out", dir.file(device),
                                     "--calib", test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin",
                                     "--nsamples", "8", "--seqlen", "128", "--method", "gptaq", "--cae",
                                     "--trace", trace, "--quiet", "--device", device};
    if (device == "emulated") args.insert(args.end(), {"--gpu-mem-limit", "256MiB"});
    const auto r = test::run_streamq(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto blocks = spans_by_block(trace);
    for (int64_t b = 0; b < 5; ++b) {  // stories260K's blocks (spans of boundary 5 are its puts)
      ASSERT_TRUE(blocks.count(b)) << "no spans of block " << b;
      check_block_order(b, blocks.at(b));
    }
  }
}

}  // namespace
}  // namespace streamq
