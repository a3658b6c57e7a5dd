// Size parsing and the MemoryBudget counter: binary and decimal units exactly,
// rejected inputs naming the flag and the grammar, RAII release, the error
// message, high water under threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "scheduler/memory_budget.h"

namespace streamq {
namespace {

TEST(ParseSize, BarePrefixesAndIbAreBinary) {
  const uint64_t K = 1024, M = K * K, G = M * K, T = G * K;
  EXPECT_EQ(parse_size("100000", "--x"), 100000u);
  EXPECT_EQ(parse_size("0", "--x"), 0u);
  EXPECT_EQ(parse_size("123B", "--x"), 123u);
  EXPECT_EQ(parse_size("512K", "--x"), 512 * K);
  EXPECT_EQ(parse_size("512k", "--x"), 512 * K);
  EXPECT_EQ(parse_size("512KiB", "--x"), 512 * K);
  EXPECT_EQ(parse_size("768M", "--x"), 768 * M);
  EXPECT_EQ(parse_size("48G", "--x"), 48 * G);
  EXPECT_EQ(parse_size("48GiB", "--x"), 48 * G);
  EXPECT_EQ(parse_size("48gib", "--x"), 48 * G);
  EXPECT_EQ(parse_size("1.5G", "--x"), 3 * G / 2);
  EXPECT_EQ(parse_size(".5G", "--x"), G / 2);
  EXPECT_EQ(parse_size("1.3K", "--x"), 1331u) << "1331.2 bytes, rounded down";
  EXPECT_EQ(parse_size("2T", "--x"), 2 * T);
  EXPECT_EQ(parse_size("15E", "--x"), 15ull << 60);
  EXPECT_EQ(parse_size("18446744073709551615", "--x"), UINT64_MAX);
}

TEST(ParseSize, PrefixWithBIsDecimalAsTransformersReadsMaxShardSize) {
  EXPECT_EQ(parse_size("5GB", "--x"), 5000000000u);
  EXPECT_EQ(parse_size("5gb", "--x"), 5000000000u);
  EXPECT_EQ(parse_size("100KB", "--x"), 100000u);
  EXPECT_EQ(parse_size("500MB", "--x"), 500000000u);
  EXPECT_EQ(parse_size("2TB", "--x"), 2000000000000u);
  EXPECT_EQ(parse_size("16EB", "--x"), 16000000000000000000u);
  // Exact decimal arithmetic: 0.1 has no binary floating-point value.
  EXPECT_EQ(parse_size("0.1GB", "--x"), 100000000u);
  EXPECT_EQ(parse_size("1.000000001GB", "--x"), 1000000001u);
  EXPECT_EQ(parse_size("18.446744073709551615EB", "--x"), UINT64_MAX);
}

TEST(ParseSize, RejectsJunkNamingTheFlagAndQuotingTheGrammar) {
  for (const char* bad : {"", "-1", "-1G", "G", "abc", "1.2.3G", "12X", "12 G", " 12G", "1e9", "12GiBs", "12IB",
                          "0.5", "1.5B", "18446744073709551616", "16E", "18.446744073709551616EB",
                          "99999999999999999999T", ".", "5GiBB", "1.0000000000000000001G"}) {
    try {
      parse_size(bad, "--host-mem-limit");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--host-mem-limit"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(kSizeGrammar), std::string::npos) << e.what();
    }
  }
}

TEST(FormatSize, RoundTripsThroughParse) {
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(1536ull << 20), "1.50 GiB");
  EXPECT_EQ(format_size(kUnlimitedBytes), "unlimited");
  // What format_size prints parses back to within its rounding (2 decimals).
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    const uint64_t v = rng() >> (rng() % 40 + 4);
    std::string s = format_size(v);
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    const double back = static_cast<double>(parse_size(s, "--x"));
    EXPECT_NEAR(back, static_cast<double>(v), static_cast<double>(v) * 0.005 + 1) << s;
  }
}

TEST(MemoryBudget, ReservationsReleaseOnDestructionAndMove) {
  MemoryBudget budget(1000);
  {
    Reservation a = budget.reserve(600, "chunk a");
    EXPECT_EQ(budget.in_use(), 600u);
    Reservation b = std::move(a);
    EXPECT_EQ(a.bytes(), 0u);
    EXPECT_EQ(b.bytes(), 600u);
    EXPECT_EQ(budget.in_use(), 600u);
    Reservation c;
    EXPECT_FALSE(budget.try_reserve(401, &c));
    EXPECT_EQ(c.bytes(), 0u);
    EXPECT_TRUE(budget.try_reserve(400, &c));
    EXPECT_EQ(budget.in_use(), 1000u);
    c = std::move(b);  // c's 400 go back, b's 600 move over
    EXPECT_EQ(budget.in_use(), 600u);
  }
  EXPECT_EQ(budget.in_use(), 0u);
  EXPECT_EQ(budget.high_water(), 1000u);
}

TEST(MemoryBudget, ErrorSaysWhatNeedsHowMuchAndWhichFlag) {
  MemoryBudget budget(3ull << 30);
  Reservation held = budget.reserve(2ull << 30, "activations");
  try {
    budget.reserve(1536ull << 20, "prefetch buffer of block 3");
    FAIL() << "granted past the limit";
  } catch (const BudgetError& e) {
    const std::string m = e.what();
    for (const char* part : {"prefetch buffer of block 3", "1.50 GiB", "2.00 GiB", "3.00 GiB", "--host-mem-limit"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
  }
  // A BudgetError is an InputError, so the CLI exits 2.
  EXPECT_THROW(budget.reserve(2ull << 30, "x"), InputError);
  EXPECT_EQ(budget.in_use(), 2ull << 30);
}

TEST(MemoryBudget, UnlimitedGrantsEverything) {
  MemoryBudget budget;
  EXPECT_TRUE(budget.unlimited());
  Reservation a = budget.reserve(UINT64_MAX / 2, "a");
  Reservation b = budget.reserve(UINT64_MAX / 2, "b");
  EXPECT_EQ(budget.in_use(), UINT64_MAX / 2 * 2);
  Reservation c;
  EXPECT_TRUE(budget.try_reserve(1, &c));
  EXPECT_FALSE(budget.try_reserve(1, &c));  // exactly UINT64_MAX in use now
}

TEST(MemoryBudget, HighWaterNeverPassesTheLimitUnderThreads) {
  const uint64_t limit = 10000;
  MemoryBudget budget(limit);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        Reservation r;
        if (budget.try_reserve(rng() % 4000, &r)) {
          EXPECT_LE(budget.in_use(), limit);
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(budget.high_water(), limit);
  EXPECT_EQ(budget.in_use(), 0u);
}

}  // namespace
}  // namespace streamq
