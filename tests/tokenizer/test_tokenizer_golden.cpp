// Tokenizer against the reference on thousands of lines: the goldens in
// tests/data/tokenizers/*.golden.jsonl.zst (written by
// tests/fixtures/make_tokenizer_golden.py with HF `tokenizers`) hold the exact ids of
// WikiText-2 and TinyStories lines (read here from ../shared/fixtures by line
// index) and of edge-case and random strings, plus the reference's decode.
// Variants (tests/data/tokenizers/variants/*.json) patch a real file to
// cover what the four do not use: Llama-3's Split regex, ignore_merges,
// [left, right] merges, added-token flags, Metaspace splitting, unk fusing,
// every split behaviour, the word splitters, and the NFC/NFD/NFKC/NFKD and
// Lowercase normalizers (Qwen2's NFC among them).
#include <gtest/gtest.h>
#include <zstd.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

std::string golden_dir() { return test::source_dir() + "/tests/data/tokenizers"; }

std::string zstd_decompress(const std::string& path) {
  const std::string in = test::read_all(path);
  std::string out;
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> ds(ZSTD_createDStream(), ZSTD_freeDStream);
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  while (src.pos < src.size) {
    ZSTD_outBuffer dst{chunk.data(), chunk.size(), 0};
    const size_t rc = ZSTD_decompressStream(ds.get(), &dst, &src);
    if (ZSTD_isError(rc)) throw std::runtime_error(path + ": " + ZSTD_getErrorName(rc));
    out.append(chunk.data(), dst.pos);
  }
  return out;
}

// Lines of a shared text fixture, each with its "\n" (as the generator splits them).
const std::vector<std::string>& source_lines(const std::string& file) {
  static std::map<std::string, std::vector<std::string>> cache;
  auto& lines = cache[file];
  if (lines.empty()) {
    const std::string data = test::read_all(test::shared_fixtures_dir() + "/text/" + file);
    size_t at = 0;
    while (at < data.size()) {
      size_t end = data.find('\n', at);
      end = end == std::string::npos ? data.size() : end + 1;
      lines.push_back(data.substr(at, end - at));
      at = end;
    }
  }
  return lines;
}

std::string show_ids(const Tokenizer& tok, const std::vector<int32_t>& ids, size_t from) {
  std::string s;
  for (size_t k = from; k < ids.size() && k < from + 8; ++k)
    s += std::to_string(ids[k]) + "(" + json(tok.id_to_token(ids[k])).dump() + ") ";
  return s;
}

// Compares every line of one golden file; returns the number of lines compared.
int check_golden(const std::string& name, const Tokenizer& tok) {
  const std::string blob = zstd_decompress(golden_dir() + "/" + name + ".golden.jsonl.zst");
  int compared = 0, failures = 0;
  size_t at = blob.find('\n') + 1;  // skip the header
  const json header = json::parse(blob.substr(0, at));
  EXPECT_FALSE(header["add_special_tokens"].get<bool>());
  while (at < blob.size()) {
    const size_t end = blob.find('\n', at);
    const json row = json::parse(blob.substr(at, end - at));
    at = end + 1;
    std::string text, where;
    if (row.contains("src")) {
      const auto& lines = source_lines(row["src"].get<std::string>());
      const size_t i = row["line"].get<size_t>();
      EXPECT_LT(i, lines.size());
      text = lines.at(i);
      where = row["src"].get<std::string>() + " line " + std::to_string(i);
    } else {
      text = row["text"].get<std::string>();
      where = "text " + json(text).dump();
    }
    const auto expected = row["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, false);
    const std::string decoded = row.contains("decoded") ? row["decoded"].get<std::string>() : text;
    ++compared;
    if (got == expected && tok.decode(got) == decoded) continue;
    // Report the first few failures with the tokens around the divergence.
    if (++failures > 5) continue;
    size_t k = 0;
    while (k < got.size() && k < expected.size() && got[k] == expected[k]) ++k;
    ADD_FAILURE() << name << " " << where << ": first difference at id " << k << " of " << expected.size()
                  << "\n  expected " << show_ids(tok, expected, k) << "\n  got      " << show_ids(tok, got, k)
                  << "\n  decode " << json(tok.decode(got)).dump().substr(0, 300) << "\n  wanted "
                  << json(decoded).dump().substr(0, 300);
  }
  EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << compared << " lines differ";
  return compared;
}

class TokenizerGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerGolden, ExactIdsOnEveryLine) {
  const std::string name = GetParam();
  auto tok = Tokenizer::load(test::shared_fixtures_dir() + "/tokenizers/" + name + "/tokenizer.json");
  const int compared = check_golden(name, *tok);
  std::printf("[ tokenizer ] %s: %d lines compared with the reference (ids and decode)\n", name.c_str(), compared);
  EXPECT_GT(compared, 4000);
}

// The patch semantics of tests/fixtures/make_tokenizer_golden.py's apply_variant().
json apply_variant(const json& patch) {
  json j = json::parse(test::read_all(test::shared_fixtures_dir() + "/tokenizers/" +
                                      patch["base"].get<std::string>() + "/tokenizer.json"));
  if (patch.contains("replace")) j.update(patch["replace"]);
  if (patch.contains("model")) j["model"].update(patch["model"]);
  if (patch.value("merges_as_pairs", false)) {
    json pairs = json::array();
    for (const json& m : j["model"]["merges"]) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      pairs.push_back({s.substr(0, sp), s.substr(sp + 1)});
    }
    j["model"]["merges"] = pairs;
  }
  for (const json& a : patch.value("append_added_tokens", json::array())) j["added_tokens"].push_back(a);
  return j;
}

class TokenizerVariantGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerVariantGolden, ExactIdsOnEveryLine) {
  const std::string name = GetParam();
  const json patch = json::parse(test::read_all(golden_dir() + "/variants/" + name + ".json"));
  test::ScratchDir dir("tok-variant");
  test::write_all(dir.file("tokenizer.json"), apply_variant(patch).dump());
  auto tok = Tokenizer::load(dir.file("tokenizer.json"));
  const int compared = check_golden("variants/" + name, *tok);
  std::printf("[ tokenizer ] variant %s: %d lines compared with the reference (ids and decode)\n", name.c_str(),
              compared);
  EXPECT_GT(compared, 1000);
}

INSTANTIATE_TEST_SUITE_P(Variants, TokenizerVariantGolden,
                         ::testing::Values("llama3-style", "metaspace-split", "split-behaviors", "bert-whitespace",
                                           "qwen2-nfc", "nfkc-llama", "nfd-lowercase", "nfkd-metaspace"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

INSTANTIATE_TEST_SUITE_P(RealTokenizers, TokenizerGolden,
                         ::testing::Values("gpt2", "mistral-7b-v0.1", "smollm2-135m-instruct",
                                           "tinyllama-1.1b-chat-v1.0"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

}  // namespace
}  // namespace streamq
