// The streaming quantization job: one decoder block in memory at a time,
// calibration activations of both flows in an ActivationStore, sub-layers in
// true-sequential order.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/act_quant.h"
#include "io/store/compressed_store.h"
#include "kernels/backend.h"
#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"
#include "src/model/resident_block.h"
#include "src/pipeline/block_learning.h"
#include "src/pipeline/calibration_samples.h"
#include "src/pipeline/memory_plan.h"
#include "src/pipeline/model_rotation.h"
#include "src/pipeline/tokens.h"

namespace streamq {

class Backend;

// What a quantization job writes: the fake-quant checkpoint plus
// streamq_quant.safetensors; the packed GPTQ checkpoint (src/export/
// gptq_export.h) in the quant config's checkpoint_format; compressed-tensors
// (vLLM); or a GGUF file beside the fake-quant output.
enum class OutputFormat { Fake, Gptq, CompressedTensors, Gguf };
const char* to_string(OutputFormat f);  // "fake", "gptq", "compressed-tensors", "gguf"
// InputError naming --format for anything else.
OutputFormat parse_output_format(const std::string& s);

// Everything that decides a job's output bytes, in one struct: a resumable
// job's manifest freezes it (make_identity in quantize.cpp; which flag may
// change on resume and which may not is src/pipeline/resume_rules.h's table,
// printed by `streamq status`). QuantizeJob adds the operational fields,
// which never change the bytes.
struct JobSpec {
  std::string model_dir, calib_path;
  std::string calib_text_path;  // instead of calib_path: text tokenized with the model's tokenizer.json
  // Instead of both: one sequence per sample, cut to seqlen, shorter ones kept
  // at their length (src/pipeline/calibration_samples.h).
  std::string calib_samples_path;
  SampleSelect calib_select = SampleSelect::Random;  // which nsamples samples: a seeded draw or the first
  TextSplit calib_split = TextSplit::Auto;           // a text file's samples: lines or paragraphs
  TokensDType tokens_dtype = TokensDType::U16;
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 0;
  QuantConfig quant;
  LoaqConfig loaq;              // LoaQ: quantize a transformed target instead of W
  int64_t chunk_tokens = 4096;  // tokens per activation chunk (whole sequences, at least one)
  OutputFormat format = OutputFormat::Fake;
  // The GPTQ sweep's arithmetic when run_quantize's backend is a device and
  // its sweep op covers the method (MethodBackends); the CPU path's sweep is
  // float64 on the host whatever this says. (Which device ran is frozen too:
  // the manifest's output.arithmetic.)
  SweepPrecision sweep_precision = SweepPrecision::F32;
  FactorPrecision factor_precision = FactorPrecision::F32;  // on a device: the factor's arithmetic there
  DeviceWeights device_weights = DeviceWeights::F32;  // on a device: how blocks are held there (resident_block.h)
  // W4A4-style calibration (issue 17): the quantized flow runs with every
  // linear's input quantized per token and the KV cache per head, so its
  // statistics see what the quantized model will run on; the FP flow stays
  // full precision. Bits 16 = off (today's bytes).
  ActQuantConfig act, kv;
  // QuaRot's rotations (issue 17, src/pipeline/model_rotation.h): the
  // residual stream's R1 fused into each block as it loads (norms folded),
  // the embedding and head rotated once into the workdir
  // (src/pipeline/rotated_ends.h); the online Hadamard before down_proj in
  // both flows' forwards. The outputs hold the rotated weights and say so
  // in config.json (streamq_rotation). Off: today's bytes.
  RotationSpec rotation;
  // CQE+'s learned adjustment (issue 18, src/pipeline/block_learning.h):
  // each block's linears trained through their SVD band before the method
  // quantizes them; the FP flow is then run and stored whatever the method
  // reads. Off: today's bytes.
  LearnConfig learn;
};

// A job: its spec, and how it runs (where, with which budgets, what it logs).
struct QuantizeJob : JobSpec {
  std::string out_dir;
  // The CLI's --preset that filled the method flags not given ("" = none):
  // recorded with the effective settings; the bytes follow those alone.
  std::string preset;
  // Where block-boundary activations live: Auto (memory when the host
  // budget holds them, else disk), Memory or Disk (the compressed store).
  // Enums parsed once by the CLI (tools/cli_quantize.cpp).
  Placement activations = Placement::Auto;
  uint64_t host_mem_limit = UINT64_MAX;  // --host-mem-limit; the plan (src/pipeline/memory_plan.h) keeps under it
  int prefetch_depth = 2;                // chunks read ahead / written behind (disk placement, workdir mirror)
  // Linears of a sub-layer group (q,k,v; gate,up) quantized at once: 0 = as
  // many as memory allows (the plan's choice, up to the largest group), N =
  // at most N. Never changes the output bytes.
  int linear_concurrency = 0;
  // The disk store: zstd-compressed, checksummed chunks through io_uring (or
  // pread/pwrite). Stored as float32 so every placement gives the same bytes.
  IoPath io_path = IoPath::Auto;
  int zstd_level = 1;
  bool overwrite = false;       // replace an existing non-empty out_dir
  std::string report_path;      // extra copy of the JSON report ("" = none)
  std::string trace_path;       // Chrome trace-event JSON of the run ("" = no tracing)
  // A resumable job directory ("" = a scratch one removed at the end): the
  // manifest, finished blocks and the next block's input activations; the
  // same command run again resumes from the last finished block.
  std::string workdir;
  bool restart = false;         // discard a job found in workdir
  // Rerun the block up to each sub-layer group for its statistics instead
  // of keeping every group's input (staged; the default where it applies).
  // Never changes the bytes; uses less memory and more time.
  bool recompute_group_inputs = false;
  // Test hook: the activation store's file layer wrapped (fault injection).
  // (The crash test's kill points are process-wide: src/core/kill_point.h.)
  IoBackendWrapper io_wrap;
};

struct LinearReport {
  std::string name;  // full tensor prefix, e.g. model.layers.0.self_attn.q_proj
  int64_t out = 0, in = 0;
  double seconds = 0, seconds_factor = 0, seconds_sweep = 0;
  double objective = 0;  // ||(W - Q) X||^2 per token
  double weight_sq = 0;  // ||W X||^2 per token, so objectives can be read relatively
  int cholesky_retries = 0;
  double damp = 0;
  int64_t dead_inputs = 0;
  uint64_t working_bytes = 0;  // the method's peak working set for this linear
  // objective / weight_sq: the error as a fraction of the output (0 for a zero output).
  double relative_objective() const { return weight_sq > 0 ? objective / weight_sq : 0.0; }
};

struct BlockReport {
  int64_t index = 0;
  double seconds = 0, seconds_stats = 0, seconds_quant = 0, seconds_propagate = 0;
  // The block's output activations as stored (disk placement): bytes before
  // and after compression, both flows.
  uint64_t activation_raw_bytes = 0, activation_compressed_bytes = 0;
  std::vector<LinearReport> linears;
  std::optional<LearnReport> learn;  // --learn: the block's training
  nlohmann::json to_json() const;
  static BlockReport from_json(const nlohmann::json& j);
};

struct QuantizeReport {
  std::string model_dir, out_dir, method;
  int64_t nsamples = 0, seqlen = 0;
  uint64_t seed = 0;
  nlohmann::json calibration;   // sequences, tokens, samples truncated (CalibrationSet::to_json)
  // Every setting that decided the output, defaults included: preset, method
  // (quant config + LoaQ), calibration source and draw, format, arithmetic.
  // Also in the checkpoint's metadata (kSettingsMetadataKey).
  nlohmann::json settings;
  // This run's CPU time (user, system), page faults (minor, major) and CPU
  // seconds per wall second: where allocation and first-touch costs show.
  nlohmann::json process;
  // How each group's input was had: "staged: ..." or "recomputed: ...".
  std::string group_inputs;
  double total_seconds = 0;
  uint64_t peak_rss_bytes = 0;
  std::string workdir, job_id;  // a resumable job's directory and id
  int64_t resumed_at_block = 0; // blocks an earlier process had finished
  std::string activations;      // where the activations lived: "memory", or the store's I/O path
  // The flows computed, stored and read: "quant", and "fp" when the method
  // reads the FP model's activations (MethodNeeds::fp_flow).
  std::vector<std::string> flows;
  std::vector<BlockReport> blocks;
  nlohmann::json profile;       // trace summary (stages, overlap) when traced
  std::string profile_text;     // the same, formatted as `streamq profile` prints it
  nlohmann::json device;        // the backend, its memory limit and high-water mark, where each stage ran
  nlohmann::json memory;        // the memory plan: limit, placement, chunking, depth, estimated peak
  std::string memory_text;      // the plan as `describe()` prints it
  nlohmann::json gptq_export;   // --format gptq: what was packed and what stayed dense
  bool already_complete = false;  // the workdir's job had finished and its output exists
  nlohmann::json to_json() const;
  static QuantizeReport from_json(const nlohmann::json& j);
};

// The mean of relative_objective() over every linear of `blocks` (0 for
// none): what the progress line of a block and the final summary print.
double mean_relative_objective(std::span<const BlockReport> blocks);

// Runs the job; progress lines (one per block, with ETA) go to `progress`
// unless it is null. Outputs land in job.out_dir only when complete.
QuantizeReport run_quantize(const QuantizeJob& job, Backend& backend, std::ostream* progress);

}  // namespace streamq
