// ResidentBlock with bf16 weights on a device (--device-weights bf16): the
// forward widens each linear exactly to float32 before the same GEMM, so it
// must equal, bit for bit, the CPU forward on weights rounded to bf16; and
// the block's device bytes are its linears at 2 bytes plus its float32 norms.
#include <gtest/gtest.h>

#include <random>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/core/dtype.h"
#include "src/core/error.h"
#include "src/model/resident_block.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

TEST(ResidentBlock, Bf16WeightsForwardAsTheCpuOnBf16RoundedWeights) {
  Model model(test::demo_model_dir());
  const ModelConfig& c = model.config();
  const int64_t nseq = 2, seqlen = 33;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> x0(static_cast<size_t>(nseq * seqlen * c.hidden));
  for (float& v : x0) v = normal(rng);
  const RopeTable host_rope = model.rope_table(seqlen);
  const BlockWeights w = model.load_block(1);
  BlockWeights rounded = w;
  uint64_t linear_elems = 0, small_elems = w.input_norm.size() + w.post_norm.size() + w.q_norm.size() + w.k_norm.size();
  for (auto& [name, l] : rounded.linears) {
    for (float& v : l.w) v = bf16_to_f32(f32_to_bf16(v));
    linear_elems += l.w.size();
    small_elems += l.b.size();
  }

  auto cpu = make_cpu_backend();
  std::vector<float> want = x0;
  block_forward(*cpu, c, rounded, host_rope, want.data(), nseq, seqlen);

  auto emu = make_emulated_backend({.memory_bytes = uint64_t{256} << 20});
  const ResidentRope rope(*emu, host_rope);
  ResidentBlock f32(*emu, w), bf16(*emu, w, DeviceWeights::Bf16);
  EXPECT_EQ(bf16.weights(), DeviceWeights::Bf16);
  EXPECT_EQ(f32.device_bytes(), 4 * (linear_elems + small_elems));
  EXPECT_EQ(bf16.device_bytes(), 2 * linear_elems + 4 * small_elems);
  ResidentChunk chunk(*emu, "x");
  std::vector<float> got = x0;
  block_forward(*emu, c, bf16.view(), rope.table(), chunk.place(got), nseq, seqlen);
  chunk.fetch(got);
  EXPECT_TRUE(got == want) << "bf16 resident forward differs from the CPU forward on bf16-rounded weights";

  // replace_weight rounds the new weight too: put the original back into
  // q_proj of a block built from the rounded weights, nothing changes.
  ResidentBlock from_rounded(*emu, rounded, DeviceWeights::Bf16);
  from_rounded.replace_weight("self_attn.q_proj", w.linears.at("self_attn.q_proj").w);
  std::vector<float> again = x0;
  block_forward(*emu, c, from_rounded.view(), rope.table(), chunk.place(again), nseq, seqlen);
  chunk.fetch(again);
  EXPECT_TRUE(again == want);

  // A host-addressable backend has nothing to hold in bf16.
  EXPECT_THROW(ResidentBlock(*cpu, w, DeviceWeights::Bf16), InternalError);
}

}  // namespace
}  // namespace streamq
