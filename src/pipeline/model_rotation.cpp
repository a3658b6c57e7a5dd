// A job's rotations (see model_rotation.h).
#include "src/pipeline/model_rotation.h"

#include "src/core/error.h"
#include "src/model/resident_block.h"

namespace streamq {
namespace {

// H_m of `h` where be's hadamard_rows reads it: the host array, or an upload
// into `device` (kept for the rotation's life).
const float* place_hm(Backend& be, const HadamardTransform& h, const char* what, Buffer<float>* device) {
  if (be.host_addressable()) return h.hm().data();
  *device = be.upload_new(h.hm(), what);
  be.synchronize();
  return device->data();
}

// A transform (apply/inverse on rows) as the Rotation the weight functions
// take; `t` must outlive it.
template <class T>
Rotation rotation_of(const T& t) {
  return {t.size(), [&t](float* v, int64_t rows) { t.apply(v, rows); },
          [&t](float* v, int64_t rows) { t.inverse(v, rows); }};
}

}  // namespace

const char* to_string(RotationSpec::Kind k) {
  switch (k) {
    case RotationSpec::Kind::None: return "none";
    case RotationSpec::Kind::Hadamard: return "hadamard";
    case RotationSpec::Kind::Random: return "random";
  }
  return "none";
}

RotationSpec::Kind parse_rotation_kind(const std::string& s, const std::string& flag) {
  if (s == "none") return RotationSpec::Kind::None;
  if (s == "hadamard") return RotationSpec::Kind::Hadamard;
  if (s == "random") return RotationSpec::Kind::Random;
  throw InputError(flag + " '" + s + "': expected none, hadamard or random");
}

nlohmann::json RotationSpec::to_json() const {
  nlohmann::json j = {{"rotate", to_string(kind)}, {"seed", seed}, {"online_hadamard", online_hadamard}};
  // Only when on: identities of jobs without them stay as they were.
  if (online_hadamard_o_proj) j["online_hadamard_o_proj"] = true;
  if (head_hadamard) j["head_hadamard"] = true;
  return j;
}

ModelRotation::ModelRotation(Backend& be, const ModelConfig& cfg, const RotationSpec& spec,
                             const std::string& model_dir, OnlineWeights online_weights)
    : spec_(spec), online_weights_(online_weights), cfg_(cfg) {
  if (spec.kind == RotationSpec::Kind::Hadamard) {
    try {
      hadamard_.emplace(cfg.hidden, random_signs(cfg.hidden, spec.seed));
    } catch (const InputError& e) {
      throw InputError("--rotate hadamard: hidden size of " + model_dir + ": " + e.what() +
                       "; use --rotate random (a random orthogonal matrix of any size), or run without --rotate");
    }
    rotation_ = rotation_of(*hadamard_);
  } else if (spec.kind == RotationSpec::Kind::Random) {
    random_.emplace(cfg.hidden, spec.seed);
    rotation_ = rotation_of(*random_);
  }
  if (spec.online_hadamard) {
    try {
      online_.emplace(cfg.intermediate);
    } catch (const InputError& e) {
      throw InputError("--online-hadamard: intermediate size of " + model_dir + ": " + e.what() +
                       "; run without --online-hadamard");
    }
    online_rotation_ = rotation_of(*online_);
    online_hm_ = place_hm(be, *online_, "online Hadamard matrix", &online_hm_device_);
  }
  if (spec.online_hadamard_o_proj) {
    const int64_t q_dim = cfg.heads * cfg.head_dim;
    try {
      online_o_.emplace(q_dim);
    } catch (const InputError& e) {
      throw InputError("--online-hadamard: attention output width (heads x head_dim = " + std::to_string(cfg.heads) +
                       " x " + std::to_string(cfg.head_dim) + " = " + std::to_string(q_dim) + ", o_proj's input) of " +
                       model_dir + ": " + e.what() + "; run without --online-hadamard");
    }
    online_o_rotation_ = rotation_of(*online_o_);
    online_o_hm_ = place_hm(be, *online_o_, "o_proj online Hadamard matrix", &online_o_hm_device_);
  }
  if (spec.head_hadamard) {
    try {
      head_.emplace(cfg.head_dim);
    } catch (const InputError& e) {
      throw InputError("--head-hadamard: head_dim of " + model_dir + ": " + e.what() + "; run without --head-hadamard");
    }
    head_rotation_ = rotation_of(*head_);
    head_hm_ = place_hm(be, *head_, "head Hadamard matrix", &head_hm_device_);
  }
}

void ModelRotation::rotate_rows(float* x, int64_t rows) const {
  if (residual()) rotation_.right(x, rows);
}

void ModelRotation::rotate_block(BlockWeights& w) const {
  if (residual()) streamq::rotate_block(w, cfg_.hidden, rotation_);
  if (online_ && online_weights_ == OnlineWeights::Fuse) rotate_down_input(w, cfg_.intermediate, online_rotation_);
  if (head_ && online_weights_ == OnlineWeights::Fuse) rotate_value_heads(w, cfg_, head_rotation_);
  // After R2: the attention output carries R2 per head, then this transform.
  if (online_o_ && online_weights_ == OnlineWeights::Fuse) rotate_o_input(w, cfg_, online_o_rotation_);
}

void ModelRotation::apply_online(ResidentBlock& block) const {
  if (online_) block.set_online_hadamard(online_hm_, online_->split().m);
  if (online_o_) block.set_o_proj_hadamard(online_o_hm_, online_o_->split().m);
  if (head_) block.set_head_hadamard(head_hm_, head_->split().m);
}

void ModelRotation::apply_online(BlockView& view) const {
  if (online_) {
    view.online_hm = online_hm_;
    view.online_m = online_->split().m;
  }
  if (online_o_) {
    view.o_proj_hm = online_o_hm_;
    view.o_proj_m = online_o_->split().m;
  }
  if (head_) {
    view.head_hm = head_hm_;
    view.head_m = head_->split().m;
  }
}

void ModelRotation::rotate_head(std::vector<float>& w, std::vector<float>& final_norm) const {
  if (residual()) streamq::rotate_head(w, final_norm, rotation_);
}

}  // namespace streamq
