// Block weights, RoPE tables and the head placed in a backend's memory.
#include "src/model/resident_block.h"

#include "src/core/dtype.h"
#include "src/core/error.h"

namespace streamq {

const char* to_string(DeviceWeights w) { return w == DeviceWeights::Bf16 ? "bf16" : "f32"; }

namespace {

// bf16 bits of a float array (round to nearest even), for one upload: the
// copy is from pageable memory, which the host may free once the call
// returns (kernels/backend.h).
std::vector<uint16_t> to_bf16(const std::vector<float>& w) {
  std::vector<uint16_t> bits(w.size());
  for (size_t i = 0; i < w.size(); ++i) bits[i] = f32_to_bf16(w[i]);
  return bits;
}

}  // namespace

ResidentBlock::ResidentBlock(Backend& be, const BlockWeights& w, DeviceWeights weights)
    : be_(&be), weights_(weights) {
  if (be.host_addressable()) {
    if (weights == DeviceWeights::Bf16)
      throw InternalError("ResidentBlock: bf16 weights need a device (backend " + be.name() +
                          " reads the host's float32 arrays in place)");
    view_ = host_view(w);
    return;
  }
  const std::string prefix = "block " + std::to_string(w.index) + " ";
  view_.input_norm = place(w.input_norm, prefix + "input_layernorm");
  view_.post_norm = place(w.post_norm, prefix + "post_attention_layernorm");
  if (!w.q_norm.empty()) view_.q_norm = place(w.q_norm, prefix + "q_norm");
  if (!w.k_norm.empty()) view_.k_norm = place(w.k_norm, prefix + "k_norm");
  for (const auto& [name, l] : w.linears) {
    LinearView& v = view_.linears[name];
    if (weights == DeviceWeights::Bf16) v.w_bf16 = place_bf16(l.w, prefix + name + ".weight (bf16)");
    else v.w = place(l.w, prefix + name + ".weight");
    if (!l.b.empty()) v.b = place(l.b, prefix + name + ".bias");
  }
}

const float* ResidentBlock::place(const std::vector<float>& host, const std::string& what) {
  Buffer<float>& b = owned_[what];
  b = be_->upload_new(host, what);
  return b.data();
}

const uint16_t* ResidentBlock::place_bf16(const std::vector<float>& host, const std::string& what) {
  Buffer<uint16_t>& b = owned_bf16_[what];
  b = be_->upload_new(to_bf16(host), what);  // pageable: the temporary may go once the call returns
  return b.data();
}

void ResidentBlock::replace_weight(const std::string& name, const std::vector<float>& w) {
  const auto it = view_.linears.find(name);
  if (it == view_.linears.end()) throw InternalError("ResidentBlock: no linear " + name);
  if (be_->host_addressable()) {
    it->second.w = w.data();
    return;
  }
  if (weights_ == DeviceWeights::Bf16) {
    for (auto& [what, buf] : owned_bf16_) {
      if (buf.data() != it->second.w_bf16) continue;
      if (buf.size() != w.size())
        throw InternalError("ResidentBlock: " + name + " has " + std::to_string(buf.size()) + " weights, not " +
                            std::to_string(w.size()));
      const std::vector<uint16_t> bits = to_bf16(w);
      be_->upload(buf, bits.data(), bits.size());
      return;
    }
    throw InternalError("ResidentBlock: " + name + "'s weight is not resident");
  }
  for (auto& [what, buf] : owned_) {
    if (buf.data() != it->second.w) continue;
    if (buf.size() != w.size())
      throw InternalError("ResidentBlock: " + name + " has " + std::to_string(buf.size()) + " weights, not " +
                          std::to_string(w.size()));
    be_->upload(buf, w.data(), w.size());
    return;
  }
  throw InternalError("ResidentBlock: " + name + "'s weight is not resident");
}

uint64_t ResidentBlock::device_bytes() const {
  uint64_t n = 0;
  for (const auto& [what, buf] : owned_) n += buf.bytes();
  for (const auto& [what, buf] : owned_bf16_) n += buf.bytes();
  return n;
}

ResidentHead::ResidentHead(Backend& be, const Model& model)
    : ResidentHead(be, model.config(), model.final_norm(), model.head_weight()) {}

ResidentHead::ResidentHead(Backend& be, const ModelConfig& cfg, const std::vector<float>& norm,
                           const std::vector<float>& w)
    : be_(&be), cfg_(cfg) {
  if (be.host_addressable()) {
    norm_ = norm.data();
    w_ = w.data();
    return;
  }
  norm_buf_ = be.upload_new(norm, "final norm");
  w_buf_ = be.upload_new(w, "output layer (lm_head)");
  norm_ = norm_buf_.data();
  w_ = w_buf_.data();
}

void ResidentHead::logits(const float* x, int64_t tokens, float* logits) const {
  Buffer<float> h = be_->alloc<float>(static_cast<size_t>(tokens * cfg_.hidden), "head: normed hidden state");
  be_->rmsnorm(x, norm_, h.data(), tokens, cfg_.hidden, static_cast<float>(cfg_.rms_eps));
  be_->gemm(Trans::N, Trans::T, tokens, cfg_.vocab, cfg_.hidden, 1.0f, h.data(), cfg_.hidden, w_, cfg_.hidden, 0.0f,
            logits, cfg_.vocab);
}

float* ResidentChunk::output(std::vector<float>& x) {
  if (be_->host_addressable()) return x.data();
  if (buf_.size() < x.size()) {
    buf_.reset();  // the old one is returned to the pool before the larger one is drawn
    buf_ = be_->alloc<float>(x.size(), what_);
  }
  return buf_.data();
}

float* ResidentChunk::place(std::vector<float>& x) {
  float* p = output(x);
  if (!be_->host_addressable()) be_->upload(buf_, x.data(), x.size());
  return p;
}

void ResidentChunk::fetch(std::vector<float>& x) {
  if (be_->host_addressable()) return;
  be_->download(x.data(), buf_, x.size());
  be_->synchronize();
}

ResidentRope::ResidentRope(Backend& be, const RopeTable& host) : table_(host) {
  if (be.host_addressable()) return;
  const size_t n = static_cast<size_t>(host.max_pos * host.half_dim);
  cos_ = be.alloc<float>(n, "RoPE cos table");
  sin_ = be.alloc<float>(n, "RoPE sin table");
  be.upload(cos_, host.cos, n);
  be.upload(sin_, host.sin, n);
  table_.cos = cos_.data();
  table_.sin = sin_.data();
}

}  // namespace streamq
