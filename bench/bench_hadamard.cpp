// CPU benchmark of the Kronecker-factored Hadamard transform
// (src/methods/hadamard.h) against a dense multiply by the same orthogonal
// matrix (OpenBLAS sgemm, [rows, n] x [n, n]) in the same run, on the sizes
// real models rotate (issue 17). Each timing is the median of R rounds; the
// two results are compared before any time is printed.
//
// usage: bench_hadamard [n ...] [--rows R] [--rounds K]
//   defaults: n = 576 1536 4096 14336, rows = 256, rounds = 3
#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_median.h"
#include "src/core/sysinfo.h"
#include "src/methods/hadamard.h"

using namespace streamq;

int main(int argc, char** argv) {
  std::vector<int64_t> sizes;
  int64_t rows = 256;
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) rows = std::atoll(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else sizes.push_back(std::atoll(a.c_str()));
  }
  if (sizes.empty()) sizes = {576, 1536, 4096, 14336};
  std::printf("| n | split m x 2^k | rows | transform ms | dense sgemm ms | sgemm GFLOP/s | transform / dense | max |diff| |\n");
  std::printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const int64_t n : sizes) {
    const HadamardSplit s = hadamard_split(n);
    if (s.m == 0) {
      std::printf("| %lld | none | | | | | | |\n", static_cast<long long>(n));
      continue;
    }
    const HadamardTransform t(n, random_signs(n, 1));
    // The dense matrix Q = H diag(s) / sqrt(n), as the transform's image of
    // the identity's rows: row i of (I Q^T) is Q e_i... built column-wise by
    // transforming unit vectors, so it is the same linear map.
    std::vector<float> q(static_cast<size_t>(n * n), 0.0f);  // q[j * n + i] = Q[i][j] (row j = T(e_j))
    for (int64_t j = 0; j < n; ++j) q[static_cast<size_t>(j * n + j)] = 1.0f;
    t.apply(q.data(), n);
    std::mt19937_64 rng(2);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(rows * n));
    for (auto& v : x) v = normal(rng);
    std::vector<float> y = x, yd(x.size());
    // y = T(x) per row = sum_j x[j] T(e_j): yd = x q (q's rows are T(e_j)).
    const double ts = median_seconds(rounds, [&] {
      y = x;
      t.apply(y.data(), rows);
    });
    const double td = median_seconds(rounds, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(n),
                  static_cast<int>(n), 1.0f, x.data(), static_cast<int>(n), q.data(), static_cast<int>(n), 0.0f,
                  yd.data(), static_cast<int>(n));
    });
    double diff = 0;
    for (size_t i = 0; i < y.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(y[i] - yd[i])));
    const double gflops = 2.0 * rows * n * n / td * 1e-9;
    std::printf("| %lld | %lld x %lld | %lld | %.2f | %.2f | %.1f | %.3f | %.1e |\n", static_cast<long long>(n),
                static_cast<long long>(s.m), static_cast<long long>(s.pow2), static_cast<long long>(rows), ts * 1e3,
                td * 1e3, gflops, ts / td, diff);
  }
  return 0;
}
