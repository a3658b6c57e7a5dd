// A model on disk seen as streamq needs it: config, one block's weights at a
// time, the embedding and the head. Weights are float32 in memory whatever
// their stored dtype.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/act_quant.h"
#include "io/formats/safetensors.h"
#include "kernels/backend.h"
#include "src/model/architecture.h"
#include "src/model/config.h"

namespace streamq {

struct Linear {
  std::vector<float> w;  // [out, in]
  std::vector<float> b;  // [out] or empty
};

struct BlockWeights {
  int64_t index = 0;
  std::vector<float> input_norm, post_norm;  // [hidden]
  std::vector<float> q_norm, k_norm;         // [head_dim] (Qwen3) or empty
  std::map<std::string, Linear> linears;     // by LinearDesc::name
};

// A block's weights as backend ops read them (src/model/resident_block.h
// places them in a backend's memory).
// One linear: w[out, in], b[out] or null.
struct LinearView {
  const float* w = nullptr;
  const float* b = nullptr;
  // The weight as bf16 bits instead (w null): a device block held in bf16
  // (ResidentBlock, --device-weights bf16), widened exactly to a float32
  // scratch before each GEMM, so the GEMM is the float32 one on the
  // bf16-rounded weight.
  const uint16_t* w_bf16 = nullptr;
};

// Pointers in one backend's memory; q_norm/k_norm null without QK-norm.
struct BlockView {
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  std::map<std::string, LinearView> linears;  // by LinearDesc::name
  // Weight-activation quantization inside the forward (issue 17; off by
  // default): every linear's input fake-quantized per token (`act`), keys
  // after RoPE and values per head (`kv`), on a host-addressable backend.
  ActQuantConfig act, kv;
  // QuaRot's online Hadamard (R4): down_proj's input rotated by the
  // normalized Hadamard transform of the intermediate size (H_m in this
  // backend's memory, m its order: Backend::hadamard_rows, no signs) before
  // it is quantized and captured; down_proj's weight must carry the same
  // transform on its input side (rotate_down_input). Null: off.
  const float* online_hm = nullptr;
  int64_t online_m = 0;
  // QuaRot's online Hadamard before o_proj, in its full-width form: the
  // attention output [tokens, heads * head_dim] rotated by the normalized
  // Hadamard transform of heads * head_dim (H_m in this backend's memory, m
  // its order) before it is quantized and captured; o_proj's weight must
  // carry the same transform on its input side (rotate_o_input). Null: off.
  const float* o_proj_hm = nullptr;
  int64_t o_proj_m = 0;
  // QuaRot's R3: queries and keys rotated per head by the normalized
  // Hadamard transform of head_dim after RoPE (H_m in this backend's memory,
  // m its order), before the KV cache is quantized. q k^T is unchanged, so
  // only quantized keys see it (the forward skips it when kv is off); no
  // weight carries it. Null: off.
  const float* head_hm = nullptr;
  int64_t head_m = 0;
  // InternalError naming the linear when the block has no such linear.
  const LinearView& linear(const std::string& name) const;
};

// The view of host arrays (valid while `w` lives and is not resized).
BlockView host_view(const BlockWeights& w);

class Model {
 public:
  // Opens `dir` (config.json + safetensors) and checks that every tensor the
  // architecture needs is present with the right shape.
  explicit Model(const std::string& dir);

  const ModelConfig& config() const { return cfg_; }
  const SafetensorsModel& tensors() const { return *st_; }
  const std::string& dir() const { return dir_; }

