// streamq command-line entry point: sets the process-wide allocator policy,
// dispatches subcommands and maps errors to exit codes (0 ok, 2 bad input or
// usage, 1 internal error).
#include <malloc.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "tools/cli_blas_kernels.h"
#include "tools/cli_common.h"
#include "src/core/error.h"
#include "src/core/large_blocks.h"
#include "src/pipeline/memory_plan.h"

namespace {

constexpr const char* kUsage =
    "streamq: out-of-core GPTQ-family quantization of Llama-family models\n"
    "\n"
    "usage: streamq <command> [flags]   (streamq <command> --help for every flag)\n"
    "\n"
    "commands:\n"
    "  quantize   quantize a model (HF safetensors + config.json) block by block\n"
    "  eval       perplexity of a model over non-overlapping token windows (HF, GPTQ checkpoint or GGUF)\n"
    "  export     write a quantize output as a packed GPTQ checkpoint (vLLM, transformers, gptqmodel)\n"
    "  inspect    show a model's config and tensor table\n"
    "  layer      quantize one linear from .npy/.safetensors tensors (W, X, X~) with any method\n"
    "  status     show how far the resumable job in a --workdir got\n"
    "  profile    summarize a --trace file (stage totals, I/O hidden under compute), optional HTML timeline\n"
    "  synth      write a random-weight Llama/Qwen2 checkpoint of any shape or a preset's\n"
    "  tokenize   turn text into the token-id file --calib/--data read, with the model's tokenizer\n"
    "\n"
    "memory: every buffer of 1 MiB or more is pages of its own (glibc's mmap threshold fixed at 1 MiB), as the\n"
    "memory plan of --host-mem-limit assumes; a freed one is kept for the next buffer of about its size while\n"
    "live + kept stays within the stage's peak, so chunks and linears reuse pages instead of faulting in fresh\n"
    "ones (the report's process.large_blocks_reused / _fresh). Environment:\n"
    "  STREAMQ_KEEP_LARGE_BLOCKS=0    unmap every freed large buffer at once (for measurement: more page faults)\n"
    "  STREAMQ_GLIBC_DYNAMIC_MMAP=1   glibc's dynamic threshold for what is not a kept large buffer: more peak\n"
    "                                 RSS, which may pass the plan's estimate (bench/allocator_cost.sh)\n"
    "  OPENBLAS_CORETYPE=NAME         OpenBLAS kernels to run. Unset: the library's choice, or, where it does not\n"
    "                                 know the CPU, the family its features reach (SkylakeX with AVX-512, Haswell\n"
    "                                 with AVX2). Families round differently: Haswell gives the same bytes on\n"
    "                                 every AVX2 machine (scripts/demo_table.sh sets it). The report's settings\n"
    "                                 name the family (blas_kernels), and a --workdir job resumes only under its own\n";

// Before any thread starts or anything is allocated, so the whole run has it
// (src/pipeline/memory_plan.h kPlanMmapThresholdBytes says why).
// Returns false (the policy unchanged) with a one-line error when a switch is
// set to anything but 0 or 1: "false" or "yes" would otherwise be ignored.
bool use_plan_allocator_policy() {
  bool keep = true, dynamic = false;
  for (auto [name, on] : {std::pair{"STREAMQ_KEEP_LARGE_BLOCKS", &keep}, std::pair{"STREAMQ_GLIBC_DYNAMIC_MMAP", &dynamic}}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    if (std::string(v) != "0" && std::string(v) != "1") {
      std::cerr << "streamq: error: " << name << "=" << v << " in the environment: set it to 0 or 1, or unset it\n";
      return false;
    }
    *on = std::string(v) == "1";
  }
  if (!keep) streamq::keep_freed_large_blocks(false);
  if (!dynamic) mallopt(M_MMAP_THRESHOLD, streamq::kPlanMmapThresholdBytes);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  streamq::run_with_the_cpus_blas_kernels(argv);
  if (!use_plan_allocator_policy()) return 2;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  try {
    if (cmd == "quantize") return streamq::cli::run_quantize(args);
    if (cmd == "eval") return streamq::cli::run_eval(args);
    if (cmd == "export") return streamq::cli::run_export(args);
    if (cmd == "inspect") return streamq::cli::run_inspect(args);
    if (cmd == "layer") return streamq::cli::run_layer(args);
    if (cmd == "profile") return streamq::cli::run_profile(args);
    if (cmd == "status") return streamq::cli::run_status(args);
    if (cmd == "synth") return streamq::cli::run_synth(args);
    if (cmd == "tokenize") return streamq::cli::run_tokenize(args);
    std::cerr << "streamq: error: unknown command '" << cmd << "' (commands: quantize, eval, export, inspect, layer, profile, status, synth, tokenize)\n";
    return 2;
  } catch (const streamq::InputError& e) {
    std::cerr << "streamq " << cmd << ": error: " << e.what() << "\n";
    return 2;
  } catch (const boost::program_options::error& e) {
    std::cerr << "streamq " << cmd << ": error: " << e.what() << " (see streamq " << cmd << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "streamq " << cmd << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
