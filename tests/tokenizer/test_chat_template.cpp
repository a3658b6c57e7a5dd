// ChatTemplate against renderings by Hugging Face transformers (jinja2):
// tests/data/chat_templates/goldens.json, made by
// tests/fixtures/make_chat_template_golden.py. The fixture tokenizers'
// templates also check the token ids of the whole path (render, then encode
// without added special tokens) against HF `tokenizers`.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/tokenizer/chat_template.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using ojson = nlohmann::ordered_json;

const std::string kDataDir = test::source_dir() + "/tests/data/chat_templates";

ojson goldens() { return ojson::parse(test::read_all(kDataDir + "/goldens.json")); }

std::map<std::string, std::string> special_tokens(const ojson& c) {
  std::map<std::string, std::string> m;
  if (c.contains("special_tokens"))
    for (const auto& [k, v] : c["special_tokens"].items()) m[k] = v.get<std::string>();
  return m;
}

// The template a case names: a fixture tokenizer's directory or a file here.
const ChatTemplate& template_for(const ojson& c) {
  static std::map<std::string, ChatTemplate> cache;
  const std::string name = c["template"].get<std::string>();
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  if (name.rfind("fixture:", 0) == 0)
    return cache.emplace(name, ChatTemplate::from_model_dir(test::shared_fixtures_dir() + "/tokenizers/" +
                                                            name.substr(8)))
        .first->second;
  const std::string path = kDataDir + "/" + name.substr(5);
  return cache.emplace(name, ChatTemplate(test::read_all(path), special_tokens(c), path)).first->second;
}

TEST(ChatTemplate, RendersAsTransformersDoesOnEveryGoldenConversation) {
  const ojson g = goldens();
  int rendered = 0, refused = 0;
  for (const auto& c : g["cases"]) {
    const ChatTemplate& t = template_for(c);
    const bool agp = c["add_generation_prompt"].get<bool>();
    SCOPED_TRACE(c["template"].get<std::string>() + " " + c["messages"].dump() + (agp ? " +generation prompt" : ""));
    if (c.contains("error")) {
      try {
        t.render(c["messages"], agp);
        ADD_FAILURE() << "expected the template to refuse the conversation";
      } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
      }
      ++refused;
      continue;
    }
    EXPECT_EQ(t.render(c["messages"], agp), c["rendered"].get<std::string>());
    ++rendered;
  }
  // Every family: 2 fixture templates + 4 files, 5 conversations x 2 settings, and the refusals.
  EXPECT_EQ(rendered, 60);
  EXPECT_EQ(refused, 2);
}

TEST(ChatTemplate, FixtureTokenizersGiveTheReferenceIdsOfTheRenderedConversation) {
  const ojson g = goldens();
  int checked = 0;
  for (const auto& c : g["cases"]) {
    if (!c.contains("ids")) continue;
    const std::string name = c["template"].get<std::string>().substr(8);
    const auto tok = Tokenizer::load(test::shared_fixtures_dir() + "/tokenizers/" + name + "/tokenizer.json");
    const std::string text = template_for(c).render(c["messages"], c["add_generation_prompt"].get<bool>());
    EXPECT_EQ(tok->encode(text, false), c["ids"].get<std::vector<int32_t>>()) << name << " " << c["messages"].dump();
    ++checked;
  }
  EXPECT_EQ(checked, 20);
}

TEST(ChatTemplate, StrftimeNowFormatsTheFixedDate) {
  const ChatTemplate t("{{ strftime_now('%Y-%m-%d %a %d %b %Y') }}", {}, "inline");
  EXPECT_EQ(t.render(ojson::array()), "2024-07-26 Fri 26 Jul 2024");
}

TEST(ChatTemplate, SpecialTokensAndGenerationPromptAreInScope) {
  const ChatTemplate t("{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m['content'] }}]{% endfor %}"
                       "{% if add_generation_prompt %}>{% endif %}{{ eos_token }}{{ tools is none }}",
                       {{"bos_token", "<s>"}, {"eos_token", "</s>"}}, "inline");
  const ojson m = ojson::parse(R"([{"role":"user","content":"hi"}])");
  EXPECT_EQ(t.render(m, false), "<s>[user:hi]</s>True");
  EXPECT_EQ(t.render(m, true), "<s>[user:hi]></s>True");
}

TEST(ChatTemplate, ErrorsNameTheTemplate) {
  try {
    ChatTemplate("{% for x in %}", {}, "model/tokenizer_config.json (chat_template)");
    FAIL() << "expected a parse error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model/tokenizer_config.json (chat_template): chat template does not parse"),
              std::string::npos)
        << e.what();
  }
  const ChatTemplate t("{{ raise_exception('no system role here') }}", {}, "T");
  try {
    t.render(ojson::array());
    FAIL() << "expected raise_exception to throw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("T: chat template: no system role here"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.render(ojson::object()), InputError);
}

TEST(ChatTemplate, FromModelDirReadsTokenizerConfigAndPrefersChatTemplateJinja) {
  namespace fs = std::filesystem;
  const std::string dir = fs::temp_directory_path() / ("streamq_chat_template_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  // No template at all: an InputError that names the directory.
  test::write_all(dir + "/tokenizer_config.json", R"({"bos_token": {"content": "<s>", "__type": "AddedToken"}})");
  try {
    ChatTemplate::from_model_dir(dir);
    FAIL() << "expected an error for a model without a chat template";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir + ": the model has no chat template"), std::string::npos) << e.what();
  }
  // A list of named templates: "default"; AddedToken objects give their content.
  test::write_all(dir + "/tokenizer_config.json",
                  R"({"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>",
                      "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}"}]})");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir).render(ojson::array()), "<s>D</s>");
  // special_tokens_map.json overrides, chat_template.jinja wins over the config.
  test::write_all(dir + "/special_tokens_map.json", R"({"eos_token": "<|end|>"})");
  test::write_all(dir + "/chat_template.jinja", "J{{ eos_token }}\n");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir).render(ojson::array()), "J<|end|>");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace streamq
