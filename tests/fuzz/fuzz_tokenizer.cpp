// Fuzz target: a tokenizer.json (normalizers, pre-tokenizers with their
// regexes, BPE vocab and merges, added tokens, post-processor, decoder) and an
// optional tokenizer_config.json loaded by Tokenizer::load, then fuzzed text
// encoded (with and without special tokens) and the ids decoded.
// Input: tokenizer.json, kPartSeparator, text, kPartSeparator, tokenizer_config.json.
#include "src/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split_parts(data, size, 3);
  fuzz::clear_scratch();
  const std::string path = fuzz::write_scratch("tokenizer.json", parts[0]);
  if (!parts[2].empty()) fuzz::write_scratch("tokenizer_config.json", parts[2]);
  std::unique_ptr<Tokenizer> t;
  fuzz::expect_input_errors([&] { t = Tokenizer::load(path); });
  if (!t) return 0;
  for (bool add_special : {false, true}) {
    fuzz::expect_input_errors([&] {
      const std::vector<int32_t> ids = t->encode(parts[1], add_special);
      for (int32_t id : ids)
        if (id < 0 || id >= t->vocab_size()) std::abort();  // every id is one the vocab names
      (void)t->decode(ids, add_special);
    });
  }
  (void)t->bos_id();
  (void)t->adds_bos();
  return 0;
}
