// Size parsing and the reservation counter.
#include "scheduler/memory_budget.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace streamq {

uint64_t parse_size(const std::string& text, const std::string& flag) {
  const auto bad = [&](const std::string& why) {
    return InputError(flag + ": '" + text + "' is not a size (" + why +
                      "; e.g. 100000, 512K, 768M, 1.5G, 48GiB, 2T)");
  };
  // Number: digits with at most one '.', then the unit.
  size_t i = 0;
  std::string digits;
  bool dot = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    if (text[i] == '.') {
      if (dot) throw bad("two decimal points");
      dot = true;
    }
    digits += text[i++];
  }
  if (digits.empty() || digits == ".") throw bad(text.empty() ? "empty" : "no number");
  std::string unit;
  for (; i < text.size(); ++i) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  int shift = 0;
  if (!unit.empty()) {
    const std::string prefixes = "KMGTPE";
    const size_t p = prefixes.find(unit[0]);
    std::string rest = unit;
    if (p != std::string::npos) {
      shift = 10 * static_cast<int>(p + 1);
      rest = unit.substr(1);
    }
    const bool ok = rest.empty() || rest == "B" || (p != std::string::npos && rest == "IB");
    if (!ok) throw bad("unknown unit '" + text.substr(text.size() - unit.size()) + "'");
  }
  const long double scale = std::ldexp(1.0L, shift);
  const long double value = std::strtold(digits.c_str(), nullptr) * scale;
  // 2^64 itself does not fit; long double holds it exactly.
  if (!(value < std::ldexp(1.0L, 64))) throw bad("larger than 2^64 - 1 bytes");
  if (dot && shift == 0 && value != std::floor(value)) throw bad("a fraction of a byte");
  return static_cast<uint64_t>(std::floor(value));
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
