// Size parsing and the reservation counter.
#include "scheduler/memory_budget.h"

#include <cctype>
#include <cstdio>
#include <utility>

namespace streamq {

const char* const kSizeGrammar =
    "SIZE is a number (a fraction allowed, rounded down to a whole byte) and a unit, no space, any case: "
    "none or B = bytes; K, M, G, T, P, E or KiB, MiB, GiB, TiB, PiB, EiB = powers of 1024; "
    "KB, MB, GB, TB, PB, EB = powers of 1000 (as transformers' max_shard_size). "
    "E.g. 768M = 768 MiB, 1.5GiB, 5GB = 5000000000 bytes";

uint64_t parse_size(const std::string& text, const std::string& flag) {
  const auto bad = [&](const std::string& why) {
    return InputError(flag + ": '" + text + "' is not a size (" + why + "). " + kSizeGrammar);
  };
  // The number: integer digits, then optionally '.' and fraction digits.
  size_t i = 0;
  const auto digits = [&] {
    const size_t from = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    return text.substr(from, i - from);
  };
  const std::string whole = digits();
  std::string frac;
  const bool dot = i < text.size() && text[i] == '.';
  if (dot) {
    ++i;
    frac = digits();
  }
  if (whole.empty() && frac.empty()) throw bad(text.empty() ? "empty" : "no number");
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  // 18 digits keep 10^digits, and so the exact arithmetic below, within 128 bits.
  if (frac.size() > 18) throw bad("more than 18 decimal places");

  std::string unit;
  for (; i < text.size(); ++i) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  uint64_t scale = 1;
  if (!unit.empty() && unit != "B") {
    const size_t p = std::string("KMGTPE").find(unit[0]);
    const std::string rest = unit.substr(1);
    const bool binary = rest.empty() || rest == "IB";
    if (p == std::string::npos || !(binary || rest == "B"))
      throw bad("unknown unit '" + text.substr(text.size() - unit.size()) + "'");
    for (size_t k = 0; k <= p; ++k) scale *= binary ? 1024 : 1000;
  }
  if (scale == 1 && !frac.empty()) throw bad("a fraction of a byte");

  // Exact: whole * scale + floor(frac * scale / 10^decimals), in 128 bits.
  using u128 = unsigned __int128;
  const u128 max = UINT64_MAX;
  u128 w = 0;
  for (char c : whole) {
    w = w * 10 + static_cast<u128>(c - '0');
    if (w > max) throw bad("larger than 2^64 - 1 bytes");
  }
  u128 f = 0, ten = 1;
  for (char c : frac) {
    f = f * 10 + static_cast<u128>(c - '0');
    ten *= 10;
  }
  const u128 bytes = w * scale + f * scale / ten;
  if (bytes > max) throw bad("larger than 2^64 - 1 bytes");
  return static_cast<uint64_t>(bytes);
}

std::string format_size(uint64_t bytes) {
  if (bytes == kUnlimitedBytes) return "unlimited";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[48];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::string format_breakdown(const std::vector<std::pair<std::string, uint64_t>>& items) {
  std::string out;
  for (const auto& [name, bytes] : items) {
    char line[160];
    std::snprintf(line, sizeof line, "    %-52s %12s\n", name.c_str(), format_size(bytes).c_str());
    out += line;
  }
  return out;
}

Reservation::Reservation(Reservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Reservation::release() {
  if (budget_) budget_->give_back(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

MemoryBudget::MemoryBudget(uint64_t limit, std::string flag) : limit_(limit), flag_(std::move(flag)) {}

bool MemoryBudget::grant_locked(uint64_t bytes) {
  if (bytes > limit_ - in_use_) return false;  // in_use_ <= limit_ always, so no overflow
  in_use_ += bytes;
  if (in_use_ > high_water_) high_water_ = in_use_;
  return true;
}

Reservation MemoryBudget::reserve(uint64_t bytes, const std::string& what) {
  std::lock_guard lk(mu_);
  if (!grant_locked(bytes))
    throw BudgetError("memory budget: " + what + " needs " + format_size(bytes) + " but " + format_size(in_use_) +
                      " of the " + format_size(limit_) + " limit is in use; raise " + flag_);
  return Reservation(this, bytes);
}

bool MemoryBudget::try_reserve(uint64_t bytes, Reservation* out) {
  {
    std::lock_guard lk(mu_);
    if (!grant_locked(bytes)) return false;
  }
  *out = Reservation(this, bytes);
  return true;
}

void MemoryBudget::give_back(uint64_t bytes) {
  std::lock_guard lk(mu_);
  in_use_ -= bytes;
}

uint64_t MemoryBudget::in_use() const {
  std::lock_guard lk(mu_);
  return in_use_;
}

uint64_t MemoryBudget::high_water() const {
  std::lock_guard lk(mu_);
  return high_water_;
}

}  // namespace streamq
