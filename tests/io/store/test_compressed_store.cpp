// The compressed activation store: round trips over both I/O paths, both
// storage dtypes and shuffle on/off with chunks of odd sizes; drop, overwrite,
// stats; byte-identical files; concurrent puts and gets; and corrupt or
// truncated chunk files failing with an error that names block, flow, chunk.
#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/store/byte_shuffle.h"
#include "io/store/compressed_store.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

bool uring_available() {
  std::string why;
  return make_uring_backend(8, &why) != nullptr;
}

// Activation-like values: gaussian with a few outliers and special values.
std::vector<float> make_chunk(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  for (size_t i = 0; i < n; i += 997) v[i] *= 300.0f;
  if (n > 10) {
    v[1] = std::numeric_limits<float>::infinity();
    v[3] = -0.0f;
    v[5] = std::numeric_limits<float>::quiet_NaN();
    v[7] = 1e-40f;  // subnormal
  }
  return v;
}

// What the store must give back: the input itself (f32) or its bf16 rounding.
std::vector<float> expected(const std::vector<float>& in, DType storage) {
  if (storage == DType::F32) return in;
  std::vector<float> out(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(in[i]));
  return out;
}

// Bitwise, so NaN and -0 count.
void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  if (!a.empty()) {
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what;
  }
}

void expect_names(const std::exception& e, int64_t block, const char* flow, int64_t chunk) {
  const std::string msg = e.what();
  EXPECT_NE(msg.find("block " + std::to_string(block) + ","), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::string("flow ") + flow), std::string::npos) << msg;
  EXPECT_NE(msg.find("chunk " + std::to_string(chunk)), std::string::npos) << msg;
}

// Small slabs so that chunks span many requests and reads run ahead.
CompressedStoreOptions small_options(const std::string& dir, IoPath io, DType storage, bool shuffle) {
  CompressedStoreOptions o;
  o.dir = dir;
  o.io = io;
  o.storage = storage;
  o.shuffle = shuffle;
  o.slab_bytes = 64 << 10;
  o.slabs = 8;
  o.read_ahead = 3;
  return o;
}

// Sizes not multiple of 4096 bytes, below and above a shuffle segment
// (131072 values) and a slab; 0 and 1 too.
const std::vector<size_t> kSizes = {0, 1, 7, 1000, 4097, 65537, 131073, 300001};

using Param = std::tuple<IoPath, DType, bool>;

class StoreRoundTrip : public ::testing::TestWithParam<Param> {};

TEST_P(StoreRoundTrip, ChunksOfOddSizesBlocksFlowsDrop) {
  const auto [io, storage, shuffle] = GetParam();
  if (io == IoPath::Uring && !uring_available()) GTEST_SKIP() << "io_uring unavailable here";
  test::ScratchDir dir("cstore");
  auto s = open_compressed_store(small_options(dir.file("acts"), io, storage, shuffle));
  std::map<std::tuple<int64_t, int, int64_t>, std::vector<float>> put;
  uint64_t seed = 1;
  for (int64_t b = 0; b < 3; ++b)
    for (Flow f : {Flow::Fp, Flow::Quant})
      for (int64_t c = 0; c < static_cast<int64_t>(kSizes.size()); ++c) {
        auto v = make_chunk(kSizes[static_cast<size_t>(c + b) % kSizes.size()], seed++);
        s->put(b, f, c, v.data(), static_cast<int64_t>(v.size()));
        put[{b, static_cast<int>(f), c}] = std::move(v);
      }
  std::vector<float> out;
  for (const auto& [key, v] : put) {
    const auto [b, f, c] = key;
    s->get(b, static_cast<Flow>(f), c, &out);
    expect_same_bits(out, expected(v, storage), "block " + std::to_string(b) + " chunk " + std::to_string(c));
  }
  // Overwriting a chunk replaces it.
  const auto again = make_chunk(5000, 999);
  s->put(1, Flow::Quant, 2, again.data(), 5000);
  s->get(1, Flow::Quant, 2, &out);
  expect_same_bits(out, expected(again, storage), "overwritten chunk");
  put[{1, 1, 2}] = again;

  s->flush();
  uint64_t on_disk = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.file("acts"))) on_disk += f.file_size();
  EXPECT_EQ(s->bytes_held(), on_disk);
  const StoreStats st1 = s->stats(1);
  EXPECT_EQ(st1.chunks, 2 * static_cast<int64_t>(kSizes.size()));

  s->drop(1);
  EXPECT_EQ(s->stats(1).chunks, 0);
  EXPECT_FALSE(std::filesystem::exists(compressed_chunk_path(dir.file("acts"), 1, Flow::Fp, 0)));
  try {
    s->get(1, Flow::Fp, 3, &out);
    FAIL() << "dropped chunk still readable";
  } catch (const InternalError& e) {
    expect_names(e, 1, "fp", 3);
  }
  s->get(2, Flow::Quant, 4, &out);  // other blocks untouched
  expect_same_bits(out, expected(put[{2, 1, 4}], storage), "block 2 after dropping block 1");
  s.reset();
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("acts")));  // its files go with it
}

