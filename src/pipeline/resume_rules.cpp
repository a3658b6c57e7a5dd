// The resume table of `streamq quantize --workdir`.
#include "src/pipeline/resume_rules.h"

#include <iterator>
#include <sstream>

namespace streamq {
namespace {

// Frozen: compared with the manifest's identity (model files, calibration,
// method, output) on every resume. May change: the bytes never depend on
// them (tests/pipeline/test_memory_limit.cpp, test_quantize_pipeline.cpp,
// tests/methods/test_linear_concurrency.cpp and tests/job/test_resume.cpp
// check placement, I/O path, threads, concurrency and memory limit).
constexpr ResumeRule kRules[] = {
    // What is quantized, and on which data.
    {"--model", false, "the model files (fingerprinted by name, size and hashed ends; a moved directory is the same model)"},
    {"--calib", false, "calibration tokens (hashed)"},
    {"--calib-text", false, "calibration tokens (hashed)"},
    {"--calib-samples", false, "calibration tokens and sample lengths (hashed)"},
    {"--calib-select", false, "which calibration samples (hashed tokens)"},
    {"--calib-split", false, "how a text file is cut into samples (hashed tokens)"},
    {"--tokens-dtype", false, "calibration tokens (hashed)"},
    {"--nsamples", false, "calibration"},
    {"--seqlen", false, "calibration"},
    {"--seed", false, "calibration windows drawn"},
    // How: every method flag is part of the method's fingerprint.
    {"--preset", false, "method (through the values it fills in; the preset's name itself is not compared)"},
    {"--method", false, "method"},
    {"--cae", false, "method"},
    {"--cae-source", false, "method"},
    {"--gptaq-alpha", false, "method"},
    {"--cae-alpha", false, "method"},
    {"--variant", false, "method"},
    {"--p1-original", false, "method"},
    {"--loaq", false, "method (LoaQ)"},
    {"--loaq-alpha", false, "method (LoaQ)"},
    {"--loaq-beta", false, "method (LoaQ)"},
    {"--loaq-norm", false, "method (LoaQ)"},
    {"--bits", false, "method"},
    {"--group", false, "method"},
    {"--sym", false, "method"},
    {"--asym", false, "method"},
    {"--checkpoint-format", false, "method (zero points the grid may use)"},
    {"--grid-style", false, "method"},
    {"--grid", false, "method"},
    {"--scale-refine-iters", false, "method"},
    {"--mse-grid", false, "method"},
    {"--mse-max-shrink", false, "method"},
    {"--mse-norm", false, "method"},
    {"--act-order", false, "method"},
    {"--static-groups", false, "method"},
    {"--percdamp", false, "method"},
    {"--blocksize", false, "method"},
    {"--abits", false, "method (the quantized flow's activations)"},
    {"--a-sym", false, "method (the quantized flow's activations)"},
    {"--a-clip", false, "method (the quantized flow's activations)"},
    {"--kv-bits", false, "method (the quantized flow's KV cache)"},
    {"--kv-clip", false, "method (the quantized flow's KV cache)"},
    {"--rotate", false, "method (the rotation fused into the weights)"},
    {"--rotate-seed", false, "method (the rotation fused into the weights)"},
    {"--online-hadamard", false, "method (the online Hadamard before down_proj)"},
    {"--head-hadamard", false, "method (the per-head rotations of values and queries/keys)"},
    {"--learn", false, "method (the trained weights the method quantizes)"},
    {"--sde-band", false, "method (the trained weights the method quantizes)"},
    {"--cl-lambda", false, "method (the trained weights the method quantizes)"},
    {"--learn-epochs", false, "method (the trained weights the method quantizes)"},
    {"--learn-lr", false, "method (the trained weights the method quantizes)"},
    {"--learn-batch", false, "method (the trained weights the method quantizes)"},
    // The stored activations' shape, and what the output is.
    {"--chunk-tokens", false, "the stored activation chunks (a resumed job cannot re-cut them)"},
    {"--format", false, "output format"},
    {"--gguf-type", false, "output format"},
    // Where the arithmetic runs: a device's float32 sweep gives other bytes
    // than the host's float64 one (the manifest's output.arithmetic).
    {"--device", false, "arithmetic (cpu, or a device and where its sweep runs)"},
    {"--sweep-precision", false, "arithmetic (the device sweep's float32 or float64)"},
    {"--factor-precision", false, "arithmetic (the device factor's float32 or float64)"},
    {"--device-weights", false, "arithmetic (a device's blocks held in float32 or bf16)"},
    // Operational: the same bytes whatever the value.
    {"--out", true, "where the output goes"},
    {"--gpu-mem-limit", true,
     "device memory budget (the chunking is the workdir's; a limit that moves the factor between device and "
     "host changes the arithmetic, which the identity check then refuses by name)"},
    {"--emulated-pcie-gbps", true, "emulated copy speed (timing only)"},
    {"--overwrite", true, "whether an existing --out may be replaced"},
    {"--workdir", true, "the job itself"},
    {"--restart", true, "discards the job instead of resuming it"},
    {"--activations", true, "where boundaries live; lossless float32 on disk"},
    {"--host-mem-limit", true, "the memory plan (a resumed job keeps its stored chunking)"},
    {"--prefetch-depth", true, "I/O overlap only"},
    {"--linear-concurrency", true, "linears written in a fixed order"},
    {"--recompute-group-inputs", true, "staged or recomputed group inputs: the same values"},
    {"--io", true, "io_uring or pread/pwrite: the same bytes on disk"},
    {"--zstd-level", true, "lossless compression of stored boundaries"},
    {"--report", true, "an extra copy of the report"},
    {"--trace", true, "observation only"},
    {"--threads", true, "deterministic across thread counts"},
    {"--quiet", true, "progress lines"},
    {"--help", true, "prints help"},
};

}  // namespace

std::span<const ResumeRule> resume_rules() { return kRules; }

const ResumeRule* find_resume_rule(const std::string& flag) {
  for (const ResumeRule& r : kRules)
    if (flag == r.flag) return &r;
  return nullptr;
}

std::string describe_resume_rules() {
  std::ostringstream s;
  for (const bool can : {true, false}) {
    s << (can ? "on resume, may change:\n" : "on resume, fixed (a rerun with another value is refused):\n");
    for (const ResumeRule& r : kRules)
      if (r.can_override == can && std::string(r.flag) != "--help") s << "  " << r.flag << "  (" << r.why << ")\n";
  }
  return s.str();
}

}  // namespace streamq
