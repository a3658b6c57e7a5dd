// --calib-samples: samples read from the files users have (.jsonl text or
// chat messages, plain text by line or paragraph), chosen, tokenized and cut
// to --seqlen; and the variable-length sequences they give, whose statistics
// must equal a float64 sum over each sample run on its own (no padding, no
// attention across samples).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "io/store/activation_store.h"
#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/model/model.h"
#include "src/pipeline/block_stats.h"
#include "src/pipeline/calibration_samples.h"
#include "src/tokenizer/chat_template.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using ojson = nlohmann::ordered_json;

std::string smollm2_dir() { return test::shared_fixtures_dir() + "/tokenizers/smollm2-135m-instruct"; }

std::vector<RawSample> read(const std::string& path, TextSplit split, int64_t* blank = nullptr,
                            std::string* used = nullptr) {
  int64_t b = 0;
  std::string u;
  auto s = read_samples(path, split, blank ? blank : &b, used ? used : &u);
  return s;
}

std::string expect_input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

TEST(CalibrationSamples, JsonlRecordsAreTextOrMessagesAndBlankTextIsSkipped) {
  test::ScratchDir dir("calib-samples");
  const std::string path = dir.file("s.jsonl");
  test::write_all(path,
                  "{\"text\": \"first sample\", \"id\": 1}\n"
                  "\n"
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n"
                  "{\"text\": \"  \\n \"}\r\n"
                  "{\"text\": \"last\"}");
  int64_t blank = 0;
  std::string used = "x";
  const auto s = read(path, TextSplit::Auto, &blank, &used);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].text, "first sample");
  EXPECT_TRUE(s[0].messages.is_null());
  EXPECT_EQ(s[1].messages.size(), 2u);
  EXPECT_EQ(s[1].where, path + ":3");
  EXPECT_EQ(s[2].text, "last");
  EXPECT_EQ(blank, 1);
  EXPECT_EQ(used, "");
}

TEST(CalibrationSamples, BadJsonlRecordsNameFileAndLine) {
  test::ScratchDir dir("calib-samples-bad");
  const std::string path = dir.file("s.jsonl");
  auto error_for = [&](const std::string& second_line) {
    test::write_all(path, "{\"text\": \"ok\"}\n" + second_line + "\n");
    return expect_input_error([&] { read(path, TextSplit::Auto); });
  };
  EXPECT_NE(error_for("{\"text\": ").find(path + ":2: not valid JSON"), std::string::npos);
  EXPECT_NE(error_for("{\"prompt\": \"x\"}").find(path + ":2: no \"text\" or \"messages\""), std::string::npos);
  EXPECT_NE(error_for("{\"text\": \"a\", \"messages\": []}").find(path + ":2: has both"), std::string::npos);
  EXPECT_NE(error_for("{\"text\": 3}").find(path + ":2: the \"text\" field is not a string"), std::string::npos);
  EXPECT_NE(error_for("{\"messages\": []}").find(path + ":2: \"messages\" must be a non-empty list"),
            std::string::npos);
  EXPECT_NE(error_for("{\"messages\": [{\"content\": \"no role\"}]}").find("string \"role\""), std::string::npos);
  EXPECT_NE(error_for("[1, 2]").find(path + ":2: expected a JSON object"), std::string::npos);
  EXPECT_NE(expect_input_error([&] { read(dir.file("missing.jsonl"), TextSplit::Auto); }).find("missing.jsonl"),
            std::string::npos);
}

