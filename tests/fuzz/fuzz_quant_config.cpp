// Fuzz target: the quantization config JSON that workdir fingerprints and
// checkpoint metadata store, through quant_config_from_json; a config it
// accepts must survive a round trip through quant_config_to_json unchanged.
#include <nlohmann/json.hpp>

#include "src/methods/quant_config_json.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;  // not JSON: the callers' parse reports it, not this parser
  fuzz::expect_input_errors([&] {
    const QuantConfig c = quant_config_from_json(j, "fuzz");
    const nlohmann::json back = quant_config_to_json(c);
    if (quant_config_to_json(quant_config_from_json(back, "round trip")) != back) {
      std::fprintf(stderr, "fuzz: quant config does not round-trip: %s\n", back.dump().c_str());
      std::abort();
    }
  });
  return 0;
}
