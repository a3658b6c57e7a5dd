// tokenize_text_file: .txt as one document, .jsonl as one document per line
// with BOS/EOS per the tokenizer config, errors naming the file and line, and
// the whole WikiText-2 test file through a real tokenizer.
#include <gtest/gtest.h>

#include "src/core/error.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

std::unique_ptr<Tokenizer> load_fixture(const std::string& name) {
  return Tokenizer::load(test::shared_fixtures_dir() + "/tokenizers/" + name + "/tokenizer.json");
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string error_of(const std::string& path, const Tokenizer& tok) {
  try {
    tokenize_text_file(path, tok);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizeTextFile, TxtIsOneDocumentJsonlOneDocumentPerLine) {
  auto mistral = load_fixture("mistral-7b-v0.1");  // adds BOS per its config
  test::ScratchDir dir("tok-file");
  const std::string text = "First line.\nSecond line, caf\xC3\xA9.\n";
  test::write_all(dir.file("a.txt"), text);
  EXPECT_EQ(tokenize_text_file(dir.file("a.txt"), *mistral), concat({{1}, mistral->encode(text, false)}));
  EXPECT_EQ(tokenize_text_file(dir.file("a.txt"), *mistral, false), mistral->encode(text, false));

  test::write_all(dir.file("b.jsonl"), "{\"text\": \"Hello world\"}\n\n{\"text\": \"Second doc\\n\", \"id\": 7}\n");
  EXPECT_EQ(tokenize_text_file(dir.file("b.jsonl"), *mistral),
            concat({{1}, mistral->encode("Hello world", false), {1}, mistral->encode("Second doc\n", false)}));

  auto smol = load_fixture("smollm2-135m-instruct");  // no BOS by config
  EXPECT_EQ(tokenize_text_file(dir.file("b.jsonl"), *smol),
            concat({smol->encode("Hello world", false), smol->encode("Second doc\n", false)}));
}

TEST(TokenizeTextFile, ErrorsNameTheFileAndLine) {
  auto tok = load_fixture("gpt2");
  test::ScratchDir dir("tok-file-err");
  EXPECT_NE(error_of(dir.file("missing.txt"), *tok).find(dir.file("missing.txt")), std::string::npos);

  test::write_all(dir.file("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": oops}\n");
  EXPECT_NE(error_of(dir.file("bad.jsonl"), *tok).find(dir.file("bad.jsonl") + ":2: not valid JSON"),
            std::string::npos);
  test::write_all(dir.file("notext.jsonl"), "{\"text\": \"ok\"}\n\n{\"body\": \"x\"}\n");
  EXPECT_NE(error_of(dir.file("notext.jsonl"), *tok).find(dir.file("notext.jsonl") + ":3: no \"text\" field"),
            std::string::npos);
  test::write_all(dir.file("num.jsonl"), "{\"text\": 5}\n");
  EXPECT_NE(error_of(dir.file("num.jsonl"), *tok).find(":1: the \"text\" field is not a string"), std::string::npos);
  test::write_all(dir.file("bin.txt"), "fine\xFF");
  EXPECT_NE(error_of(dir.file("bin.txt"), *tok).find(dir.file("bin.txt") + ": text to tokenize is not valid UTF-8 at byte 4"),
            std::string::npos);
}

TEST(TokenizeTextFile, WholeWikiTextThroughByteLevelBpeIsLossless) {
  // 1.3 MB in one document: exercises the regex split and the word cache at
  // the size of a real evaluation file.
  auto smol = load_fixture("smollm2-135m-instruct");
  const std::string path = test::shared_fixtures_dir() + "/text/wiki.test.raw";
  const auto ids = tokenize_text_file(path, *smol);
  std::printf("[ tokenizer ] wiki.test.raw: %zu SmolLM2 tokens\n", ids.size());
  EXPECT_GT(ids.size(), 250000u);
  EXPECT_EQ(smol->decode(ids), test::read_all(path));
}

}  // namespace
}  // namespace streamq
