// `streamq layer`: quantize one linear from tensors on disk with the same
// statistics, method and LoaQ code the pipeline uses.
#pragma once

#include <string>

#include "kernels/backend.h"
#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"

namespace streamq {

class Backend;

struct LayerJob {
  std::string weight_path;  // W (out, in)
  std::string x_path;       // X (in, tokens): the quantized-flow input
  std::string xfp_path;     // X~ (in, tokens), "" = same as X
  std::string out_dir;
  QuantConfig quant;
  LoaqConfig loaq;          // linear-layer output approximation only (no residual streams here)
  int64_t chunk_tokens = 4096;
  // The sweep's arithmetic on a device backend (see QuantizeJob).
  SweepPrecision sweep_precision = SweepPrecision::F32;
  FactorPrecision factor_precision = FactorPrecision::F32;  // the factor on a device (always there: no plan)
};

struct LayerResult {
  double objective_fp = 0;  // ||W X~ - Q X||^2
  double objective_q = 0;   // ||W X - Q X||^2
  int64_t rows = 0, cols = 0, tokens = 0;
  std::string factor;  // where the Hessian's factor ran: "cpu float64", "emulated float32", ...
};

// Writes q.npy (float64 (out, in)), codes.npy (uint8), scales.npy and
// zeros.npy (float64 (groups, out)), g_idx.npy (int32 (in,)) into out_dir.
// Statistics' chunk products and the sweep (where its op covers the method)
// run on `backend`; a device gets a CPU backend beside it for the rest.
LayerResult run_layer(const LayerJob& job, Backend& backend);

}  // namespace streamq