INSTANTIATE_TEST_SUITE_P(Paths, StoreRoundTrip,
                         ::testing::Combine(::testing::Values(IoPath::Uring, IoPath::Posix),
                                            ::testing::Values(DType::F32, DType::BF16), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_" +
                                  dtype_name(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_shuffle" : "_plain");
                         });

TEST(CompressedStore, SamePutsGiveIdenticalFilesOnEitherPath) {
  test::ScratchDir dir("cstore-det");
  std::vector<std::string> dirs;
  int variant = 0;
  for (IoPath io : {IoPath::Auto, IoPath::Posix}) {
    for (uint32_t slab : {64u << 10, 1u << 20}) {
      CompressedStoreOptions o = small_options(dir.file("v" + std::to_string(variant++)), io, DType::BF16, true);
      o.slab_bytes = slab;
      o.keep_files = true;
      // One variant on a single thread: frames are compressed in parallel
      // otherwise, and the bytes must not notice.
      std::optional<tbb::global_control> one_thread;
      if (variant == 2) one_thread.emplace(tbb::global_control::max_allowed_parallelism, 1);
      auto s = open_compressed_store(o);
      for (int64_t c = 0; c < 4; ++c) {
        const auto v = make_chunk(170001 * (c + 1), 42 + c);  // up to 3 frames
        s->put(0, Flow::Fp, c, v.data(), static_cast<int64_t>(v.size()));
      }
      s->flush();
      dirs.push_back(o.dir);
    }
  }
  for (int64_t c = 0; c < 4; ++c) {
    const std::string ref = test::read_all(compressed_chunk_path(dirs[0], 0, Flow::Fp, c));
    for (size_t d = 1; d < dirs.size(); ++d)
      EXPECT_EQ(test::read_all(compressed_chunk_path(dirs[d], 0, Flow::Fp, c)), ref) << dirs[d] << " chunk " << c;
  }
}

// Tiny frames: hundreds of them, a header over several 4096-byte blocks.
TEST(CompressedStore, ManyFramesAndALongHeader) {
  test::ScratchDir dir("cstore-frames");
  for (DType storage : {DType::F32, DType::BF16}) {
    CompressedStoreOptions o = small_options(dir.file("acts"), IoPath::Auto, storage, true);
    o.frame_elems = 64;
    auto s = open_compressed_store(o);
    const auto v = make_chunk(30011, 5);  // 469 frames, the last partial
    s->put(0, Flow::Fp, 0, v.data(), static_cast<int64_t>(v.size()));
    std::vector<float> out;
    s->get(0, Flow::Fp, 0, &out);
    expect_same_bits(out, expected(v, storage), dtype_name(storage));
    EXPECT_EQ(s->stats().file_bytes % 4096, 0u);
    EXPECT_GT(s->stats().file_bytes - s->stats().compressed_bytes, 4096u);  // the header spans blocks
  }
}

TEST(CompressedStore, ConcurrentPutsAndGets) {
  test::ScratchDir dir("cstore-mt");
  auto s = open_compressed_store(small_options(dir.file("acts"), IoPath::Auto, DType::BF16, true));
  constexpr int kThreads = 4, kChunks = 12;
  std::vector<std::thread> threads;
  std::vector<std::string> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        std::vector<float> out;
        for (int c = 0; c < kChunks; ++c) {
          const auto v = make_chunk(20000 + 997 * c, 100 * t + c);
          s->put(t, Flow::Fp, c, v.data(), static_cast<int64_t>(v.size()));
          if (c % 3 == 2) {  // read back an earlier one while others write
            s->get(t, Flow::Fp, c - 1, &out);
            const auto want = expected(make_chunk(20000 + 997 * (c - 1), 100 * t + c - 1), DType::BF16);
            if (out.size() != want.size() || std::memcmp(out.data(), want.data(), out.size() * 4) != 0)
              failures[t] = "mismatch in thread " + std::to_string(t);
          }
        }
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& f : failures) EXPECT_EQ(f, "");
  s->flush();
  std::vector<float> out;
  for (int t = 0; t < kThreads; ++t)
    for (int c = 0; c < kChunks; ++c) {
      s->get(t, Flow::Fp, c, &out);
      expect_same_bits(out, expected(make_chunk(20000 + 997 * c, 100 * t + c), DType::BF16), "after threads");
    }
  EXPECT_EQ(s->stats().chunks, kThreads * kChunks);
}

