// The offline rotation of the residual stream (see rotation.h).
#include "src/model/rotation.h"

#include <algorithm>
#include <string>

#include "src/core/error.h"

namespace streamq {
namespace {

// w[out, in] <- w diag(g): the norm's weight moves into the columns that read it.
void fold_columns(std::vector<float>& w, const std::vector<float>& g) {
  const size_t in = g.size();
  for (size_t i = 0; i < w.size(); ++i) w[i] *= g[i % in];
}

// w[out, in] with out = n: w <- R^T w, i.e. every column c <- R^T c, which
// as a row is c^T R: transpose, rotate the rows, transpose back.
void rotate_output_side(std::vector<float>& w, int64_t in, const Rotation& r) {
  const int64_t out = r.n;
  std::vector<float> t(w.size());
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) t[i * out + o] = w[o * in + i];
  r.right(t.data(), in);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) w[o * in + i] = t[i * out + o];
}

void check_size(const Rotation& r, int64_t hidden, const char* what) {
  if (r.n != hidden)
    throw InternalError(std::string(what) + ": a rotation of size " + std::to_string(r.n) + " for hidden size " +
                        std::to_string(hidden));
}

}  // namespace

void rotate_block(BlockWeights& w, int64_t hidden, const Rotation& r) {
  check_size(r, hidden, "rotate_block");
  for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}) {
    std::vector<float>& lw = w.linears.at(name).w;
    fold_columns(lw, w.input_norm);
    r.right(lw.data(), static_cast<int64_t>(lw.size()) / hidden);
  }
  for (const char* name : {"mlp.gate_proj", "mlp.up_proj"}) {
    std::vector<float>& lw = w.linears.at(name).w;
    fold_columns(lw, w.post_norm);
    r.right(lw.data(), static_cast<int64_t>(lw.size()) / hidden);
  }
  for (const char* name : {"self_attn.o_proj", "mlp.down_proj"}) {
    Linear& l = w.linears.at(name);
    rotate_output_side(l.w, static_cast<int64_t>(l.w.size()) / hidden, r);
    if (!l.b.empty()) r.right(l.b.data(), 1);
  }
  w.input_norm.assign(static_cast<size_t>(hidden), 1.0f);
  w.post_norm.assign(static_cast<size_t>(hidden), 1.0f);
}

void rotate_value_heads(BlockWeights& w, const ModelConfig& cfg, const Rotation& r) {
  const int64_t hd = cfg.head_dim, hidden = cfg.hidden;
  check_size(r, hd, "rotate_value_heads");
  Linear& v = w.linears.at("self_attn.v_proj");  // [kv_heads * hd, hidden]
  for (int64_t h = 0; h < cfg.kv_heads; ++h) {
    std::vector<float> rows(v.w.begin() + h * hd * hidden, v.w.begin() + (h + 1) * hd * hidden);
    rotate_output_side(rows, hidden, r);
    std::copy(rows.begin(), rows.end(), v.w.begin() + h * hd * hidden);
    if (!v.b.empty()) r.right(v.b.data() + h * hd, 1);
  }
  std::vector<float>& o = w.linears.at("self_attn.o_proj").w;  // [hidden, heads * hd]: rows of heads * hd
  r.right(o.data(), static_cast<int64_t>(o.size()) / hd);       // each head's hd columns of a row: one vector
}

void rotate_down_input(BlockWeights& w, int64_t intermediate, const Rotation& r) {
  check_size(r, intermediate, "rotate_down_input");
  std::vector<float>& lw = w.linears.at("mlp.down_proj").w;
  r.right(lw.data(), static_cast<int64_t>(lw.size()) / intermediate);
}

void rotate_o_input(BlockWeights& w, const ModelConfig& cfg, const Rotation& r) {
  const int64_t q_dim = cfg.heads * cfg.head_dim;
  check_size(r, q_dim, "rotate_o_input");
  std::vector<float>& lw = w.linears.at("self_attn.o_proj").w;
  r.right(lw.data(), static_cast<int64_t>(lw.size()) / q_dim);
}

void rotate_embedding(std::vector<float>& e, int64_t hidden, const Rotation& r) {
  check_size(r, hidden, "rotate_embedding");
  r.right(e.data(), static_cast<int64_t>(e.size()) / hidden);
}

void rotate_head(std::vector<float>& w, std::vector<float>& final_norm, const Rotation& r) {
  const int64_t hidden = static_cast<int64_t>(final_norm.size());
  check_size(r, hidden, "rotate_head");
  fold_columns(w, final_norm);
  r.right(w.data(), static_cast<int64_t>(w.size()) / hidden);
  final_norm.assign(final_norm.size(), 1.0f);
}

}  // namespace streamq
