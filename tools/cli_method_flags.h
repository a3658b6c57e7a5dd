// The method flags shared by `streamq quantize` and `streamq layer` (one
// definition, one help text).
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "kernels/cpu/act_quant.h"
#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"
#include "src/pipeline/model_rotation.h"

namespace streamq::cli {

struct MethodFlags {
  QuantConfig quant;
  LoaqConfig loaq;
  std::string preset;  // --preset: which defaults the flags not given take (apply_preset)
  std::string method, grid_style, grid, variant, cae_source, checkpoint_format;
  bool sym = false, asym = false;
  // Set by the caller before finish_method_flags: the job quantizes the
  // activations (--abits below 16), and it has a --learn flag that was not
  // given (quantize; `layer` has none). The best preset's W4A4 setting reads them.
  bool act_quant = false, learn_free = false;
  // Set by the best preset: the caller runs --learn sde (with --cl-lambda 0
  // unless given), the W4A4 setting's learned adjustment.
  bool preset_learn_sde = false;
};

// What the quantized weights are for, as far as the best preset's grid is
// concerned: asymmetric grids where the format's fast kernels take them (the
// fake-quant output, compressed-tensors' WNA16 path, `streamq layer`),
// symmetric for classic GPTQ checkpoints (vLLM's Marlin kernels take only
// symmetric 4/8-bit GPTQ), and for GGUF the --gguf-type's own grid (Q4_1's
// free fp16 min has no integer zero point for the two-stage refinement).
enum class PresetTarget { AsymmetricOk, SymmetricOnly, GgufIntegerGrid, GgufFreeMin };

// The presets --help lists, each with what it sets ("name: ...").
extern const char* const kPresetHelp;

void add_method_flags(boost::program_options::options_description& opts, MethodFlags& f);
// Turns the parsed strings into f.quant / f.loaq and validates them (InputError
// naming the flag), including check_method_flag_dependencies.
// The preset fills the method flags the command line did not give (flags
// given always win; see kPresetHelp), then everything is validated. Returns
// one line saying what the preset set, for stderr ("" when it set nothing).
std::string finish_method_flags(MethodFlags& f, const boost::program_options::variables_map& vm,
                                PresetTarget target);
// A method parameter given (on the command line, not defaulted) without the
// setting it belongs to (--loaq-alpha without --loaq, --mse-grid without
// --grid mse, --act-order with rtn, ...) is an InputError naming both.
void check_method_flag_dependencies(const boost::program_options::variables_map& vm, const QuantConfig& q,
                                    const LoaqConfig& loaq);

// --abits, --a-sym, --a-clip, --kv-bits, --kv-clip (eval and quantize: one
// definition, one help text), and their checks: ranges, and a grid parameter
// without its grid is an error naming both.
void add_act_quant_flags(boost::program_options::options_description& opts, ActQuantConfig* act, ActQuantConfig* kv);
void finish_act_quant_flags(const boost::program_options::variables_map& vm, const ActQuantConfig& act,
                            const ActQuantConfig& kv);

// --rotate, --rotate-seed, --online-hadamard (eval and quantize: one
// definition; `quantize` says what its outputs hold), and their checks: a
// seed without a rotation is an error, as the flag would mean nothing.
struct RotationFlags {
  std::string rotate = "none";
  RotationSpec spec;
};
enum class RotationUse { Eval, Quantize };
void add_rotation_flags(boost::program_options::options_description& opts, RotationFlags* f, RotationUse use);
void finish_rotation_flags(const boost::program_options::variables_map& vm, RotationFlags* f);

}  // namespace streamq::cli
