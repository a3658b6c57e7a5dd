// `streamq export`: a quantize output -> a packed GPTQ checkpoint.
#include <iostream>

#include "tools/cli_common.h"
#include "src/core/error.h"
#include <filesystem>

#include "src/export/compressed_tensors_export.h"
#include "scheduler/memory_budget.h"
#include "src/export/gguf_export.h"
#include "src/export/gptq_export.h"
#include "src/export/workdir_export.h"

namespace streamq::cli {
namespace {

CheckpointFormat parse_format(const std::string& s) {
  if (s == "gptq") return CheckpointFormat::Gptq;
  if (s == "gptq_v2") return CheckpointFormat::GptqV2;
  throw InputError("--checkpoint-format '" + s + "': expected gptq or gptq_v2");
}

}  // namespace

int run_export(const std::vector<std::string>& args) {
  std::string from, out, format, max_shard, out_format, gguf_type;
  GptqExportOptions opts;
  bool quiet = false;
  const std::string shard_help =
      std::string("split model.safetensors into shards of at most this size with model.safetensors.index.json. ") +
      kSizeGrammar;
  po::options_description opts_desc("export flags");
  opts_desc.add_options()
      ("help,h", "show this help")
      ("from", po::value(&from),
       "the output directory of streamq quantize (model.safetensors, streamq_quant.safetensors, config.json), "
       "or the --workdir of a finished quantize job (packed from its block files and the source model, which "
       "must still be where the job read it)")
      ("out", po::value(&out),
       "the GPTQ checkpoint directory to write (staged, appears only when complete): model safetensors with "
       "qweight/qzeros/scales/g_idx per packed linear, config.json with quantization_config, "
       "quantize_config.json, tokenizer and side files, streamq_export.json")
      ("format", po::value(&out_format)->default_value("gptq"),
       "what to write: gptq (packed GPTQ, docs/gptq-format.md), compressed-tensors (pack-quantized, the "
       "layout vLLM routes to its WNA16 kernels, asymmetric allowed; docs/compressed-tensors-format.md) or gguf "
       "(one llama.cpp GGUF v3 file, --out names it; needs a quantize output on the --gguf-type grid; "
       "docs/gguf-export.md)")
      ("gguf-type", po::value(&gguf_type),
       "with --format gguf: Q4_0 (4-bit symmetric g32), Q4_1 (4-bit g32 with a free fp16 min) or Q8_0 (8-bit "
       "symmetric g32); the quantize output must have been made on that grid (quantize --format gguf "
       "--gguf-type T sets it)")
      ("checkpoint-format", po::value(&format)->default_value("gptq"),
       "zero-point convention. gptq: the classic layout (qzeros hold zero - 1, loaders add 1 back) that vLLM, "
       "HF transformers (optimum / gptqmodel), gptqmodel and AutoGPTQ load; a checkpoint with an asymmetric "
       "zero point of 0 cannot be written (quantize with --checkpoint-format gptq, the default, to avoid them). "
       "gptq_v2: qzeros hold the zero point as is; read by gptqmodel (and transformers with gptqmodel) and by "
       "vLLM's gptq kernel when checkpoint_format says so, misread by AutoGPTQ and older vLLM. Symmetric "
       "checkpoints load the same either way")
      ("max-shard-size", po::value(&max_shard)->default_value("5GB"),
       shard_help.c_str())
      ("overwrite", po::bool_switch(&opts.overwrite), "replace an existing non-empty --out")
      ("quiet", po::bool_switch(&quiet), "print nothing but errors");
  po::variables_map vm;
  if (!parse("export", "--from QUANT_DIR --out GPTQ_DIR [flags]", opts_desc, args, &vm)) return 0;
  require(vm, {"from", "out"});
  opts.format = parse_format(format);
  opts.max_shard_bytes = parse_size(max_shard, "--max-shard-size");
  if (opts.max_shard_bytes == 0) throw InputError("--max-shard-size: must be at least 1 byte");
  const bool workdir = std::filesystem::exists(from + "/manifest.json");
  if (out_format != "gptq") {
    if (!vm["checkpoint-format"].defaulted())
      throw InputError("--checkpoint-format applies to --format gptq only, not --format " + out_format);
    if (workdir)
      throw InputError("--from " + from + ": --format " + out_format +
                       " exports a quantize output directory; export the job's --out (or rerun it with --format fake)");
  }
  if (!gguf_type.empty() && out_format != "gguf")
    throw InputError("--gguf-type applies to --format gguf only, not --format " + out_format);
  if (out_format == "gguf") {
    if (gguf_type.empty()) throw InputError("--format gguf needs --gguf-type Q4_0, Q4_1 or Q8_0");
    if (!vm["max-shard-size"].defaulted()) throw InputError("--max-shard-size does not apply to --format gguf (one file)");
    GgufExportOptions go;
    go.type = parse_gguf_quant_type(gguf_type);
    go.overwrite = opts.overwrite;
    const GgufExportReport rep = export_gguf(from, out, go, quiet ? nullptr : &std::cerr);
    if (!quiet) std::cout << "packed " << rep.packed.size() << "\ndense " << rep.dense.size() << "\nformat gguf " << to_string(go.type) << "\nout " << out << "\n";
    return 0;
  }
  if (out_format == "compressed-tensors") {
    CompressedTensorsExportOptions co;
    co.max_shard_bytes = opts.max_shard_bytes;
    co.overwrite = opts.overwrite;
    const CompressedTensorsExportReport rep = export_compressed_tensors(from, out, co, quiet ? nullptr : &std::cerr);
    if (!quiet) std::cout << "packed " << rep.packed.size() << "\ndense " << rep.excluded.size() << "\nformat compressed-tensors\nout " << out << "\n";
    return 0;
  }
  if (out_format != "gptq")
    throw InputError("--format '" + out_format + "': expected gptq, compressed-tensors or gguf");
  const GptqExportReport rep = workdir ? export_gptq_from_workdir(from, out, opts, quiet ? nullptr : &std::cerr)
                                       : export_gptq(from, out, opts, quiet ? nullptr : &std::cerr);
  if (!quiet)
    std::cout << "packed " << rep.packed.size() << "\ndense " << rep.excluded.size() << "\ncheckpoint_format "
              << to_string(rep.format) << "\nout " << out << "\n";
  return 0;
}

}  // namespace streamq::cli
