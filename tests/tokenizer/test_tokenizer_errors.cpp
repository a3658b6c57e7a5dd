// Tokenizer loading: a minimal hand-written tokenizer.json works, and every
// kind of malformed or unsupported file is an InputError naming the file and
// saying what is wrong.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

json minimal() {
  return json::parse(R"({
    "version": "1.0", "added_tokens": [], "normalizer": null, "post_processor": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]}})");
}

// Writes `content` as tokenizer.json in `dir` and loads it; returns the
// InputError message ("" when it loads).
std::string load_error(const test::ScratchDir& dir, const std::string& content) {
  test::write_all(dir.file("tokenizer.json"), content);
  try {
    Tokenizer::load(dir.file("tokenizer.json"));
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& content, const std::string& needle) {
  test::ScratchDir dir("tok-err");
  const std::string msg = load_error(dir, content);
  EXPECT_NE(msg.find(dir.file("tokenizer.json")), std::string::npos) << "message does not name the file: " << msg;
  EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
}

TEST(TokenizerLoad, MinimalFileWorks) {
  test::ScratchDir dir("tok-min");
  test::write_all(dir.file("tokenizer.json"), minimal().dump());
  auto tok = Tokenizer::load(dir.file("tokenizer.json"));
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("ba", false), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(tok->encode("ab a", true), (std::vector<int32_t>{2, 3, 0}));
  EXPECT_EQ(tok->decode({2, 3, 0}), "ab a");
  EXPECT_EQ(tok->vocab_size(), 4);
  EXPECT_EQ(tok->bos_id(), -1);
}

TEST(TokenizerLoad, MalformedFilesAreInputErrors) {
  expect_error("{not json", "not valid JSON");
  expect_error("[1, 2]", "expected a JSON object");
  json j = minimal();
  j["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  expect_error(j.dump(), "unsupported tokenizer model 'Unigram'; streamq supports BPE");
  j["model"] = {{"type", "WordPiece"}, {"vocab", json::object()}};
  expect_error(j.dump(), "unsupported tokenizer model 'WordPiece'; streamq supports BPE");
  j["model"] = {{"vocab", json::array({json::array({"a", 0.0})})}, {"unk_id", 0}};  // an untyped Unigram
  expect_error(j.dump(), "unsupported tokenizer model 'Unigram'");
  j["model"] = {{"type", "BPE"}, {"merges", json::array()}};
  expect_error(j.dump(), "BPE model has no 'vocab'");
  j.erase("model");
  expect_error(j.dump(), "no 'model' object");

  j = minimal();
  j["model"]["vocab"] = json::array();
  expect_error(j.dump(), "'vocab' must be an object");
  j = minimal();
  j["model"].erase("merges");
  expect_error(j.dump(), "has no 'merges'");
  j = minimal();
  j["model"]["merges"] = {"a c"};
  expect_error(j.dump(), "BPE merge 0 'a c': 'c' is not in the vocab");
  j["model"]["merges"] = {"b a"};
  expect_error(j.dump(), "the merged token 'ba' is not in the vocab");
  j["model"]["merges"] = {"a  b"};  // two spaces: the reference refuses it too
  expect_error(j.dump(), "exactly one ASCII space");
  j["model"]["merges"] = {json::array({"a", "b", "c"})};
  expect_error(j.dump(), "BPE merge 0");
  // An id past 2^24 would size the id table in gigabytes (fuzz_tokenizer found 55,000,008).
  j = minimal();
  j["model"]["vocab"]["a"] = 55000008;
  expect_error(j.dump(), "BPE vocab entry 'a' has id 55000008, past the 16,777,216 ids");
  j["model"]["vocab"]["a"] = -1;
  expect_error(j.dump(), "must have a non-negative integer id");
  j = minimal();
  j["model"]["dropout"] = 0.1;
  expect_error(j.dump(), "dropout is not supported");
  j = minimal();
  j["added_tokens"] = {{{"content", "<x>"}}};
  expect_error(j.dump(), "needs a non-negative 'id'");
}

TEST(TokenizerLoad, UnsupportedComponentsAreNamed) {
  json j = minimal();
  j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  expect_error(j.dump(), "unsupported pre_tokenizer 'UnicodeScripts'");
  j = minimal();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j.dump(), "tokenizer regex '(unclosed' does not compile");
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Sideways"}};
  expect_error(j.dump(), "unknown split behavior 'Sideways'");
  j = minimal();
  j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
  expect_error(j.dump(), "unsupported normalizer 'Precompiled'");
  j = minimal();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j.dump(), "unsupported decoder 'WordPiece'");
  j = minimal();
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", json::array({{{"SpecialToken", {{"id", "<s>"}}}}})}};
  expect_error(j.dump(), "template token '<s>' is not in 'special_tokens'");
}

TEST(TokenizerLoad, MissingFileAndBadConfigAreInputErrors) {
  test::ScratchDir dir("tok-cfg");
  EXPECT_THROW(Tokenizer::load(dir.file("absent.json")), InputError);
  test::write_all(dir.file("tokenizer_config.json"), R"({"bos_token": "<s>"})");
  std::string msg = load_error(dir, minimal().dump());
  EXPECT_NE(msg.find("tokenizer_config.json: bos_token '<s>' is not in the tokenizer's vocab"), std::string::npos)
      << msg;
  test::write_all(dir.file("tokenizer_config.json"), R"({"add_bos_token": true})");
  msg = load_error(dir, minimal().dump());
  EXPECT_NE(msg.find("add_bos_token is true but no bos_token is named"), std::string::npos) << msg;
  test::write_all(dir.file("tokenizer_config.json"), "{oops");
  msg = load_error(dir, minimal().dump());
  EXPECT_NE(msg.find("tokenizer_config.json: not valid JSON"), std::string::npos) << msg;
}

}  // namespace
}  // namespace streamq
