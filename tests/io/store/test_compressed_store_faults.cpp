// The compressed store under a failing file layer (io/file/fault_injection.h), on
// both I/O paths: a full disk and I/O errors end in an error naming the file
// and the chunk with nothing reported as stored; short transfers, EINTR and
// EAGAIN are retried to a correct result; a filesystem without O_DIRECT and a
// machine without io_uring fall back.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/store/compressed_store.h"
#include "io/file/fault_injection.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

bool uring_available() {
  std::string why;
  return make_uring_backend(8, &why) != nullptr;
}

std::vector<float> make_chunk(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

std::vector<float> as_bf16(const std::vector<float>& in) {
  std::vector<float> out(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(in[i]));
  return out;
}

class StoreFaults : public ::testing::TestWithParam<IoPath> {
 protected:
  void SetUp() override {
    if (GetParam() == IoPath::Uring && !uring_available()) GTEST_SKIP() << "io_uring unavailable here";
  }
  std::unique_ptr<CompressedStore> open(const FaultPlan& plan) {
    injector_ = std::make_shared<FaultInjector>(plan);
    CompressedStoreOptions o;
    o.dir = dir_.file("acts");
    o.io = GetParam();
    o.slab_bytes = 64 << 10;
    o.slabs = 8;
    o.read_ahead = 4;
    auto inj = injector_;
    return open_compressed_store(o, [inj](std::unique_ptr<IoBackend> b) { return wrap_with_faults(std::move(b), inj); });
  }
  std::string path(int64_t b, Flow f, int64_t c) const { return compressed_chunk_path(dir_.file("acts"), b, f, c); }

  test::ScratchDir dir_{"cstore-fault"};
  std::shared_ptr<FaultInjector> injector_;
};

TEST_P(StoreFaults, DiskFullIsAClearErrorAndNothingIsStored) {
  FaultPlan plan;
  plan.write_budget = 100 << 10;  // the disk fills in the middle of the first chunk's payload
  auto s = open(plan);
  const auto v = make_chunk(300001, 1);
  try {
    // put() may already see it (when the write completed at once) or leave it to flush().
    s->put(0, Flow::Fp, 0, v.data(), static_cast<int64_t>(v.size()));
    s->flush();
    FAIL() << "a full disk went unnoticed";
  } catch (const InternalError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path(0, Flow::Fp, 0)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::strerror(ENOSPC)), std::string::npos) << msg;
    EXPECT_NE(msg.find("block 0, flow fp, chunk 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not stored"), std::string::npos) << msg;
  }
  EXPECT_EQ(s->stats().chunks, 0);
  EXPECT_EQ(s->bytes_held(), 0u);
  EXPECT_FALSE(std::filesystem::exists(path(0, Flow::Fp, 0)));  // its partial file is gone
  std::vector<float> out;
  EXPECT_THROW(s->get(0, Flow::Fp, 0, &out), InternalError);
  EXPECT_THROW(s->flush(), InternalError);  // a checkpoint must not go past a missing chunk

  // Space comes back: the chunk can be stored again.
  injector_->set_plan({});
  s->put(0, Flow::Fp, 0, v.data(), static_cast<int64_t>(v.size()));
  s->flush();
  s->get(0, Flow::Fp, 0, &out);
  EXPECT_EQ(out, as_bf16(v));
}

