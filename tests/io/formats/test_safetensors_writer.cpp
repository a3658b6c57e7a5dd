// SafetensorsWriter: round trips of every dtype, sharding with an index,
// out-of-order and concurrent writes, and cleanup when a write never finishes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "src/core/error.h"
#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

template <typename Fn>
void expect_input_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    for (const auto& frag : fragments)
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos)
          << "message '" << e.what() << "' lacks '" << frag << "'";
  }
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

int64_t numel_of(const TensorSpec& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

std::string random_bytes(std::mt19937_64& rng, uint64_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(SafetensorsWriter, RoundTripsEveryDtype) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<TensorSpec> plan = {
      {"a.f32", DType::F32, {3, 5}}, {"b.f16", DType::F16, {7}},     {"c.bf16", DType::BF16, {2, 2}},
      {"d.f64", DType::F64, {3}},    {"e.i32", DType::I32, {4}},     {"f.i16", DType::I16, {3}},
      {"g.i8", DType::I8, {5}},      {"h.u8", DType::U8, {2, 3, 1}}, {"i.empty", DType::F32, {0, 4}},
      {"j.scalar", DType::F32, {}}};
  test::ScratchDir dir("st-write");
  std::map<std::string, std::string> data;
  {
    SafetensorsWriter w(dir.path(), plan, {{"source", "test"}});
    for (auto it = plan.rbegin(); it != plan.rend(); ++it) {  // reverse order: offsets, not order, matter
      data[it->name] = random_bytes(rng, numel_of(*it) * dtype_size(it->dtype));
      w.write(it->name, data[it->name].data(), data[it->name].size());
    }
    w.finish();
    EXPECT_EQ(w.file_names(), (std::vector<std::string>{"model.safetensors"}));
  }
  EXPECT_EQ(dir_entries(dir.path()), (std::vector<std::string>{"model.safetensors"}));
  const std::string raw = test::read_all(dir.file("model.safetensors"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(raw[i]);
  EXPECT_EQ(header_len % 8, 0u);  // data starts 8-byte aligned, as the Rust writer pads it

  const auto m = SafetensorsModel::open(dir.path());
  const SafetensorsFile& f = m->file_of("a.f32");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("source"), "test");
  uint64_t expect_offset = 8 + header_len;
  for (const auto& spec : plan) {
    const TensorInfo& t = m->info(spec.name);
    EXPECT_EQ(t.dtype, spec.dtype) << spec.name;
    EXPECT_EQ(t.shape, spec.shape) << spec.name;
    EXPECT_EQ(t.offset, expect_offset) << spec.name << ": tensors are contiguous in plan order";
    expect_offset += t.nbytes;
    EXPECT_EQ(std::string(static_cast<const char*>(f.data(t)), t.nbytes), data[spec.name]) << spec.name;
  }
  EXPECT_EQ(expect_offset, raw.size());
  expect_input_error([&] { m->read_f32("g.i8"); }, {"model.safetensors", "'g.i8'", "I8"});
}

TEST(SafetensorsWriter, ShardsWithIndexAndOutOfOrderWrites) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // 64-byte tensors and one 400-byte one, 150-byte shards: [t0 t1] [t2] [t3] [t4 t5].
  const std::vector<TensorSpec> plan = {{"t0", DType::F32, {16}},   {"t1", DType::F16, {32}},
                                        {"t2", DType::BF16, {8, 4}}, {"t3", DType::F32, {10, 10}},
                                        {"t4", DType::F64, {8}},    {"t5", DType::F32, {4, 4}}};
  test::ScratchDir dir("st-shard");
  const std::string out = dir.file("out");
  std::map<std::string, std::vector<float>> values;
  {
    SafetensorsWriter w(out, plan, {}, 150, "model");
    const std::vector<std::string> names = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                            "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    EXPECT_EQ(w.file_names(), names);
    std::vector<TensorSpec> order = plan;
    std::shuffle(order.begin(), order.end(), rng);
    std::normal_distribution<float> normal;
    for (const auto& spec : order) {
      auto& v = values[spec.name];
      for (int64_t i = 0; i < numel_of(spec); ++i) v.push_back(normal(rng));
      w.write_f32(spec.name, v.data(), static_cast<int64_t>(v.size()));
    }
    for (const auto& e : dir_entries(out))  // nothing under a final name before finish()
      EXPECT_NE(e.find(".tmp." + std::to_string(getpid())), std::string::npos) << e;
    w.finish();
    std::vector<std::string> expect = names;
    expect.push_back("model.safetensors.index.json");
    EXPECT_EQ(dir_entries(out), expect);
  }
  const json index = json::parse(test::read_all(out + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 64u * 5 + 400);
  EXPECT_EQ(index["weight_map"]["t1"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t3"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t5"], "model-00004-of-00004.safetensors");

  const auto m = SafetensorsModel::open(out);
  ASSERT_EQ(m->tensor_names().size(), plan.size());
  for (const auto& spec : plan) {
    const std::vector<float> back = m->read_f32(spec.name);
    const std::vector<float>& v = values[spec.name];
    ASSERT_EQ(back.size(), v.size()) << spec.name;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float expect = spec.dtype == DType::F16    ? f16_to_f32(f32_to_f16(v[i]))
                           : spec.dtype == DType::BF16 ? bf16_to_f32(f32_to_bf16(v[i]))
                                                       : v[i];
      ASSERT_EQ(back[i], expect) << spec.name << "[" << i << "]";
    }
  }

  // A later single-file write to the same place drops the now-stale index.
  SafetensorsWriter w(out, {{"only", DType::F32, {1}}}, {});
  const float one = 1.0f;
  w.write_f32("only", &one, 1);
  w.finish();
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_EQ(SafetensorsModel::open(out)->tensor_names(), (std::vector<std::string>{"only"}));
}

TEST(SafetensorsWriter, WithoutFinishLeavesNothing) {
  test::ScratchDir dir("st-abandon");
  {
    SafetensorsWriter w(dir.path(), {{"x", DType::F32, {2}}, {"y", DType::F32, {1000}}}, {}, 16);
    const float v[2] = {1, 2};
    w.write_f32("x", v, 2);
    EXPECT_EQ(dir_entries(dir.path()).size(), 2u);
  }
  EXPECT_TRUE(dir_entries(dir.path()).empty());
}

TEST(SafetensorsWriter, FinishNamesMissingTensors) {
  test::ScratchDir dir("st-missing");
  {
    SafetensorsWriter w(dir.path(), {{"x", DType::F32, {2}}, {"y.bias", DType::F32, {1}}, {"z", DType::U8, {3}}},
                        {});
    const float v[2] = {1, 2};
    w.write_f32("x", v, 2);
    try {
      w.finish();
      FAIL() << "expected InternalError";
    } catch (const InternalError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'y.bias'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("'z'"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("'x'"), std::string::npos) << msg;
    }
  }
  EXPECT_TRUE(dir_entries(dir.path()).empty());
}

TEST(SafetensorsWriter, RejectsBadWrites) {
  test::ScratchDir dir("st-badwrite");
  SafetensorsWriter w(dir.path(), {{"x", DType::F32, {2}}, {"q", DType::I8, {4}}}, {});
  const float v[2] = {1, 2};
  expect_input_error([&] { w.write("nope", v, 8); }, {"'nope'", "not in the write plan"});
  expect_input_error([&] { w.write("x", v, 4); }, {"'x'", "4 bytes"});
  expect_input_error([&] { w.write_f32("x", v, 1); }, {"'x'", "1 values"});
  expect_input_error([&] { w.write_f32("q", v, 2); }, {"'q'", "I8"});
  w.write("x", v, 8);  // failed attempts did not count as writes
  EXPECT_THROW(w.write("x", v, 8), InternalError);
  expect_input_error([&] { SafetensorsWriter(dir.file("d"), {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}, {}); },
                     {"'a'", "twice"});
}

// A tensor written in row panels (the rotated embedding and head of a
// quantize --rotate job) reads back as one write of it would, in a dtype
// that rounds; parts out of order, past the end or mixed with a whole write
// are refused, and a tensor missing its last part is named by finish().
TEST(SafetensorsWriter, PartsInOrderMakeTheTensor) {
  test::ScratchDir dir("st-parts");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> v(5 * 7);
  for (float& x : v) x = nd(rng);
  {
    SafetensorsWriter whole(dir.file("whole"), {{"t", DType::BF16, {5, 7}}}, {});
    whole.write_f32("t", v.data(), 35);
    whole.finish();
  }
  {
    SafetensorsWriter parts(dir.file("parts"), {{"t", DType::BF16, {5, 7}}, {"u", DType::F32, {4}}}, {});
    expect_input_error([&] { parts.write_f32_part("t", 7, v.data() + 7, 7); }, {"'t'", "[7, 14)", "in order"});
    parts.write_f32_part("t", 0, v.data(), 14);
    expect_input_error([&] { parts.write_f32_part("t", 14, v.data() + 14, 22); }, {"'t'", "[14, 36)"});
    EXPECT_THROW(parts.write_f32("t", v.data(), 35), InternalError);  // already partly written
    try {
      parts.finish();
      FAIL() << "expected InternalError";
    } catch (const InternalError& e) {
      EXPECT_NE(std::string(e.what()).find("'t'"), std::string::npos) << e.what();
    }
    parts.write_f32_part("t", 14, v.data() + 14, 21);
    EXPECT_THROW(parts.write_f32_part("t", 35, v.data(), 1), InternalError);  // complete: a write twice
    const float u[4] = {1, 2, 3, 4};
    parts.write_f32_part("u", 0, u, 4);
    parts.finish();
  }
  const auto a = SafetensorsModel::open(dir.file("whole"));
  const auto b = SafetensorsModel::open(dir.file("parts"));
  EXPECT_EQ(a->read_f32("t"), b->read_f32("t"));
  EXPECT_EQ(b->read_f32("u"), (std::vector<float>{1, 2, 3, 4}));
}

// Writes of distinct tensors from many threads land intact (pwrite at fixed
// offsets, only the bookkeeping is locked).
TEST(SafetensorsWriter, ConcurrentWrites) {
  test::ScratchDir dir("st-threads");
  std::vector<TensorSpec> plan;
  for (int i = 0; i < 64; ++i) {
    std::string name = "t";  // not "t" + to_string(i): GCC 12 warns falsely (-Wrestrict, PR 105329)
    name += std::to_string(i);
    plan.push_back({name, DType::F32, {1000 + i}});
  }
  {
    SafetensorsWriter w(dir.path(), plan, {}, 40000);
    std::vector<std::thread> threads;
    for (int k = 0; k < 8; ++k)
      threads.emplace_back([&, k] {
        for (int i = k; i < 64; i += 8) {
          std::vector<float> v(1000 + i, static_cast<float>(i));
          w.write_f32(plan[i].name, v.data(), static_cast<int64_t>(v.size()));
        }
      });
    for (auto& t : threads) t.join();
    w.finish();
  }
  const auto m = SafetensorsModel::open(dir.path());
  for (int i = 0; i < 64; ++i) {
    const std::vector<float> v = m->read_f32(plan[i].name, 1000 + i);
    ASSERT_TRUE(std::all_of(v.begin(), v.end(), [&](float x) { return x == i; })) << plan[i].name;
  }
}

// An I/O failure (here EFBIG from a file-size limit, standing in for ENOSPC)
// is an InternalError naming the file and the system's reason, and leaves no
// temporaries behind.
TEST(SafetensorsWriter, IoErrorNamesFileAndReason) {
  test::ScratchDir dir("st-efbig");
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct Restore {
    rlimit lim;
    void (*handler)(int);
    ~Restore() {
      setrlimit(RLIMIT_FSIZE, &lim);
      signal(SIGXFSZ, handler);
    }
  } restore{old, signal(SIGXFSZ, SIG_IGN)};  // EFBIG instead of a fatal signal
  struct rlimit small = old;
  small.rlim_cur = 1 << 16;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  try {
    SafetensorsWriter w(dir.path(), {{"big", DType::F32, {1 << 20}}}, {});
    FAIL() << "expected InternalError";
  } catch (const InternalError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors.tmp."), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  }
  EXPECT_TRUE(dir_entries(dir.path()).empty());
}

}  // namespace
}  // namespace streamq
