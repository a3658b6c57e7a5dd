// The process-wide kill-point state: the armed target and its hit count.
#include "src/core/kill_point.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iterator>

#include "src/core/error.h"

namespace streamq {
namespace {

constexpr const char* kNames[] = {"get",   "put",           "stats", "quantize", "block-file", "flush",
                                  "manifest", "manifest-done", "drop", "assemble", "commit", "rotated-panel", "learn"};
static_assert(std::size(kNames) == static_cast<size_t>(KillPoint::Learn) + 1, "a name for every KillPoint");

constexpr int kAny = -1;
std::atomic<int> g_point{kAny};        // the point counted, or kAny
std::atomic<int64_t> g_target{0};      // 0: disarmed
std::atomic<int64_t> g_count{0};

}  // namespace

const char* to_string(KillPoint p) { return kNames[static_cast<size_t>(p)]; }

void arm_kill_point(const std::string& spec) {
  g_target = 0;
  g_count = 0;
  if (spec.empty()) return;
  const auto colon = spec.rfind(':');
  char* end = nullptr;
  const long long n = colon == std::string::npos ? 0 : std::strtoll(spec.c_str() + colon + 1, &end, 10);
  if (colon == std::string::npos || colon == 0 || n < 1 || *end != '\0')
    throw InputError("kill point '" + spec + "': expected NAME:N with N >= 1");
  const std::string name = spec.substr(0, colon);
  int point = kAny;
  if (name != "any") {
    for (size_t i = 0; i < std::size(kNames); ++i)
      if (name == kNames[i]) point = static_cast<int>(i);
    if (point == kAny) throw InputError("kill point '" + spec + "': no point named '" + name + "' (src/core/kill_point.h)");
  }
  g_point = point;
  g_target = n;
}

void kill_point(KillPoint p) {
  const int64_t target = g_target.load(std::memory_order_relaxed);
  if (target == 0) return;
  const int point = g_point.load(std::memory_order_relaxed);
  if (point != kAny && point != static_cast<int>(p)) return;
  if (g_count.fetch_add(1) + 1 == target) std::raise(SIGKILL);
}

bool kill_point_armed() { return g_target.load(std::memory_order_relaxed) > 0; }

}  // namespace streamq
