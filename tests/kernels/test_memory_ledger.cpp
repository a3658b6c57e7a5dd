// The memory ledger every backend pool shares (kernels/memory_ledger.h) on the
// CPU, with a host allocator standing in for cudaMalloc: the limit is exact,
// refusals name what, how much and the flag and change nothing, the
// high-water mark is the true peak, and PoolBuffer returns what it holds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/memory_ledger.h"

namespace streamq {
namespace {

// Host memory standing in for the device, counting the calls; `fail_next`
// reports a full device, `throw_next` a broken one.
struct FakeDevice {
  int allocations = 0;
  int frees = 0;
  bool fail_next = false;
  bool throw_next = false;

  MemoryLedger ledger(uint64_t limit) {
    return MemoryLedger(
        limit,
        [this](uint64_t bytes, const std::string&) -> void* {
          if (throw_next) throw std::runtime_error("driver exploded");
          if (fail_next) return nullptr;
          ++allocations;
          return std::malloc(bytes);
        },
        [this](void* p) {
          ++frees;
          std::free(p);
        });
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(MemoryLedger, LimitIsExactAndRefusalChangesNothing) {
  FakeDevice dev;
  MemoryLedger ledger = dev.ledger(1000);
  void* a = ledger.allocate(600, "a");
  void* b = ledger.allocate(400, "b");  // exactly at the limit: allowed
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(ledger.in_use(), 1000u);
  EXPECT_THROW(ledger.allocate(1, "one byte more"), BudgetError);
  EXPECT_EQ(ledger.in_use(), 1000u);
  EXPECT_EQ(dev.allocations, 2);  // a refusal never reaches the device
  ledger.free(a, 600);
  EXPECT_EQ(ledger.in_use(), 400u);
  void* c = ledger.allocate(600, "c");
  EXPECT_EQ(ledger.in_use(), 1000u);
  ledger.free(b, 400);
  ledger.free(c, 600);
  EXPECT_EQ(ledger.in_use(), 0u);
  EXPECT_EQ(dev.frees, 3);
  EXPECT_EQ(ledger.high_water(), 1000u);
}

TEST(MemoryLedger, ErrorNamesWhatNeededAllowedInUseAndFlag) {
  MemoryLedger ledger(3ull << 30, [](uint64_t, const std::string&) { return reinterpret_cast<void*>(4096); },
                            [](void*) {});
  void* held = ledger.allocate(2ull << 30, "activations");
  try {
    ledger.allocate(1536ull << 20, "cuSOLVER workspace of inverse_upper_factor(n=14336)");
    FAIL() << "granted past the limit";
  } catch (const BudgetError& e) {
    const std::string m = e.what();
    for (const char* part :
         {"cuSOLVER workspace of inverse_upper_factor(n=14336)", "1.50 GiB", "1610612736 bytes",
          "2.00 GiB", "3.00 GiB", "1.00 GiB", "--gpu-mem-limit"})
      EXPECT_TRUE(contains(m, part)) << part << " missing from: " << m;
  }
  // A BudgetError is an InputError: the CLI exits 2.
  EXPECT_THROW(ledger.allocate(2ull << 30, "x"), InputError);
  ledger.free(held, 2ull << 30);
}

TEST(MemoryLedger, HighWaterIsThePeak) {
  FakeDevice dev;
  MemoryLedger ledger = dev.ledger(100);
  void* a = ledger.allocate(10, "a");
  void* b = ledger.allocate(30, "b");  // 40
  ledger.free(a, 10);                  // 30
  void* c = ledger.allocate(25, "c");  // 55: the peak
  ledger.free(b, 30);                  // 25
  void* d = ledger.allocate(20, "d");  // 45
  EXPECT_EQ(ledger.high_water(), 55u);
  EXPECT_EQ(ledger.in_use(), 45u);
  ledger.free(c, 25);
  ledger.free(d, 20);
  EXPECT_EQ(ledger.high_water(), 55u);
  EXPECT_EQ(ledger.in_use(), 0u);
}

TEST(MemoryLedger, ZeroBytesNeverReachTheDevice) {
  FakeDevice dev;
  MemoryLedger ledger = dev.ledger(0);
  EXPECT_EQ(ledger.allocate(0, "nothing"), nullptr);
  ledger.free(nullptr, 0);
  EXPECT_EQ(dev.allocations, 0);
  EXPECT_EQ(dev.frees, 0);
  EXPECT_THROW(ledger.allocate(1, "anything"), BudgetError);
}

TEST(MemoryLedger, DeviceFullBelowTheLimitIsReportedAndRolledBack) {
  FakeDevice dev;
  MemoryLedger ledger = dev.ledger(1000);
  void* a = ledger.allocate(100, "a");
  dev.fail_next = true;
  try {
    ledger.allocate(200, "prefetch buffer");
    FAIL() << "a full device was not reported";
  } catch (const BudgetError& e) {
    const std::string m = e.what();
    for (const char* part : {"no room", "prefetch buffer", "200 bytes", "--gpu-mem-limit"})
      EXPECT_TRUE(contains(m, part)) << part << " missing from: " << m;
  }
  EXPECT_EQ(ledger.in_use(), 100u);
  dev.fail_next = false;
  dev.throw_next = true;
  EXPECT_THROW(ledger.allocate(200, "b"), std::runtime_error);  // the allocator's own error
  EXPECT_EQ(ledger.in_use(), 100u);
  dev.throw_next = false;
  ledger.free(a, 100);
  EXPECT_EQ(ledger.in_use(), 0u);
}

TEST(MemoryLedger, PoolBufferReturnsItsBytesOnDestructionMoveAndReset) {
  FakeDevice dev;
  MemoryLedger ledger = dev.ledger(1 << 20);
  {
    PoolBuffer<double> a(ledger, 100, "a");
    EXPECT_EQ(a.size(), 100u);
    EXPECT_EQ(a.bytes(), 800u);
    EXPECT_EQ(ledger.in_use(), 800u);
    PoolBuffer<double> b = std::move(a);
    EXPECT_EQ(a.get(), nullptr);
    EXPECT_EQ(a.bytes(), 0u);
    EXPECT_EQ(ledger.in_use(), 800u);
    PoolBuffer<float> c(ledger, 10, "c");
    EXPECT_EQ(ledger.in_use(), 840u);
    PoolBuffer<double> d(ledger, 1, "d");
    d = std::move(b);  // d's 8 bytes go back, b's 800 move over
    EXPECT_EQ(ledger.in_use(), 840u);
    c.reset();
    EXPECT_EQ(ledger.in_use(), 800u);
  }
  EXPECT_EQ(ledger.in_use(), 0u);
  EXPECT_EQ(dev.allocations, dev.frees);
  EXPECT_EQ(ledger.high_water(), 848u);
  // Refused buffers hold nothing and return nothing.
  EXPECT_THROW(PoolBuffer<float>(ledger, (1 << 20) / 4 + 1, "too big"), BudgetError);
  EXPECT_THROW(PoolBuffer<double>(ledger, SIZE_MAX / 2, "overflowing"), BudgetError);
  EXPECT_EQ(ledger.in_use(), 0u);
}

TEST(MemoryLedger, HighWaterNeverPassesTheLimitUnderThreads) {
  const uint64_t limit = 10000;
  MemoryLedger ledger(limit, [](uint64_t, const std::string&) { return reinterpret_cast<void*>(4096); },
                            [](void*) {});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        const uint64_t bytes = rng() % 4000 + 1;
        try {
          void* p = ledger.allocate(bytes, "x");
          EXPECT_LE(ledger.in_use(), limit);
          ledger.free(p, bytes);
        } catch (const BudgetError&) {
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(ledger.high_water(), limit);
  EXPECT_EQ(ledger.in_use(), 0u);
}

}  // namespace
}  // namespace streamq