TEST(CompressedStore, RejectsStorageDtypesOtherThanF32AndBf16) {
  test::ScratchDir dir("cstore-opt");
  CompressedStoreOptions o;
  o.dir = dir.file("acts");
  o.storage = DType::F16;
  EXPECT_THROW(open_compressed_store(o), InputError);
}

// ---- damaged files

class DamagedChunk : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = open_compressed_store(small_options(dir_.file("acts"), IoPath::Auto, DType::BF16, true));
    data_ = make_chunk(200001, 7);
    store_->put(2, Flow::Quant, 5, data_.data(), static_cast<int64_t>(data_.size()));
    store_->put(2, Flow::Quant, 6, data_.data(), 1000);
    store_->flush();
    path_ = compressed_chunk_path(dir_.file("acts"), 2, Flow::Quant, 5);
  }
  void flip(uint64_t offset) {
    std::string bytes = test::read_all(path_);
    ASSERT_LT(offset, bytes.size());
    bytes[offset] = static_cast<char>(bytes[offset] ^ 0x10);
    test::write_all(path_, bytes);
  }
  // get() must throw, name the chunk and `why`, and not be a silent success.
  void expect_corrupt(const std::string& why) {
    std::vector<float> out;
    try {
      store_->get(2, Flow::Quant, 5, &out);
      FAIL() << "damaged chunk read without error";
    } catch (const StoreCorruptionError& e) {
      expect_names(e, 2, "quant", 5);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
    }
  }
  test::ScratchDir dir_{"cstore-bad"};
  std::unique_ptr<CompressedStore> store_;
  std::vector<float> data_;
  std::string path_;
};

TEST_F(DamagedChunk, FlippedPayloadByte) {
  const uint64_t size = std::filesystem::file_size(path_);
  for (uint64_t off : {uint64_t{4096}, uint64_t{4096 + 50000}, size - 5000}) {
    SetUp();
    flip(off);
    std::vector<float> out;
    // The zstd frame may break first or the checksums catch it: either way an error.
    EXPECT_THROW(store_->get(2, Flow::Quant, 5, &out), StoreCorruptionError) << "offset " << off;
  }
}

TEST_F(DamagedChunk, FlippedHeaderBytes) {
  flip(0);
  expect_corrupt("bad magic");
  SetUp();
  flip(17);  // inside the block number
  expect_corrupt("header checksum mismatch");
  SetUp();
  flip(3000);  // in the zero padding: still covered
  expect_corrupt("header checksum mismatch");
}

