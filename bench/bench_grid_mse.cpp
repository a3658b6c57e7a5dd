// CPU benchmark of the MSE clip search (Grid::fit, --grid mse) with its
// vector screen against the exact search alone (Grid::fit_exact: every
// candidate summed with glibc's pow), in the same run, on weight-like rows
// (Gaussian with 1% outliers at 8 sigma) at the papers' settings: symmetric
// 2/3/4-bit grids, groups of 32/64/128 and per channel over SmolLM2's 576
// and 1536 widths, norm 2.4, 80 candidates. Both picks are compared row by
// row before any time is printed; the screen's survivors (candidates it
// left to exact sums) are counted.
//
// usage: bench_grid_mse [--rows R] [--rounds K]   (defaults 576 rows, 3 rounds)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_median.h"
#include "src/methods/grid.h"
#include "src/methods/grid_mse_avx2.h"

using namespace streamq;

int main(int argc, char** argv) {
  int64_t rows = 576;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rows") rows = std::atoll(argv[i + 1]);
    else if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_grid_mse: unknown flag %s (--rows R, --rounds K)\n", a.c_str());
      return 2;
    }
  }
  std::printf("MSE clip search, %lld rows per setting, median of %d rounds, one thread; vector screen: %s\n\n",
              static_cast<long long>(rows), rounds, grid_mse_avx2::available() ? "AVX2" : "absent (exact only)");
  std::printf("| setting | exact search ms | screened ms | speedup | rows with survivors > 1 | exact sums per row |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::mt19937_64 rng(1);
  std::normal_distribution<double> nd(0.0, 0.02);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  struct Setting {
    int bits;
    int64_t group, width;
  };
  for (const Setting st : {Setting{2, 32, 576}, Setting{2, 64, 576}, Setting{3, 64, 1536}, Setting{4, 128, 1536},
                           Setting{3, 576, 576}, Setting{3, 1536, 1536}}) {
    QuantConfig c;
    c.bits = st.bits;
    c.sym = true;
    c.clip = ClipSearch::Mse;
    const Grid g(c);
    std::vector<double> w(static_cast<size_t>(rows * st.width));
    for (auto& v : w) v = nd(rng) * (u(rng) < 0.01 ? 8.0 : 1.0);
    const int64_t n = rows * st.width / st.group;  // one search per group of a row
    std::vector<GridParams> exact(static_cast<size_t>(n)), fast(static_cast<size_t>(n));
    MseSearchCounts counts;
    int64_t multi = 0;
    const double te = median_seconds(rounds, [&] {
      for (int64_t i = 0; i < n; ++i) exact[i] = g.fit_exact(&w[i * st.group], st.group);
    });
    const double tf = median_seconds(rounds, [&] {
      counts = {};
      multi = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t before = counts.exact_candidates;
        fast[i] = g.fit(&w[i * st.group], st.group, 1, &counts);
        multi += counts.exact_candidates > before;
      }
    });
    for (int64_t i = 0; i < n; ++i)
      if (exact[i].scale != fast[i].scale || exact[i].zero != fast[i].zero) {
        std::fprintf(stderr, "bench_grid_mse: the screened search picked another grid (W%d g%lld, search %lld)\n",
                     st.bits, static_cast<long long>(st.group), static_cast<long long>(i));
        return 1;
      }
    const std::string name = "W" + std::to_string(st.bits) + (st.group == st.width ? " per channel " : " g" + std::to_string(st.group) + " of ") + std::to_string(st.width);
    std::printf("| %s | %.1f | %.1f | %.2fx | %.2f%% | %.3f |\n", name.c_str(), te * 1e3, tf * 1e3, te / tf,
                100.0 * static_cast<double>(multi) / static_cast<double>(n),
                static_cast<double>(counts.exact_candidates) / static_cast<double>(n));
  }
  return 0;
}
