// The benches' timing: the median of `rounds` runs of f, in seconds.
#pragma once
#include <algorithm>
#include <vector>

#include "src/core/sysinfo.h"

namespace streamq {

template <class F>
double median_seconds(int rounds, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    const Stopwatch sw;
    f();
    t.push_back(sw.seconds());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace streamq