TEST(CalibrationSamples, PlainTextIsSplitByParagraphWhenItHasBlankLinesElseByLine) {
  test::ScratchDir dir("calib-samples-txt");
  const std::string lines = dir.file("lines.txt"), paras = dir.file("paras.txt");
  test::write_all(lines, "\n\none\r\ntwo two\nthree\n\n\n");  // blank lines only at the ends: lines
  test::write_all(paras, "a1\na2\n\n\nb1\n  \nc1\nc2\nc3\n");
  std::string used;
  int64_t blank = 0;
  auto s = read(lines, TextSplit::Auto, &blank, &used);
  EXPECT_EQ(used, "line");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].text, "one");
  EXPECT_EQ(s[1].text, "two two");
  EXPECT_EQ(s[2].text, "three");
  EXPECT_EQ(blank, 4);
  s = read(paras, TextSplit::Auto, &blank, &used);
  EXPECT_EQ(used, "paragraph");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].text, "a1\na2");
  EXPECT_EQ(s[1].text, "b1");
  EXPECT_EQ(s[2].text, "c1\nc2\nc3");
  EXPECT_EQ(s[2].where, paras + ":7");
  // Forced either way.
  EXPECT_EQ(read(paras, TextSplit::Line).size(), 6u);
  EXPECT_EQ(read(lines, TextSplit::Paragraph).size(), 1u);
  EXPECT_EQ(parse_text_split("paragraph"), TextSplit::Paragraph);
  EXPECT_NE(expect_input_error([] { parse_text_split("words"); }).find("--calib-split"), std::string::npos);
  EXPECT_NE(expect_input_error([] { parse_sample_select("best"); }).find("--calib-select"), std::string::npos);
}

TEST(CalibrationSamples, SelectionIsTheFirstNOrASeededDrawWithoutReplacement) {
  EXPECT_EQ(select_samples(10, 4, SampleSelect::First, 7), (std::vector<int64_t>{0, 1, 2, 3}));
  const auto a = select_samples(1000, 100, SampleSelect::Random, 42);
  EXPECT_EQ(a, select_samples(1000, 100, SampleSelect::Random, 42));  // deterministic for a seed
  EXPECT_NE(a, select_samples(1000, 100, SampleSelect::Random, 43));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 100u);      // no sample twice
  for (const int64_t i : a) EXPECT_TRUE(i >= 0 && i < 1000);
  // All of them, in some order; every index is reachable.
  const auto all = select_samples(50, 50, SampleSelect::Random, 1);
  EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 50u);
  EXPECT_NE(all, select_samples(50, 50, SampleSelect::First, 1));
  // Roughly uniform: over many seeds each of 5 samples is drawn first about 1/5 of the time.
  std::vector<int> first(5, 0);
  for (uint64_t seed = 0; seed < 5000; ++seed) ++first[select_samples(5, 1, SampleSelect::Random, seed)[0]];
  for (const int f : first) EXPECT_NEAR(f, 1000, 150);
}