TEST_F(DamagedChunk, Truncated) {
  const uint64_t size = std::filesystem::file_size(path_);
  for (uint64_t keep : {size - 4096, size / 2, uint64_t{4096}, uint64_t{100}, uint64_t{0}}) {
    SetUp();
    ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(keep)), 0);
    SCOPED_TRACE("kept " + std::to_string(keep));
    expect_corrupt("truncated");
  }
}

TEST_F(DamagedChunk, AnotherChunksFile) {
  std::filesystem::copy_file(compressed_chunk_path(dir_.file("acts"), 2, Flow::Quant, 6), path_,
                             std::filesystem::copy_options::overwrite_existing);
  expect_corrupt("holds block 2, flow quant, chunk 6");
}

// adopt() reads headers with plain reads, not the engine, but must check them
// exactly as get() does and name the same things.
TEST(CompressedStore, AdoptChecksHeadersAsGetDoes) {
  test::ScratchDir dir("cstore-adopt");
  CompressedStoreOptions o = small_options(dir.file("acts"), IoPath::Auto, DType::F32, true);
  o.keep_files = true;
  o.frame_elems = 64;  // 469 frames: a two-block header, read in two parts
  const std::vector<float> data = make_chunk(30000, 11);
  const std::string path = compressed_chunk_path(o.dir, 4, Flow::Quant, 0);
  auto write_block = [&] {
    auto s = open_compressed_store(o);
    for (Flow f : {Flow::Fp, Flow::Quant}) s->put(4, f, 0, data.data(), static_cast<int64_t>(data.size()));
    s->put(4, Flow::Quant, 1, data.data(), 100);
    s->flush();
  };
  auto expect_adopt_fails = [&](const std::string& why) {
    auto s = open_compressed_store(o);
    try {
      s->adopt(4, 1, kAllFlows);
      FAIL() << "damaged chunk adopted without error";
    } catch (const StoreCorruptionError& e) {
      expect_names(e, 4, "quant", 0);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };

  write_block();
  {
    auto s = open_compressed_store(o);
    s->adopt(4, 1, kAllFlows);
    std::vector<float> out;
    s->get(4, Flow::Quant, 0, &out);
    expect_same_bits(out, data, "adopted chunk");
  }
  for (const off_t keep : {off_t{100}, off_t{4096}, off_t{8192}}) {
    SCOPED_TRACE("kept " + std::to_string(keep));
    write_block();
    ASSERT_EQ(::truncate(path.c_str(), keep), 0);
    expect_adopt_fails("truncated");
  }
  write_block();
  std::string bytes = test::read_all(path);
  bytes[5000] = static_cast<char>(bytes[5000] ^ 0x10);  // in the frame table's second block
  test::write_all(path, bytes);
  expect_adopt_fails("header checksum mismatch");
  write_block();
  std::filesystem::copy_file(compressed_chunk_path(o.dir, 4, Flow::Quant, 1), path,
                             std::filesystem::copy_options::overwrite_existing);
  expect_adopt_fails("holds block 4, flow quant, chunk 1");
}

TEST(ByteShuffle, PlanesMostSignificantFirstAndInverse) {
  const uint16_t in[3] = {0x1122, 0x3344, 0x5566};
  uint8_t out[6];
  byte_shuffle(in, out, 3, 2);
  const uint8_t want[6] = {0x11, 0x33, 0x55, 0x22, 0x44, 0x66};
  EXPECT_EQ(std::memcmp(out, want, 6), 0);
  std::mt19937 rng(3);
  for (size_t esz : {1, 2, 3, 4, 8}) {
    std::vector<uint8_t> v(esz * 1001), sh(v.size()), back(v.size());
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    byte_shuffle(v.data(), sh.data(), 1001, esz);
    EXPECT_EQ(sh[0], v[esz - 1]) << esz;  // element 0's most significant byte leads
    byte_unshuffle(sh.data(), back.data(), 1001, esz);
    EXPECT_EQ(back, v) << esz;
  }
}

}  // namespace
}  // namespace streamq
