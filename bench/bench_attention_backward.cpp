// CPU benchmark of causal GQA attention's backward (cpu::attention_backward:
// two passes, keys as vector lanes) against the one-row-at-a-time loop it
// replaced (tests/support/attention_backward_scalar.h), in the same run, at
// the shapes a training step runs (one sequence a step, `--learn-batch 1`).
// The results are compared bit for bit before any time is printed; each
// timing is the median of R rounds. Both run on all threads (the old op: one
// task per (sequence, kv head), as it was) and on one (a oneTBB arena of 1).
//
// usage: bench_attention_backward [--seqlen N] [--rounds R]
//   defaults: seqlen 512 (the learn tables' calibration windows), rounds 3
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_median.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/support/attention_backward_scalar.h"

using namespace streamq;

int main(int argc, char** argv) {
  int64_t seqlen = 512;
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seqlen" && i + 1 < argc) seqlen = std::atoll(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_attention_backward: unknown argument '%s' (--seqlen N, --rounds R)\n", a.c_str());
      return 2;
    }
  }
  struct Shape {
    const char* model;
    int64_t nheads, nkv, hd;
  };
  std::printf("| shape | seqlen | heads / kv heads x dim | two-pass ms | row-by-row ms | speedup | two-pass ms, 1 thread | row-by-row ms, 1 thread | speedup, 1 thread | bits |\n");
  std::printf("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  for (const Shape& sh : {Shape{"SmolLM2-135M", 9, 3, 64}, Shape{"Llama-3-8B", 32, 8, 128}}) {
    const size_t nq = static_cast<size_t>(seqlen * sh.nheads * sh.hd), nk = static_cast<size_t>(seqlen * sh.nkv * sh.hd);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> q(nq), k(nk), v(nk), g(nq);
    for (auto* x : {&q, &k, &v, &g})
      for (float& e : *x) e = normal(rng);
    std::vector<float> dq(nq), dk(nk), dv(nk), rq(nq), rk(nk), rv(nk);
    const auto two_pass = [&] {
      cpu::attention_backward(q.data(), k.data(), v.data(), g.data(), dq.data(), dk.data(), dv.data(), 1, seqlen,
                              sh.nheads, sh.nkv, sh.hd);
    };
    const auto row_by_row = [&] {
      tbb::parallel_for(int64_t{0}, sh.nkv, [&](int64_t kvh) {
        test::attention_backward_scalar_group(q.data(), k.data(), v.data(), g.data(), rq.data(), rk.data(), rv.data(),
                                              seqlen, sh.nheads, sh.nkv, sh.hd, 0, kvh);
      });
    };
    const double t_new = median_seconds(rounds, two_pass), t_old = median_seconds(rounds, row_by_row);
    double t_new1 = 0, t_old1 = 0;
    tbb::task_arena(1).execute([&] {
      t_new1 = median_seconds(rounds, two_pass);
      t_old1 = median_seconds(rounds, row_by_row);
    });
    const bool same = std::memcmp(dq.data(), rq.data(), nq * sizeof(float)) == 0 &&
                      std::memcmp(dk.data(), rk.data(), nk * sizeof(float)) == 0 &&
                      std::memcmp(dv.data(), rv.data(), nk * sizeof(float)) == 0;
    std::printf("| %s | %lld | %lld / %lld x %lld | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx | %s |\n", sh.model,
                static_cast<long long>(seqlen), static_cast<long long>(sh.nheads), static_cast<long long>(sh.nkv),
                static_cast<long long>(sh.hd), t_new * 1e3, t_old * 1e3, t_old / t_new, t_new1 * 1e3, t_old1 * 1e3,
                t_old1 / t_new1, same ? "identical" : "DIFFER");
    if (!same) return 1;
  }
  return 0;
}