TEST(CalibrationSamples, SamplesAreTokenizedOnTheirOwnAndCutToSeqlen) {
  test::ScratchDir dir("calib-samples-tok");
  const auto tok = Tokenizer::load(smollm2_dir() + "/tokenizer.json");
  const std::vector<std::string> texts = {"Once upon a time there was a small robot who liked to count the stars.",
                                          "Short one.", "A third sample, of middling length, about the sea."};
  std::string file;
  for (const auto& t : texts) file += ojson({{"text", t}}).dump() + "\n";
  test::write_all(dir.file("s.jsonl"), file);
  SampleOptions opt;
  opt.nsamples = 3;
  opt.seqlen = 8;
  opt.select = SampleSelect::First;
  const CalibrationSet set = build_calibration_samples(dir.file("s.jsonl"), *tok, nullptr, opt, tok->vocab_size());
  ASSERT_EQ(set.sequences(), 3);
  std::vector<int32_t> want;
  int64_t truncated = 0, dropped = 0;
  for (const auto& t : texts) {
    std::vector<int32_t> ids = tok->encode(t, true);
    if (static_cast<int64_t>(ids.size()) > opt.seqlen) {
      ++truncated;
      dropped += static_cast<int64_t>(ids.size()) - opt.seqlen;
      ids.resize(opt.seqlen);
    }
    want.insert(want.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(set.ids, want);
  EXPECT_EQ(set.lengths, (std::vector<int64_t>{8, static_cast<int64_t>(tok->encode(texts[1], true).size()), 8}));
  EXPECT_LT(set.lengths[1], 8);  // a short sample keeps its length: no padding
  EXPECT_EQ(set.truncated, truncated);
  EXPECT_EQ(set.truncated, 2);
  EXPECT_EQ(set.tokens_dropped, dropped);
  EXPECT_FALSE(set.uniform(8));
  const nlohmann::json j = set.to_json();
  EXPECT_EQ(j["tokens"], set.tokens());
  EXPECT_EQ(j["samples_truncated"], 2);
  EXPECT_EQ(j["sequences"], 3);

  // Fewer samples than asked: the file and both numbers.
  opt.nsamples = 4;
  const std::string e = expect_input_error(
      [&] { build_calibration_samples(dir.file("s.jsonl"), *tok, nullptr, opt, tok->vocab_size()); });
  EXPECT_NE(e.find(dir.file("s.jsonl") + ": 3 samples, fewer than --nsamples 4"), std::string::npos) << e;
  // Ids outside the model's vocabulary (a tokenizer for another model).
  opt.nsamples = 1;
  EXPECT_NE(expect_input_error([&] { build_calibration_samples(dir.file("s.jsonl"), *tok, nullptr, opt, 100); })
                .find("outside the model's vocabulary"),
            std::string::npos);
}

// The whole chat path against the reference: a conversation of the golden
// file, as a --calib-samples record, gives transformers' apply_chat_template
// ids (tokenize=True, no generation prompt).
TEST(CalibrationSamples, ChatSamplesGiveTheReferenceIds) {
  test::ScratchDir dir("calib-samples-chat");
  const ojson g = ojson::parse(test::read_all(test::source_dir() + "/tests/data/chat_templates/goldens.json"));
  std::vector<ojson> cases;
  for (const auto& c : g["cases"])
    if (c["template"] == "fixture:smollm2-135m-instruct" && !c["add_generation_prompt"].get<bool>()) cases.push_back(c);
  ASSERT_GE(cases.size(), 3u);
  std::string file;
  for (const auto& c : cases) file += ojson({{"messages", c["messages"]}}).dump() + "\n";
  file += ojson({{"text", "plain text beside chats"}}).dump() + "\n";
  test::write_all(dir.file("chat.jsonl"), file);
  SampleOptions opt;
  opt.nsamples = static_cast<int64_t>(cases.size()) + 1;
  opt.seqlen = 4096;
  opt.select = SampleSelect::First;
  const CalibrationSet set = load_calibration_samples(dir.file("chat.jsonl"), smollm2_dir(), opt, 49152);
  ASSERT_EQ(set.sequences(), opt.nsamples);
  EXPECT_EQ(set.samples_chat, static_cast<int64_t>(cases.size()));
  EXPECT_EQ(set.truncated, 0);
  int64_t at = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto want = cases[i]["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(set.lengths[i], static_cast<int64_t>(want.size()));
    EXPECT_EQ(std::vector<int32_t>(set.ids.begin() + at, set.ids.begin() + at + set.lengths[i]), want) << i;
    at += set.lengths[i];
  }
  // A model without a chat template: the error names the model directory.
  const std::string no_tmpl = dir.file("model");
  std::filesystem::create_directories(no_tmpl);
  std::filesystem::copy(smollm2_dir() + "/tokenizer.json", no_tmpl);
  const std::string e = expect_input_error([&] { load_calibration_samples(dir.file("chat.jsonl"), no_tmpl, opt, 49152); });
  EXPECT_NE(e.find(dir.file("chat.jsonl") + ":1: " + no_tmpl + ": the model has no chat template"), std::string::npos)
      << e;
}

// float64 reference of one sub-layer group's statistics: each sample run on
// its own through the block (nseq = 1, seqlen = its length: the path the
// model-forward goldens check), x x^T summed in float64 over its tokens.
std::vector<double> reference_xx(Backend& be, const Model& model, const BlockWeights& w, const RopeTable& rope,
                                 const std::vector<int32_t>& ids, const std::vector<int64_t>& lens, SubLayer group,
                                 int64_t* tokens) {
  const ModelConfig& cfg = model.config();
  const int64_t in = sublayer_in_features(cfg, group);
  std::vector<double> xx(static_cast<size_t>(in * in), 0.0);
  *tokens = 0;
  int64_t at = 0;
  for (const int64_t len : lens) {
    std::vector<float> x(static_cast<size_t>(len * cfg.hidden));
    model.embed(ids.data() + at, len, x.data());
    std::vector<float> captured;
    block_forward(be, cfg, w, rope, x.data(), 1, len,
                  [&](SubLayer s, const float* input, const float*, int64_t t, int64_t width) {
                    if (s == group) captured.assign(input, input + t * width);
                  },
                  static_cast<int>(group));
    for (int64_t t = 0; t < len; ++t)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < in; ++j)
          xx[i * in + j] += static_cast<double>(captured[t * in + i]) * static_cast<double>(captured[t * in + j]);
    *tokens += len;
    at += len;
  }
  return xx;
}

double rel_frobenius(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// Variable-length chunks through collect_stats equal the per-sample float64
// reference for every sub-layer group, and are far from what attention
// across samples (one concatenated sequence) would give.
TEST(CalibrationSamples, VariableLengthStatisticsEqualThePerSampleFloat64Reference) {
  // float32 chunk products (the backend GEMM) summed in float64, against
  // float64 products of the same float32 activations: float32 rounding of
  // sums over <= 64 tokens.
  constexpr double kTolerance = 1e-5;
  // The difference attention across samples makes, at least (measured ~1e-1).
  constexpr double kCrossSampleGap = 1e-3;
  Model model(test::demo_model_dir());
  const ModelConfig& cfg = model.config();
  auto be = make_cpu_backend();
  const int64_t seqlen = 64;
  const std::vector<int64_t> lens = {7, 64, 1, 23, 40};  // odd lengths, a one-token sample, a full one
  const int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t{0});
  std::mt19937 rng(static_cast<uint32_t>(test::fresh_seed()));
  std::vector<int32_t> ids(static_cast<size_t>(total));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % cfg.vocab);
  const RopeTable rope = model.rope_table(total);  // the joined comparison runs all samples as one sequence
  const BlockWeights w = model.load_block(0);

  Chunking ch;
  ch.seqs_per_chunk = 2;
  ch.nchunks = 3;
  ch.seq_lens = lens;
  EXPECT_EQ(ch.lens(2), (std::vector<int64_t>{40}));
  EXPECT_EQ(ch.first_token(1, seqlen), 71);
  EXPECT_EQ(ch.tokens(1, 5, seqlen), 24);
  auto store = make_memory_store();
  for (int64_t c = 0; c < ch.nchunks; ++c) {
    const int64_t t = ch.tokens(c, 5, seqlen);
    std::vector<float> x(static_cast<size_t>(t * cfg.hidden));
    model.embed(ids.data() + ch.first_token(c, seqlen), t, x.data());
    store->put(0, Flow::Quant, c, x.data(), static_cast<int64_t>(x.size()));  // exactly the samples' tokens
    store->put(0, Flow::Fp, c, x.data(), static_cast<int64_t>(x.size()));
  }
  for (const SubLayer group : {SubLayer::Qkv, SubLayer::O, SubLayer::GateUp, SubLayer::Down}) {
    SCOPED_TRACE(to_string(group));
    const LinearStats stats =
        collect_stats(*be, model, w, w, rope, *store, 0, group, ch, 5, seqlen, {}, {}, nullptr);  // nothing but H
    int64_t ref_tokens = 0;
    const auto ref = reference_xx(*be, model, w, rope, ids, lens, group, &ref_tokens);
    EXPECT_EQ(stats.tokens(), total);  // no padding token counted
    EXPECT_EQ(stats.tokens(), ref_tokens);
    EXPECT_EQ(stats.sequences(), 5);
    EXPECT_LT(rel_frobenius(stats.xx_sum(), ref), kTolerance);
    if (group != SubLayer::Qkv) {  // past attention: one long sequence would differ
      int64_t t = 0;
      const auto joined = reference_xx(*be, model, w, rope, ids, {total}, group, &t);
      EXPECT_GT(rel_frobenius(joined, ref), kCrossSampleGap);
    }
  }
}

