// Fuzz target: a GPTQ checkpoint (config.json with quantization_config, and
// model.safetensors with qweight/qzeros/scales/g_idx) through is_gptq_dir and
// gptq_to_hf_dir, which unpacks and dequantizes every linear into a plain HF
// directory. Input: config.json, kPartSeparator, model.safetensors.
#include "src/export/gptq_import.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split_parts(data, size, 2);
  fuzz::clear_scratch();
  const std::string dir = fuzz::scratch_dir() + "/gptq";
  fuzz::write_scratch("gptq/config.json", parts[0]);
  fuzz::write_scratch("gptq/model.safetensors", parts[1]);
  fuzz::expect_input_errors([&] {
    (void)is_gptq_dir(dir);
    (void)gptq_to_hf_dir(dir, fuzz::scratch_dir() + "/out");
  });
  return 0;
}
