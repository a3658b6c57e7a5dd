// The ends of a model quantize --rotate rotates (issue 17): the embedding
// E R, the final norm (folded into the head, so all ones) and the head
// (W diag(g)) R, the embedding's rows standing in for W when the model ties
// them (the rotated head is then its own tensor: the two differ by g). They
// are computed in row panels (never the whole [vocab, hidden] in memory),
// written to the workdir once, before the first boundary, and copied into
// the output by assemble_checkpoint in place of the source's.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "src/core/dtype.h"
#include "src/model/model.h"
#include "src/pipeline/model_rotation.h"

namespace streamq {

// The file's name, relative to the workdir (and its SafetensorsWriter base).
inline constexpr const char* kRotatedEndsBase = "rotated_ends";
inline constexpr const char* kRotatedEndsFile = "rotated_ends.safetensors";

// Writes `dir`/rotated_ends.safetensors (durable on return) with
// model.embed_tokens.weight, model.norm.weight and lm_head.weight in the
// source's dtypes (the head in the embedding's when tied), rotating rows
// in panels of about `panel_bytes` of float32. rot must have a residual
// rotation.
void write_rotated_ends(const Model& model, const ModelRotation& rot, const std::string& dir,
                        const std::map<std::string, std::string>& metadata, uint64_t panel_bytes = 64ull << 20);

// x[i] <- the value x[i] takes when stored in `dtype` (what the output holds).
void round_through_dtype(DType dtype, float* x, int64_t n);

}  // namespace streamq
