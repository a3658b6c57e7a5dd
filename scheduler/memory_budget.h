// Host memory budgets: sizes as the user writes them (--host-mem-limit 48G,
// --max-shard-size 5GB)
// and a thread-safe counter of reserved bytes that refuses, with a message
// saying which flag to raise, whatever would go past the limit.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "src/core/error.h"  // BudgetError

namespace streamq {

// Every size the user writes (--host-mem-limit, --max-shard-size) goes
// through parse_size, whose grammar is kSizeGrammar: a number (a fraction
// allowed, rounded down to a whole byte) and a case-insensitive unit. A bare
// prefix or one with "iB" is binary (768M, 48GiB: powers of 1024, as the
// memory flags have always read them); one with "B" alone is decimal (5GB =
// 5e9 bytes, which is what transformers' max_shard_size="5GB" means).
// Throws InputError naming `flag` and quoting the grammar for anything else
// (empty, negative, spaces, exponents, unknown units, a fraction of a byte,
// more than 2^64 - 1 bytes).
uint64_t parse_size(const std::string& text, const std::string& flag);
// The grammar in words, for every --help that takes a size.
extern const char* const kSizeGrammar;
// "1.50 GiB", "768.00 MiB", "512 B"; "unlimited" for UINT64_MAX.
std::string format_size(uint64_t bytes);
// A plan's breakdown of its peak, one indented "name  size" line per item
// (the host memory plan's and the device plan's describe()).
std::string format_breakdown(const std::vector<std::pair<std::string, uint64_t>>& items);

constexpr uint64_t kUnlimitedBytes = UINT64_MAX;

class MemoryBudget;

// Bytes held from a MemoryBudget until destruction or release(). Movable; a
// default-constructed one holds nothing.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { release(); }

  uint64_t bytes() const { return bytes_; }
  void release();

 private:
  friend class MemoryBudget;
  Reservation(MemoryBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
  MemoryBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

// Every method is thread-safe. The budget must outlive its reservations.
class MemoryBudget {
 public:
  // `flag` is what the error messages tell the user to raise.
  explicit MemoryBudget(uint64_t limit = kUnlimitedBytes, std::string flag = "--host-mem-limit");
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Throws BudgetError ("<what> needs X; Y of the Z limit is in use; raise
  // <flag>") when in_use() + bytes would pass the limit.
  Reservation reserve(uint64_t bytes, const std::string& what);
  // The same without throwing: false (and *out untouched) when it does not fit.
  bool try_reserve(uint64_t bytes, Reservation* out);

  uint64_t limit() const { return limit_; }
  bool unlimited() const { return limit_ == kUnlimitedBytes; }
  uint64_t in_use() const;
  // The most ever reserved at once.
  uint64_t high_water() const;

 private:
  friend class Reservation;
  bool grant_locked(uint64_t bytes);
  void give_back(uint64_t bytes);

  const uint64_t limit_;
  const std::string flag_;
  mutable std::mutex mu_;
  uint64_t in_use_ = 0;
  uint64_t high_water_ = 0;
};

}  // namespace streamq
