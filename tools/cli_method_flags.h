// The method flags shared by `streamq quantize` and `streamq layer` (one
// definition, one help text).
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"

namespace streamq::cli {

struct MethodFlags {
  QuantConfig quant;
  LoaqConfig loaq;
  std::string method, grid_style, grid, variant, cae_source, checkpoint_format;
  bool sym = false, asym = false;
};

void add_method_flags(boost::program_options::options_description& opts, MethodFlags& f);
// Turns the parsed strings into f.quant / f.loaq and validates them (InputError
// naming the flag), including check_method_flag_dependencies.
void finish_method_flags(MethodFlags& f, const boost::program_options::variables_map& vm);
// A method parameter given (on the command line, not defaulted) without the
// setting it belongs to (--loaq-alpha without --loaq, --mse-grid without
// --grid mse, --act-order with rtn, ...) is an InputError naming both.
void check_method_flag_dependencies(const boost::program_options::variables_map& vm, const QuantConfig& q,
                                    const LoaqConfig& loaq);

}  // namespace streamq::cli
