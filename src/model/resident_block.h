// A decoder block's weights (and the model's RoPE tables and head) where a
// backend's ops can read them. On a host-addressable backend (the CPU) the
// views point into the host arrays, copying nothing, so the CPU path runs
// the bytes it always ran; on a device (CUDA, emulated) every tensor is
// uploaded once into the backend's budgeted memory and the views point
// there. block_forward reads weights only through a BlockView.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "src/model/model.h"

namespace streamq {

// How a device holds a block's linear weights (--device-weights): float32,
// or bf16 (half the bytes; each linear is widened to a float32 scratch just
// before its GEMM, so the forward runs on bf16-rounded weights: exact for a
// bf16 source model, a rounding of each weight to 8 significant bits
// otherwise). Norms and biases stay float32 (a few KiB per block).
enum class DeviceWeights { F32, Bf16 };
const char* to_string(DeviceWeights w);  // "f32", "bf16"

class ResidentBlock {
 public:
  // w's tensors readable by be's ops: the host arrays themselves on a
  // host-addressable backend (w must then outlive this), else uploads queued
  // on be (w must stay unchanged until be.synchronize(), as for any upload).
  // `weights` Bf16 needs a device (InternalError on a host-addressable
  // backend: there the forward reads the host's float32 arrays in place).
  ResidentBlock(Backend& be, const BlockWeights& w, DeviceWeights weights = DeviceWeights::F32);
  ResidentBlock(ResidentBlock&&) = default;

  const BlockView& view() const { return view_; }
  // Linear `name`'s weight becomes `w` (same size as before). Host-
  // addressable: the view points at w.data() (w must outlive this); device:
  // an upload into the resident copy (w unchanged until synchronize();
  // rounded to bf16 first when the block is held in bf16).
  void replace_weight(const std::string& name, const std::vector<float>& w);
  // Weight-activation quantization in every forward through this view (the
  // quantized flow of a W4A4 job; BlockView::act/kv).
  void set_act_quant(const ActQuantConfig& act, const ActQuantConfig& kv) {
    view_.act = act;
    view_.kv = kv;
  }
  // QuaRot's online Hadamard before down_proj in every forward through this
  // view (BlockView::online_hm: H_m in be's memory, m its order; null: off).
  void set_online_hadamard(const float* hm, int64_t m) {
    view_.online_hm = hm;
    view_.online_m = hm ? m : 0;
  }
  // QuaRot's online Hadamard before o_proj (BlockView::o_proj_hm).
  void set_o_proj_hadamard(const float* hm, int64_t m) {
    view_.o_proj_hm = hm;
    view_.o_proj_m = hm ? m : 0;
  }
  // QuaRot's R3 on queries and keys after RoPE (BlockView::head_hm).
  void set_head_hadamard(const float* hm, int64_t m) {
    view_.head_hm = hm;
    view_.head_m = hm ? m : 0;
  }
  // Bytes this block holds in the backend's memory (0 on the host).
  uint64_t device_bytes() const;
  DeviceWeights weights() const { return weights_; }

 private:
  const float* place(const std::vector<float>& host, const std::string& what);
  const uint16_t* place_bf16(const std::vector<float>& host, const std::string& what);
  Backend* be_;
  DeviceWeights weights_;
  std::map<std::string, Buffer<float>> owned_;  // by tensor name; empty on the host
  std::map<std::string, Buffer<uint16_t>> owned_bf16_;  // the linears' weights when held in bf16
  BlockView view_;
};

// The final norm and output layer where be's ops read them (uploaded once
// on a device; the model's host arrays on the CPU).
class ResidentHead {
 public:
  ResidentHead(Backend& be, const Model& model);
  // An explicit final norm [hidden] and output layer [vocab, hidden] (a
  // rotated head); both must outlive this head on a host-addressable backend.
  ResidentHead(Backend& be, const ModelConfig& cfg, const std::vector<float>& norm, const std::vector<float>& w);
  // logits[tokens, vocab] from x[tokens, hidden], both in be's memory.
  void logits(const float* x, int64_t tokens, float* logits) const;

 private:
  Backend* be_;
  ModelConfig cfg_;
  Buffer<float> norm_buf_, w_buf_;
  const float* norm_ = nullptr;
  const float* w_ = nullptr;
};

// One activation chunk where be's ops read and write it: the host array
// itself on a host-addressable backend (nothing copied), else a device
// buffer, grown when a chunk is larger and reused otherwise.
class ResidentChunk {
 public:
  ResidentChunk(Backend& be, std::string what) : be_(&be), what_(std::move(what)) {}
  // x's contents in be's memory: x.data() on the host, else queued to the
  // device (x unchanged until the next synchronize()).
  float* place(std::vector<float>& x);
  // Room for x.size() floats an op will write (x.data() on the host; nothing
  // uploaded to a device), read back with fetch(x).
  float* output(std::vector<float>& x);
  // The chunk placed last, x.size() floats, back into x (device: a download
  // and a synchronize; the host: nothing, it was computed in place).
  void fetch(std::vector<float>& x);

 private:
  Backend* be_;
  std::string what_;
  Buffer<float> buf_;
};

// The RoPE tables of `table` (host arrays) where be's ops read them.
class ResidentRope {
 public:
  ResidentRope(Backend& be, const RopeTable& host);
  const RopeTable& table() const { return table_; }

 private:
  Buffer<float> cos_, sin_;
  RopeTable table_;
};

}  // namespace streamq