TEST_P(StoreFaults, IoErrorOnTheKthWriteNamesTheChunk) {
  FaultPlan plan;
  plan.error = EIO;
  plan.fail_write_at = 9;  // in the second or third chunk (each is a few slabs plus a header)
  auto s = open(plan);
  std::map<int64_t, std::vector<float>> stored;
  int errors = 0;
  auto check = [&](const InternalError& e) {
    ++errors;
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::strerror(EIO)), std::string::npos) << msg;
    EXPECT_NE(msg.find("block 3, flow quant, chunk"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir_.file("acts")), std::string::npos) << msg;
  };
  for (int64_t c = 0; c < 5; ++c) {
    auto v = make_chunk(150000, 10 + c);
    try {
      // A put reports an earlier chunk's failure, before storing its own.
      s->put(3, Flow::Quant, c, v.data(), 150000);
      stored[c] = std::move(v);
    } catch (const InternalError& e) {
      check(e);
    }
  }
  try {
    s->flush();
  } catch (const InternalError& e) {
    check(e);
  }
  EXPECT_GE(errors, 1);
  // Exactly the failed chunk is missing; the others read back intact.
  std::vector<float> out;
  int readable = 0;
  for (const auto& [c, v] : stored) {
    try {
      s->get(3, Flow::Quant, c, &out);
      EXPECT_EQ(out, as_bf16(v));
      ++readable;
    } catch (const InternalError& e) {
      EXPECT_NE(std::string(e.what()).find("not stored"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(readable, static_cast<int>(stored.size()) - 1);
  EXPECT_EQ(s->stats(3).chunks, readable);
}

TEST_P(StoreFaults, ReadErrorIsReportedAndTransient) {
  FaultPlan plan;
  plan.error = EIO;
  plan.fail_read_at = 2;
  auto s = open(plan);
  const auto v = make_chunk(250000, 3);
  s->put(1, Flow::Fp, 4, v.data(), static_cast<int64_t>(v.size()));
  std::vector<float> out;
  try {
    s->get(1, Flow::Fp, 4, &out);
    FAIL() << "read error went unnoticed";
  } catch (const StoreCorruptionError& e) {
    FAIL() << "an I/O error is not corruption: " << e.what();
  } catch (const InternalError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("block 1, flow fp, chunk 4"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path(1, Flow::Fp, 4)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::strerror(EIO)), std::string::npos) << msg;
  }
  s->get(1, Flow::Fp, 4, &out);  // the next read succeeds
  EXPECT_EQ(out, as_bf16(v));
}

TEST_P(StoreFaults, ShortTransfersAndInterruptsAreRetried) {
  FaultPlan plan;
  plan.max_transfer = 12 << 10;  // every 64 KiB request comes back short, several times
  plan.interrupt_every = 3;      // and every third op returns EINTR or EAGAIN
  auto s = open(plan);
  std::vector<std::vector<float>> chunks;
  for (int64_t c = 0; c < 3; ++c) {
    chunks.push_back(make_chunk(100003 * (c + 1), 20 + c));
    s->put(0, Flow::Quant, c, chunks.back().data(), static_cast<int64_t>(chunks.back().size()));
  }
  s->flush();
  std::vector<float> out;
  for (int64_t c = 0; c < 3; ++c) {
    s->get(0, Flow::Quant, c, &out);
    EXPECT_EQ(out, as_bf16(chunks[static_cast<size_t>(c)])) << c;
  }
  EXPECT_GT(injector_->counters().injected, 20);
}

TEST_P(StoreFaults, FilesystemWithoutODirectFallsBackToBufferedIo) {
  FaultPlan plan;
  plan.reject_direct = true;
  auto s = open(plan);
  const auto v = make_chunk(77777, 5);
  s->put(0, Flow::Fp, 0, v.data(), static_cast<int64_t>(v.size()));
  s->flush();
  std::vector<float> out;
  s->get(0, Flow::Fp, 0, &out);
  EXPECT_EQ(out, as_bf16(v));
  EXPECT_NE(s->io_description().find("buffered"), std::string::npos) << s->io_description();
}

INSTANTIATE_TEST_SUITE_P(Paths, StoreFaults, ::testing::Values(IoPath::Uring, IoPath::Posix),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(IoBackendChoice, FallsBackOrFailsWhenIoUringIsUnavailable) {
  const UringFactory broken = [](unsigned, std::string* why) -> std::unique_ptr<IoBackend> {
    *why = "io_uring_queue_init: Operation not permitted";
    return nullptr;
  };
  std::string reason;
  auto b = select_io_backend(IoPath::Auto, 8, &reason, broken);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name(), "posix");
  EXPECT_NE(reason.find("Operation not permitted"), std::string::npos);
  try {
    select_io_backend(IoPath::Uring, 8, &reason, broken);
    FAIL() << "--io uring accepted without io_uring";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("io_uring"), std::string::npos) << e.what();
  }
  reason.clear();
  EXPECT_EQ(select_io_backend(IoPath::Posix, 8, &reason)->name(), "posix");
  EXPECT_TRUE(reason.empty());
  EXPECT_EQ(parse_io_path("uring"), IoPath::Uring);
  EXPECT_THROW(parse_io_path("aio"), InputError);
}

}  // namespace
}  // namespace streamq
