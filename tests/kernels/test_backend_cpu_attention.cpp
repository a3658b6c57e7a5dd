// The CPU backend's causal grouped-query attention against a naive float64
// reference, plus causality, sequence independence and thread-count
// determinism.
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {
namespace {

// Error normalized by sum_j p_j |v_j| (outputs average random-sign values and
// may cancel). Rounding errors of the hd-term float dot products and the
// seqlen-term float sum are independent, so they grow like the square root of
// the term count; 4x covers the tail (observed ~0.4 eps at every size).
double attention_tolerance(int64_t head_dim, int64_t seqlen) {
  return 4.0 * std::sqrt(double(head_dim + seqlen)) * kF32Eps;
}

std::vector<float> run_attention(Backend& be, const AttentionInputs& in, const AttentionCase& c) {
  std::vector<float> out = poisoned<float>(c.nseq * c.seqlen * c.nheads * c.hd);
  be.attention(in.q.data(), in.k.data(), in.v.data(), out.data(), c.nseq, c.seqlen, c.nheads,
               c.nkv, c.hd);
  return out;
}

void check_against_reference(std::mt19937_64& rng, const AttentionCase& c) {
  SCOPED_TRACE(testing::Message() << "nseq=" << c.nseq << " seqlen=" << c.seqlen << " nheads="
                                  << c.nheads << " nkv=" << c.nkv << " hd=" << c.hd);
  const AttentionInputs in(rng, c);
  std::vector<double> ref, mag;
  reference_attention(in, c, ref, mag);
  const std::vector<float> out = run_attention(*make_cpu_backend(), in, c);
  EXPECT_LE(relative_error(out.data(), ref.data(), mag.data(), int64_t(ref.size())),
            attention_tolerance(c.hd, c.seqlen));
}

TEST(BackendAttention, MatchesReferenceGqaShapes) {
  STREAMQ_SEEDED_RNG(rng);
  for (int64_t seqlen : {1, 5, 64, 300})
    for (int64_t nkv : {4, 8, 1})
      for (int64_t hd : {8, 64}) check_against_reference(rng, {2, seqlen, 8, nkv, hd});
}

TEST(BackendAttention, MatchesReferenceOddHeadDimAndTileEdges) {
  STREAMQ_SEEDED_RNG(rng);
  for (int64_t seqlen : {63, 65, 129})
    for (int64_t hd : {1, 3, 13}) check_against_reference(rng, {3, seqlen, 6, 2, hd});
  check_against_reference(rng, {1, 7, 2, 2, 256});
}

TEST(BackendAttention, LongSequence4096) {
  STREAMQ_SEEDED_RNG(rng);
  check_against_reference(rng, {1, 4096, 2, 1, 8});
}

TEST(BackendAttention, CausalAndSequencesIndependent) {
  STREAMQ_SEEDED_RNG(rng);
  const AttentionCase c{2, 150, 4, 2, 16};
  const int64_t cut = 70, qw = c.nheads * c.hd, kw = c.nkv * c.hd;
  AttentionInputs in(rng, c);
  auto be = make_cpu_backend();
  const std::vector<float> before = run_attention(*be, in, c);
  // Change k and v of sequence 0's tokens after `cut`.
  for (int64_t t = cut + 1; t < c.seqlen; ++t)
    for (int64_t i = 0; i < kw; ++i) {
      in.k[t * kw + i] += 1.0f;
      in.v[t * kw + i] -= 2.0f;
    }
  const std::vector<float> after = run_attention(*be, in, c);
  const int64_t seq_elems = c.seqlen * qw;
  EXPECT_TRUE(std::equal(before.begin(), before.begin() + (cut + 1) * qw, after.begin()))
      << "tokens <= cut must not see later keys";
  EXPECT_FALSE(std::equal(before.begin() + (cut + 1) * qw, before.begin() + seq_elems,
                          after.begin() + (cut + 1) * qw))
      << "tokens after cut must see their own changed keys";
  EXPECT_TRUE(std::equal(before.begin() + seq_elems, before.end(), after.begin() + seq_elems))
      << "sequence 1 must not see sequence 0";
}

TEST(BackendAttention, BitwiseIdenticalAcrossThreadCounts) {
  STREAMQ_SEEDED_RNG(rng);
  const AttentionCase c{2, 300, 8, 2, 64};
  const AttentionInputs in(rng, c);
  auto be = make_cpu_backend();
  std::vector<float> one, two, many;
  tbb::task_arena(1).execute([&] { one = run_attention(*be, in, c); });
  tbb::task_arena(2).execute([&] { two = run_attention(*be, in, c); });
  many = run_attention(*be, in, c);
  EXPECT_TRUE(bitwise_equal(one, two));
  EXPECT_TRUE(bitwise_equal(one, many));
}

TEST(BackendAttention, RejectsHeadsNotMultipleOfKv) {
  auto be = make_cpu_backend();
  std::vector<float> buf(4 * 6 * 2);
  EXPECT_THROW(be->attention(buf.data(), buf.data(), buf.data(), buf.data(), 1, 4, 6, 4, 2),
               InternalError);
}

}  // namespace
}  // namespace streamq::test