// Equal lengths through the per-sequence path give the batched path's bits.
TEST(CalibrationSamples, PerSequenceForwardOfEqualLengthsIsTheBatchedForward) {
  Model model(test::demo_model_dir());
  const ModelConfig& cfg = model.config();
  auto be = make_cpu_backend();
  const int64_t nseq = 3, seqlen = 32;
  std::mt19937 rng(static_cast<uint32_t>(test::fresh_seed()));
  std::vector<int32_t> ids(static_cast<size_t>(nseq * seqlen));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % cfg.vocab);
  const RopeTable rope = model.rope_table(seqlen);
  const BlockWeights w = model.load_block(1);
  std::vector<float> a(static_cast<size_t>(nseq * seqlen * cfg.hidden));
  model.embed(ids.data(), nseq * seqlen, a.data());
  std::vector<float> b = a;
  block_forward(*be, cfg, w, rope, a.data(), nseq, seqlen);
  block_forward(*be, cfg, w, rope, b.data(), std::vector<int64_t>(nseq, seqlen));
  EXPECT_EQ(a, b);
}

}  // namespace

// ---- streamq quantize --calib-samples, end to end on stories260K. The model
// ships llama2.c's tokenizer, not tokenizer.json: the test gives it a
// byte-level BPE one (every byte a token, ids < 256; <s>, </s> and the chat
// markers above) and a chat template, so that samples tokenize within its
// 512-token vocabulary.
namespace {

std::string byte_level_tokenizer_json() {
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+.
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  for (int b = 0, n = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string u;
    const int c = cs[i];
    if (c < 0x80) {
      u += static_cast<char>(c);
    } else {
      u += static_cast<char>(0xC0 | (c >> 6));
      u += static_cast<char>(0x80 | (c & 0x3F));
    }
    vocab[u] = bs[i];
  }
  nlohmann::json added = nlohmann::json::array();
  int id = 256;
  for (const char* t : {"<s>", "</s>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", id++}, {"content", t}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  const nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return nlohmann::json{{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", added},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", byte_level},
                        {"post_processor", nullptr},
                        {"decoder", byte_level},
                        {"model",
                         {{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"ignore_merges", false},
                          {"vocab", vocab},
                          {"merges", nlohmann::json::array()}}}}
      .dump();
}

// stories260K with that tokenizer and a ChatML-style template, in `dir`.
std::string model_with_tokenizer(const test::ScratchDir& dir) {
  const std::string m = dir.file("model");
  std::filesystem::create_directories(m);
  std::filesystem::copy(test::demo_model_dir() + "/config.json", m);
  std::filesystem::copy(test::demo_model_dir() + "/model.safetensors", m);
  test::write_all(m + "/tokenizer.json", byte_level_tokenizer_json());
  test::write_all(m + "/tokenizer_config.json",
                  nlohmann::json{{"bos_token", "<s>"},
                                 {"eos_token", "</s>"},
                                 {"add_bos_token", true},
                                 {"add_eos_token", false},
                                 {"chat_template",
                                  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                                  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}}
                      .dump());
  return m;
}

std::string samples_jsonl(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    std::string text = "Sample " + std::to_string(i) + ": ";
    for (int k = 0; k < (i * 37) % 11; ++k) text += "once upon a time ";  // 10 to 170 bytes
    if (i % 3 == 1)
      out += ojson({{"messages", {{{"role", "user"}, {"content", text}}, {{"role", "assistant"}, {"content", "ok"}}}}})
                 .dump() + "\n";
    else
      out += ojson({{"text", text}}).dump() + "\n";
  }
  return out;
}

std::vector<std::string> quantize_args(const std::string& model, const std::string& out, const std::string& samples) {
  return {"quantize", "--preset", "gptq-paper", "--model", model, "--out", out, "--calib-samples", samples, "--nsamples", "8", "--seqlen", "64",
          "--seed", "3", "--method", "gptq", "--bits", "4", "--group", "32", "--chunk-tokens", "128", "--quiet"};
}

}  // namespace

