// Progress lines with a moving-window ETA.
#include "src/report/progress.h"

#include <cstdio>
#include <numeric>
#include <ostream>

namespace streamq {

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  return buf;
}

void Progress::step(const std::string& extra) {
  ++done_;
  const double now = clock_.seconds();
  const double dt = now - last_;
  last_ = now;
  recent_.push_back(dt);
  if (recent_.size() > 8) recent_.pop_front();
  if (!out_) return;
  const double mean = std::accumulate(recent_.begin(), recent_.end(), 0.0) / static_cast<double>(recent_.size());
  const double eta = mean * static_cast<double>(total_ - done_);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s block %lld/%lld  %s  elapsed %s  ETA %s  ", what_.c_str(),
                static_cast<long long>(done_), static_cast<long long>(total_), format_duration(dt).c_str(),
                format_duration(now).c_str(), format_duration(eta).c_str());
  *out_ << buf << extra << std::endl;
}

}  // namespace streamq
