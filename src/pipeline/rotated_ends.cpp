// A rotated model's embedding, final norm and head (see rotated_ends.h).
#include "src/pipeline/rotated_ends.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "src/core/error.h"
#include "src/core/kill_point.h"

namespace streamq {

void round_through_dtype(DType dtype, float* x, int64_t n) {
  if (dtype == DType::F32) return;
  std::vector<unsigned char> buf(static_cast<size_t>(n) * dtype_size(dtype));
  convert_from_f32(dtype, x, buf.data(), static_cast<size_t>(n));
  convert_to_f32(dtype, buf.data(), x, static_cast<size_t>(n));
}

void write_rotated_ends(const Model& model, const ModelRotation& rot, const std::string& dir,
                        const std::map<std::string, std::string>& metadata, uint64_t panel_bytes) {
  if (!rot.residual()) throw InternalError("write_rotated_ends without a residual rotation");
  const ModelConfig& cfg = model.config();
  const SafetensorsModel& st = model.tensors();
  const std::string embed = "model.embed_tokens.weight", norm = "model.norm.weight", head = "lm_head.weight";
  const std::string head_source = cfg.tie_word_embeddings ? embed : head;
  const TensorInfo& te = st.info(embed);
  const TensorInfo& th = st.info(head_source);
  SafetensorsWriter w(dir,
                      {{embed, te.dtype, {cfg.vocab, cfg.hidden}},
                       {norm, st.info(norm).dtype, {cfg.hidden}},
                       {head, th.dtype, {cfg.vocab, cfg.hidden}}},
                      metadata, UINT64_MAX, kRotatedEndsBase);
  const int64_t rows_per_panel =
      std::max<int64_t>(1, static_cast<int64_t>(panel_bytes / (static_cast<uint64_t>(cfg.hidden) * sizeof(float))));
  const std::vector<float>& g = model.final_norm();
  std::vector<float> panel;
  for (const std::string* name : {&embed, &head_source}) {
    const TensorInfo& t = st.info(*name);
    const auto* base = static_cast<const unsigned char*>(st.file_of(*name).data(t));
    const size_t row_bytes = static_cast<size_t>(cfg.hidden) * dtype_size(t.dtype);
    const bool is_head = name == &head_source;
    for (int64_t r0 = 0; r0 < cfg.vocab; r0 += rows_per_panel) {
      const int64_t rows = std::min(rows_per_panel, cfg.vocab - r0);
      panel.resize(static_cast<size_t>(rows * cfg.hidden));
      convert_to_f32(t.dtype, base + static_cast<size_t>(r0) * row_bytes, panel.data(), panel.size());
      for (size_t i = 0; i < panel.size(); ++i)
        if (!std::isfinite(panel[i]))
          throw InputError(st.file_of(*name).path() + ": tensor '" + *name + "' has a non-finite value at element " +
                           std::to_string(static_cast<size_t>(r0 * cfg.hidden) + i));
      if (is_head)  // the final norm folded into the head's columns
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < cfg.hidden; ++i) panel[static_cast<size_t>(r * cfg.hidden + i)] *= g[i];
      rot.rotate_rows(panel.data(), rows);
      w.write_f32_part(is_head ? head : embed, r0 * cfg.hidden, panel.data(), rows * cfg.hidden);
      kill_point(KillPoint::RotatedPanel);
    }
  }
  const std::vector<float> ones(static_cast<size_t>(cfg.hidden), 1.0f);
  w.write_f32(norm, ones.data(), cfg.hidden);
  w.finish();
}

}  // namespace streamq
