// Perplexity over non-overlapping windows, streamed block by block (one block's
// weights in memory; activations in an ActivationStore).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "kernels/cpu/act_quant.h"
#include "src/model/resident_block.h"
#include "src/pipeline/model_rotation.h"
#include "src/pipeline/tokens.h"

namespace streamq {

class Backend;

struct EvalJob {
  std::string model_dir, data_path;
  std::string text_path;  // instead of data_path: text tokenized with the model's tokenizer.json
  TokensDType tokens_dtype = TokensDType::U16;
  int64_t seqlen = 2048;
  int64_t windows = 0;  // <= 0: every whole window of the file
  int64_t chunk_tokens = 4096;
  // When set: the first window's logits, float32 [seqlen, vocab], as .npy, so
  // other implementations (bench/torch_gptq_check.py) can be compared logit by logit.
  std::string logits_out;
  // W4A4KV4-style evaluation of a (fake-quant) model: every linear's input
  // quantized per token, the KV cache per head (bits 16 = off, today's numbers).
  ActQuantConfig act, kv;
  // Evaluate the model rotated (src/pipeline/model_rotation.h): QuaRot's R1
  // of the residual stream (a seeded randomized Hadamard, or a random
  // orthogonal matrix for any hidden size) fused into each block as it is
  // loaded, the embedding and the head, and/or the online Hadamard before
  // down_proj. The FP numbers move by float rounding only; with act
  // quantization the linears see rotated inputs. A checkpoint quantize wrote
  // rotated is evaluated as it is (its config's streamq_rotation), with the
  // online transform's activation side applied when it carries one.
  RotationSpec rotation;
  // On a device: how each block is held there (src/model/resident_block.h).
  DeviceWeights device_weights = DeviceWeights::F32;
};

struct EvalResult {
  int64_t windows = 0, predictions = 0;
  double mean_nll = 0, ppl = 0, seconds = 0;
  uint64_t peak_rss_bytes = 0;
  std::vector<double> per_window_nll;  // mean NLL of each window
};

// Each window starts at position 0 and predicts its tokens 1..seqlen-1 (the
// fixtures' ppl_baseline protocol); NLL in natural log, accumulated in float64.
EvalResult run_eval(const EvalJob& job, Backend& backend, std::ostream* progress);

// Summed NLL of logits[t, vocab] predicting targets[t]: float exp terms
// summed in double, within the bound derived in eval.cpp of the float64
// reference below; the same double for any thread count.
double sum_nll(const float* logits, const int32_t* targets, int64_t tokens, int64_t vocab);
// The slow twin: log-softmax in float64 (libm exp per element).
double sum_nll_reference(const float* logits, const int32_t* targets, int64_t tokens, int64_t vocab);

}  // namespace streamq
