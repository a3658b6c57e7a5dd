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
// naming the flag).
void finish_method_flags(MethodFlags& f);

}  // namespace streamq::cli