  // Loads block b, checking shapes and that every value is finite.
  BlockWeights load_block(int64_t b) const;
  // Drops block b's mapped file pages from this process (they fault back in
  // if read again): a finished block stops counting in RSS, so a job holds
  // about one block of the mapped model. Returns the bytes advised.
  uint64_t release_block(int64_t b) const;
  // Starts reading block b's tensors into the page cache (no RSS), so that a
  // later load_block(b) does not wait for the disk. Returns the bytes
  // requested (0 when the file system refuses read-ahead).
  uint64_t read_ahead_block(int64_t b) const;
  // The stored bytes of block b's tensors (what its mapped pages come to).
  uint64_t block_stored_bytes(int64_t b) const;
  // Embeds token ids [tokens] into out[tokens, hidden], reading rows straight
  // from the mapped file; ids must be < vocab.
  void embed(const int32_t* ids, int64_t tokens, float* out) const;
  // Final norm + lm_head: logits[tokens, vocab] from the last block's output
  // (x and logits in be's memory; ResidentHead for a device).
  void head(Backend& be, const float* x, int64_t tokens, float* logits) const;
  // The final norm [hidden] and the output layer [vocab, hidden] (read on
  // first use: quantization never holds it).
  const std::vector<float>& final_norm() const { return final_norm_; }
  const std::vector<float>& head_weight() const;
  // RoPE tables for positions [0, max_pos).
  RopeTable rope_table(int64_t max_pos);

 private:
  std::vector<std::string> block_tensor_names(int64_t b) const;

  std::string dir_;
  ModelConfig cfg_;
  std::unique_ptr<SafetensorsModel> st_;
  std::vector<float> final_norm_;
  // Loaded on first use by head() (eval only); quantization never holds it.
  mutable std::vector<float> head_w_;
  std::vector<float> rope_cos_, rope_sin_;
  int64_t rope_max_pos_ = 0;
};

// Called with the input of a sub-layer group as soon as it is formed,
// x[tokens, in_features], and the residual stream at that point,
// residual[tokens, hidden] (what the group's sub-layer output is added to).
using CaptureFn =
    std::function<void(SubLayer, const float* x, const float* residual, int64_t tokens, int64_t in_features)>;

// Runs nseq sequences of seqlen tokens through one decoder block, in place on
// x[nseq*seqlen, hidden] (in be's memory, as are w's and rope's tensors and
// the pointers handed to `capture`). With `stop_after` set, returns right
// after that group's input was captured (x is then left unspecified).
void block_forward(Backend& be, const ModelConfig& cfg, const BlockView& w, const RopeTable& rope,
                   float* x, int64_t nseq, int64_t seqlen, const CaptureFn& capture = {},
                   int stop_after = -1);
// The same for sequences of different lengths (calibration samples):
// seq_lens[i] tokens each, x[sum(seq_lens), hidden]; each sequence has its
// own positions from 0 and attends only within itself.
void block_forward(Backend& be, const ModelConfig& cfg, const BlockView& w, const RopeTable& rope,
                   float* x, const std::vector<int64_t>& seq_lens, const CaptureFn& capture = {},
                   int stop_after = -1);
// The same forward cut at the sub-layer groups' inputs (block_forward is
// exactly these in a row): block_stage_begin returns the q/k/v input of x
// [tokens, hidden]; block_stage runs `group`'s sub-layer on its input (in,
// consumed) and the residual stream x (updated by O and Down) and returns
// the next group's input, or an empty buffer after Down, when x holds the
// block's output. Keeping each stage's output lets a caller compute every
// group's input once (src/pipeline/block_stats.h's staged statistics).
struct BlockSeqs {
  int64_t nseq = 0, seqlen = 0;
  std::vector<int64_t> lens;  // non-empty: sequences of these lengths (nseq, seqlen unused)
};
Buffer<float> block_stage_begin(Backend& be, const ModelConfig& cfg, const BlockView& w, const float* x,
                                int64_t tokens);
Buffer<float> block_stage(Backend& be, const ModelConfig& cfg, const BlockView& w, const RopeTable& rope,
                          const BlockSeqs& seqs, SubLayer group, float* x, Buffer<float> in);
// Host weights: for a host-addressable backend (the CPU), through host_view.
void block_forward(Backend& be, const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope,
                   float* x, int64_t nseq, int64_t seqlen, const CaptureFn& capture = {},
                   int stop_after = -1);
void block_forward(Backend& be, const ModelConfig& cfg, const BlockWeights& w, const RopeTable& rope,
                   float* x, const std::vector<int64_t>& seq_lens, const CaptureFn& capture = {},
                   int stop_after = -1);

}  // namespace streamq
