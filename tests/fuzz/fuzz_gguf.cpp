// Fuzz target: a .gguf file through GgufFile::open (container, metadata,
// tensor infos; the llama view when general.architecture is "llama"), then
// what `streamq` does with one: every tensor dequantized, the HF view's names,
// shapes, tensors and config.json, and the tokenizer converted to
// tokenizer.json, loaded by the C++ tokenizer and used to encode a sentence.
#include "io/formats/gguf.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

namespace {
// Dequantizing is linear in the element count; a fuzzed shape of millions of
// elements would only slow the search (the bounds themselves are checked at open).
constexpr int64_t kMaxReadElems = 1 << 16;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::clear_scratch();
  const std::string path = fuzz::write_scratch("model.gguf", {reinterpret_cast<const char*>(data), size});
  std::unique_ptr<GgufFile> f;
  fuzz::expect_input_errors([&] { f = GgufFile::open(path); });
  if (!f) return 0;
  for (const auto& [key, value] : f->metadata())
    if (f->find(key) == nullptr) std::abort();
  for (const GgufTensorInfo& t : f->tensors()) {
    fuzz::touch(f->data(t), t.nbytes);
    if (gguf_can_dequantize(t.type) && t.numel() <= kMaxReadElems)
      fuzz::expect_input_errors([&] { (void)f->read_f32(t); });
  }
  fuzz::expect_input_errors([&] {
    (void)f->hf_config();
    for (const std::string& name : f->hf_tensor_names()) {
      int64_t numel = 1;
      for (int64_t d : f->hf_shape(name)) numel *= d;
      if (numel <= kMaxReadElems && static_cast<int64_t>(f->read_hf_f32(name).size()) != numel) std::abort();
    }
  });
  fuzz::expect_input_errors([&] {
    const GgufTokenizer tok = f->tokenizer();
    fuzz::write_scratch("tokenizer_config.json", gguf_tokenizer_config_json(tok, path));
    const std::string json_path = fuzz::write_scratch("tokenizer.json", gguf_tokenizer_to_hf_json(tok, path));
    const auto t = Tokenizer::load(json_path);
    const std::vector<int32_t> ids = t->encode("Hello world, 123 caf\xc3\xa9 <|im_start|>ab", true);
    (void)t->decode(ids);
  });
  return 0;
}
