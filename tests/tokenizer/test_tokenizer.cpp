// Tokenizer against the reference: the 20 edge-case strings per real
// tokenizer in ../shared/fixtures/tokenizers/golden_encodings.json (ids with
// and without special tokens, decode with and without skipping them), BOS/EOS
// resolution, round trips, and the ICU-backed Unicode normalizers on the
// reference's outputs. Larger goldens: test_tokenizer_golden.cpp (the
// normalizer variants there); malformed files: test_tokenizer_errors.cpp.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <thread>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/tokenizer/tokenizer.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/utf8.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

const char* const kNames[] = {"gpt2", "mistral-7b-v0.1", "smollm2-135m-instruct", "tinyllama-1.1b-chat-v1.0"};

std::string fixture_path(const std::string& name) {
  return test::shared_fixtures_dir() + "/tokenizers/" + name + "/tokenizer.json";
}

// Each real tokenizer is loaded once for the whole file (a 2 MB JSON parse each).
const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = Tokenizer::load(fixture_path(name));
  return *slot;
}

const json& golden() {
  static const json g = json::parse(test::read_all(test::shared_fixtures_dir() + "/tokenizers/golden_encodings.json"));
  return g;
}

std::vector<int32_t> ids_of(const json& a) { return a.get<std::vector<int32_t>>(); }

TEST(Tokenizer, GoldenEdgeCasesMatchReference) {
  int compared = 0;
  for (const char* name : kNames) {
    SCOPED_TRACE(name);
    const Tokenizer& tok = fixture(name);
    const json& entry = golden()["tokenizers"][name];
    EXPECT_EQ(tok.vocab_size(), entry["vocab_size_with_added"].get<int64_t>());
    for (const json& c : entry["cases"]) {
      const std::string text = c["text"].get<std::string>();
      SCOPED_TRACE("text: " + json(text).dump());
      EXPECT_EQ(tok.encode(text, true), ids_of(c["ids_special"]));
      EXPECT_EQ(tok.encode(text, false), ids_of(c["ids_plain"]));
      EXPECT_EQ(tok.decode(ids_of(c["ids_special"]), false), c["decoded"].get<std::string>());
      EXPECT_EQ(tok.decode(ids_of(c["ids_special"]), true), c["decoded_skip"].get<std::string>());
      for (size_t k = 0; k < c["tokens_special"].size(); ++k)
        EXPECT_EQ(tok.id_to_token(c["ids_special"][k].get<int32_t>()), c["tokens_special"][k].get<std::string>());
      ++compared;
    }
  }
  std::printf("[ tokenizer ] %d edge-case strings compared with the reference (4 checks each)\n", compared);
  EXPECT_EQ(compared, 80);
}

TEST(Tokenizer, BosEosFollowConfigAndPostProcessor) {
  // Mistral: tokenizer_config.json names <s>/</s> and add_bos_token true.
  const Tokenizer& mistral = fixture("mistral-7b-v0.1");
  EXPECT_EQ(mistral.bos_id(), 1);
  EXPECT_EQ(mistral.eos_id(), 2);
  EXPECT_TRUE(mistral.adds_bos());
  EXPECT_FALSE(mistral.adds_eos());
  // TinyLlama: no add_bos_token key; its template "<s> $A" adds BOS.
  const Tokenizer& tiny = fixture("tinyllama-1.1b-chat-v1.0");
  EXPECT_EQ(tiny.bos_id(), 1);
  EXPECT_TRUE(tiny.adds_bos());
  // SmolLM2: bos <|im_start|>, eos <|im_end|>, no post-processor: nothing added.
  const Tokenizer& smol = fixture("smollm2-135m-instruct");
  EXPECT_EQ(smol.bos_id(), 1);
  EXPECT_EQ(smol.eos_id(), 2);
  EXPECT_FALSE(smol.adds_bos());
  EXPECT_FALSE(smol.adds_eos());
  // GPT-2: its files name no BOS/EOS.
  const Tokenizer& gpt2 = fixture("gpt2");
  EXPECT_EQ(gpt2.bos_id(), -1);
  EXPECT_FALSE(gpt2.adds_bos());
  EXPECT_EQ(gpt2.token_to_id("<|endoftext|>"), 50256);
}

TEST(Tokenizer, ByteLevelDecodeRoundTripsAnyUtf8) {
  // Byte-level BPE is lossless: every valid UTF-8 string decodes back exactly.
  const std::string texts[] = {
      "plain ascii", "  two leading\tand tab\r\n", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\xA4\x97",
      "\x01\x02\x7F control", "<|im_start|>user\nhi<|im_end|>", std::string(1000, ' ') + "x"};
  for (const char* name : {"gpt2", "smollm2-135m-instruct"})
    for (const std::string& t : texts) EXPECT_EQ(fixture(name).decode(fixture(name).encode(t, false)), t) << name;
}

TEST(Tokenizer, LongInputsAreNotQuadratic) {
  // TinyLlama and Mistral have no splitting pre-tokenizer: a whole document is
  // one BPE word, so the merge loop must scale as n log n. 200 kB of text
  // would take minutes with an O(n^2) merge.
  std::string text;
  while (text.size() < 200000) text += "The quick brown fox jumps over the lazy dog, 12345 times. ";
  for (const char* name : {"tinyllama-1.1b-chat-v1.0", "mistral-7b-v0.1"}) {
    const auto ids = fixture(name).encode(text, false);
    EXPECT_GT(ids.size(), 30000u);
    EXPECT_EQ(fixture(name).decode(ids), text) << name;
  }
}

