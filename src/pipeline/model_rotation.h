// The rotations of a job (issue 17), in one place for `eval` and `quantize`:
// QuaRot's offline rotation R1 of the residual stream (a randomized Hadamard
// or a random orthogonal matrix of the hidden size, fused into every block
// as it loads, the embedding's rows and the head), the online Hadamard R4
// before down_proj and its full-width twin before o_proj (weight sides
// fused, activation sides applied by block_forward through
// BlockView::online_hm and o_proj_hm), and the per-head R2/R3. The math is
// src/model/rotation.h's; this owns the matrices, the device copy of H_m,
// and the errors a user sees.
//
//   ModelRotation rot(be, cfg, spec, "--rotate", model_dir);
//   rot.rotate_rows(x, tokens);           // embedding rows of boundary 0
//   BlockWeights w = model.load_block(b);
//   rot.rotate_block(w);                  // before it is uploaded
//   rot.apply_online(resident_block);     // the forward's halves (R4, o_proj's, R3)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/backend.h"
#include "src/job/block_files.h"
#include "src/methods/hadamard.h"
#include "src/methods/random_orthogonal.h"
#include "src/model/config.h"
#include "src/model/model.h"
#include "src/model/rotation.h"

namespace streamq {

class ResidentBlock;

// What a job asks for. kind None with online_hadamard is allowed: the
// online transform alone (it needs no residual rotation).
struct RotationSpec {
  enum class Kind { None, Hadamard, Random };
  Kind kind = Kind::None;
  uint64_t seed = 0;             // the Hadamard's random signs, or the random matrix's draw
  bool online_hadamard = false;  // R4 before down_proj
  // QuaRot's online Hadamard before o_proj, full width (heads * head_dim).
  // --online-hadamard sets both; a checkpoint written before this existed
  // has online_hadamard alone, and eval applies what its config names.
  bool online_hadamard_o_proj = false;
  bool head_hadamard = false;    // R2 on values/o_proj per head (offline) and R3 on queries/keys (online)
  bool online() const { return online_hadamard || online_hadamard_o_proj; }
  bool enabled() const { return kind != Kind::None || online() || head_hadamard; }
  // {"rotate": "hadamard", "seed": 0, "online_hadamard": false} (and
  // "online_hadamard_o_proj": true, "head_hadamard": true when on): the form
  // job identities, settings and a rotated checkpoint's config.json carry.
  nlohmann::json to_json() const;
};
const char* to_string(RotationSpec::Kind k);  // "none", "hadamard", "random"
// InputError naming `flag` for anything but none|hadamard|random.
RotationSpec::Kind parse_rotation_kind(const std::string& s, const std::string& flag);

// The config.json key a rotated checkpoint records its rotation under
// (ModelConfig::rotation and online_hadamard are parsed from it).
inline constexpr const char* kRotationConfigKey = "streamq_rotation";

class ModelRotation {
 public:
  // Online weights: whether rotate_block fuses R4's and R2's weight sides
  // (a source model) or the checkpoint already carries them (a rotated
  // streamq output, whose forward still needs R4's and R3's activation side).
  enum class OnlineWeights { Fuse, AlreadyFused };
  // Builds the matrices for cfg's sizes. InputError naming `flags` and
  // `model_dir` when no Hadamard matrix reaches the hidden size (then
  // --rotate random is the way), the intermediate size (online), heads *
  // head_dim (online o_proj) or head_dim (heads).
  ModelRotation(Backend& be, const ModelConfig& cfg, const RotationSpec& spec, const std::string& model_dir,
                OnlineWeights online_weights = OnlineWeights::Fuse);
  ModelRotation(const ModelRotation&) = delete;
  ModelRotation& operator=(const ModelRotation&) = delete;

  const RotationSpec& spec() const { return spec_; }
  bool residual() const { return spec_.kind != RotationSpec::Kind::None; }
  bool online() const { return online_.has_value() || online_o_.has_value(); }
  // The block tensors besides the linears' weights that rotate_block changes
  // (a block file holds them: src/job/block_files.h).
  RotatedTensors changed_tensors() const {
    return {residual(), head_.has_value() && online_weights_ == OnlineWeights::Fuse};
  }
  // Rows x[rows, hidden] <- x R (embedding rows; identity without R1).
  void rotate_rows(float* x, int64_t rows) const;
  // A source block, in place: R1 (norms folded), R4's and R2's weight sides.
  void rotate_block(BlockWeights& w) const;
  // The forward's halves of R4, o_proj's online Hadamard and R3 on a
  // block's view (nothing when off).
  void apply_online(ResidentBlock& block) const;
  void apply_online(BlockView& view) const;
  // The head, in place: the final norm folded, w <- w R (nothing without R1).
  void rotate_head(std::vector<float>& w, std::vector<float>& final_norm) const;
  // The R1 rotation (for callers with their own arrays); n = 0 without R1.
  const Rotation& residual_rotation() const { return rotation_; }

 private:
  RotationSpec spec_;
  OnlineWeights online_weights_;
  ModelConfig cfg_;
  std::optional<HadamardTransform> hadamard_;
  std::optional<RandomOrthogonalRotation> random_;
  Rotation rotation_;
  std::optional<HadamardTransform> online_;
  Rotation online_rotation_;
  const float* online_hm_ = nullptr;  // H_m where the backend's ops read it
  Buffer<float> online_hm_device_;
  std::optional<HadamardTransform> online_o_;  // before o_proj, of heads * head_dim
  Rotation online_o_rotation_;
  const float* online_o_hm_ = nullptr;
  Buffer<float> online_o_hm_device_;
  std::optional<HadamardTransform> head_;
  Rotation head_rotation_;
  const float* head_hm_ = nullptr;
  Buffer<float> head_hm_device_;
};

}  // namespace streamq
