// `streamq tokenize`: text to the token-id files --calib/--data read, with the
// model's own tokenizer (the same path quantize and eval take for text), so
// other tools can be fed exactly the ids streamq evaluates.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

#include "tools/cli_common.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "src/model/model.h"
#include "src/export/model_source.h"
#include "src/pipeline/tokens.h"

namespace streamq::cli {

int run_tokenize(const std::vector<std::string>& args) {
  std::string model_path, text, out, dtype_name;
  po::options_description opts("tokenize flags");
  opts.add_options()
      ("help,h", "show this help")
      ("model", po::value(&model_path), "model whose tokenizer.json is used: an HF directory or a GGUF file (its embedded tokenizer)")
      ("text", po::value(&text), "input text: .txt, or .jsonl with a \"text\" field per line")
      ("out", po::value(&out), "output: little-endian token ids, no header (what --calib and --data read)")
      ("tokens-dtype", po::value(&dtype_name)->default_value("int32"),
       "id width of --out: int32, or uint16 (refused when an id does not fit)");
  po::variables_map vm;
  if (!parse("tokenize", "--model DIR --text FILE --out FILE [flags]", opts, args, &vm)) return 0;
  require(vm, {"model", "text", "out"});
  const TokensDType dtype = parse_tokens_dtype(dtype_name);
  const ModelSource source(model_path, std::filesystem::temp_directory_path().string(), &std::cerr);
  const Model model(source.dir());
  const std::vector<int32_t> ids = load_token_stream("", dtype, text, source.dir(), model.config().vocab);
  std::string bytes;
  if (dtype == TokensDType::I32) {
    bytes.assign(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
  } else {
    bytes.resize(ids.size() * sizeof(uint16_t));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] > std::numeric_limits<uint16_t>::max())
        throw InputError(out + ": token id " + std::to_string(ids[i]) + " does not fit uint16; use --tokens-dtype int32");
      const uint16_t v = static_cast<uint16_t>(ids[i]);
      std::memcpy(&bytes[i * 2], &v, 2);
    }
  }
  atomic_write_file(out, bytes);
  std::printf("tokens %zu\n", ids.size());
  return 0;
}

}  // namespace streamq::cli