TEST(Tokenizer, ConcurrentEncodesAgreeWithASerialOne) {
  // The word cache and the regex scratch are shared by threads that tokenize
  // calibration text in parallel; results must not depend on it.
  const Tokenizer& tok = fixture("smollm2-135m-instruct");
  std::vector<std::string> lines;
  for (int i = 0; i < 400; ++i)
    lines.push_back("line " + std::to_string(i * 7919) + ": the cat's " + std::string(i % 13, ' ') + "caf\xC3\xA9 #" +
                    std::to_string(i));
  std::vector<std::vector<int32_t>> serial;
  for (const auto& l : lines) serial.push_back(tok.encode(l, false));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t k = 0; k < lines.size(); ++k) {
        const size_t i = (k * (t + 1) * 31) % lines.size();
        if (tok.encode(lines[i], false) != serial[i]) ++mismatches[t];
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(Tokenizer, InvalidUtf8AndUnknownIdsAreInputErrors) {
  const Tokenizer& tok = fixture("gpt2");
  try {
    tok.encode("ok \xC3( bad", false);
    FAIL() << "invalid UTF-8 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok.decode({15496, 999999}), InputError);
  EXPECT_THROW(tok.id_to_token(-1), InputError);
}

std::string utf8(std::u32string_view s) {
  std::string out;
  for (char32_t cp : s) tok::utf8_append(out, cp);
  return out;
}

TEST(TokenizerNormalizer, UnicodeFormsAndLowercaseMatchTheReference) {
  // Expected values are HF tokenizers' normalize_str() outputs.
  struct Case {
    const char* type;
    std::u32string_view in, out;
  };
  const Case cases[] = {
      {"NFC", U"e\u0301", U"\u00e9"},
      {"NFC", U"\u1100\u1161\u11a8", U"\uac01"},                                // conjoining jamo -> syllable
      {"NFC", U"\u2126", U"\u03a9"},                                            // singleton
      {"NFC", U"q\u0307\u0323", U"q\u0323\u0307"},                              // canonical reordering
      {"NFC", U"\u0958", U"\u0915\u093c"},                                      // composition exclusion
      {"NFC", U"\u65e5\U0001F917", U"\u65e5\U0001F917"},
      {"NFD", U"\u00e9", U"e\u0301"},
      {"NFD", U"\ud55c", U"\u1112\u1161\u11ab"},
      {"NFKC", U"\ufb01", U"fi"},
      {"NFKC", U"\uff11\uff12\u3000", U"12 "},
      {"NFKD", U"\u00bd\u00e9", U"1\u20442e\u0301"},
      {"Lowercase", U"\u0130", U"i\u0307"},                                     // full mapping
      {"Lowercase", U"\u039f\u0394\u039f\u03a3", U"\u03bf\u03b4\u03bf\u03c3"},  // no final sigma
      {"Lowercase", U"\u03a3\u03a3 \u03a3", U"\u03c3\u03c3 \u03c3"},
      {"Lowercase", U"\u01c5\u1e9e ABC \u00c9", U"\u01c6\u00df abc \u00e9"},
      {"Lowercase", U"", U""},
      // Newer than the reference's tables: normalization is Unicode 9.0,
      // lowercasing Unicode 17 (ahead of ICU 72).
      {"NFKC", U"\u32ff\U0001f16c", U"\u32ff\U0001f16c"},
      {"NFD", U"a\u1df6\u0323", U"a\u1df6\u0323"},
      {"NFD", U"a\u08d4\u0323", U"a\u0323\u08d4"},
      {"Lowercase", U"\u1c89\ua7dc\U00010d50", U"\u1c8a\u019b\U00010d70"},
  };
  for (const Case& c : cases) {
    auto n = tok::make_normalizer(json{{"type", c.type}});
    EXPECT_EQ(n->normalize(utf8(c.in)), utf8(c.out)) << c.type << " of " << json(utf8(c.in)).dump();
  }
}

TEST(TokenizerNormalizer, NfcTokenizerEncodesAnyTextAndStillRejectsInvalidUtf8) {
  // Qwen2 declares NFC: GPT-2's vocab behind it must take CJK, emoji and both
  // spellings of an accent, which must encode alike.
  json j = json::parse(test::read_all(fixture_path("gpt2")));
  j["normalizer"] = {{"type", "NFC"}};
  test::ScratchDir dir("tok-nfc");
  test::write_all(dir.file("tokenizer.json"), j.dump());
  auto tok = Tokenizer::load(dir.file("tokenizer.json"));
  EXPECT_EQ(tok->encode(utf8(U"caf\u00e9 \u65e5\U0001F917"), false),
            tok->encode(utf8(U"cafe\u0301 \u65e5\U0001F917"), false));
  EXPECT_EQ(tok->encode(utf8(U"caf\u00e9"), false), fixture("gpt2").encode(utf8(U"caf\u00e9"), false));
  try {
    tok->encode("ok \xC3( bad", false);
    FAIL() << "invalid UTF-8 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace streamq