TEST(CalibrationSamples, QuantizeRunsOnSamplesReportsTheirTokensAndIsDeterministic) {
  test::ScratchDir dir("calib-samples-cli");
  const std::string model = model_with_tokenizer(dir);
  test::write_all(dir.file("s.jsonl"), samples_jsonl(12));
  auto args = quantize_args(model, dir.file("out1"), dir.file("s.jsonl"));
  args.insert(args.end(), {"--report", dir.file("r.json")});
  const auto r = test::run_streamq(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The report's counts are the calibration set's.
  SampleOptions opt;
  opt.nsamples = 8;
  opt.seqlen = 64;
  opt.seed = 3;
  const CalibrationSet want = load_calibration_samples(dir.file("s.jsonl"), model, opt, 512);
  ASSERT_GT(want.truncated, 0);
  ASSERT_GT(want.samples_chat, 0);
  ASSERT_FALSE(want.uniform(64));
  const nlohmann::json rep = nlohmann::json::parse(test::read_all(dir.file("r.json")));
  EXPECT_EQ(rep["calibration"]["tokens"], want.tokens());
  EXPECT_EQ(rep["calibration"]["samples_truncated"], want.truncated);
  EXPECT_EQ(rep["calibration"]["sequences"], 8);
  EXPECT_EQ(rep["calibration"]["samples_available"], 12);

  // Same job, activations on the compressed disk store (chunks of two
  // samples of different sizes): the same bytes.
  auto disk = quantize_args(model, dir.file("out2"), dir.file("s.jsonl"));
  disk.insert(disk.end(), {"--activations", "disk"});
  const auto r2 = test::run_streamq(disk);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_TRUE(test::read_all(dir.file("out1") + "/model.safetensors") ==
              test::read_all(dir.file("out2") + "/model.safetensors"));
  // Another draw, other bytes.
  auto other = quantize_args(model, dir.file("out3"), dir.file("s.jsonl"));
  other[other.size() - 10] = "4";  // --seed
  ASSERT_EQ(other[other.size() - 11], "--seed");
  const auto r3 = test::run_streamq(other);
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  EXPECT_TRUE(test::read_all(dir.file("out1") + "/model.safetensors") !=
              test::read_all(dir.file("out3") + "/model.safetensors"));
}

TEST(CalibrationSamples, QuantizeRefusesBadSampleInputWithOneLineNamingFileOrFlag) {
  test::ScratchDir dir("calib-samples-cli-err");
  const std::string model = model_with_tokenizer(dir);
  test::write_all(dir.file("s.jsonl"), samples_jsonl(5));
  auto expect_error = [](const test::CliResult& r, const std::string& needle) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  // Fewer samples than --nsamples 8.
  expect_error(test::run_streamq(quantize_args(model, dir.file("o"), dir.file("s.jsonl"))),
               dir.file("s.jsonl") + ": 5 samples, fewer than --nsamples 8");
  auto a = quantize_args(model, dir.file("o"), dir.file("s.jsonl"));
  a.insert(a.end(), {"--calib", dir.file("s.jsonl")});
  expect_error(test::run_streamq(a), "pass exactly one of --calib");
  a = quantize_args(model, dir.file("o"), dir.file("s.jsonl"));
  a.insert(a.end(), {"--calib-select", "best"});
  expect_error(test::run_streamq(a), "--calib-select");
  test::write_all(dir.file("bad.jsonl"), samples_jsonl(9) + "{\"txt\": 1}\n");
  expect_error(test::run_streamq(quantize_args(model, dir.file("o"), dir.file("bad.jsonl"))),
               dir.file("bad.jsonl") + ":10: no \"text\" or \"messages\"");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o")));
}

}  // namespace streamq
