// ChatTemplate (see chat_template.h): minja configured as transformers
// configures jinja2 for apply_chat_template.
#include "src/tokenizer/chat_template.h"

#include <ctime>
#include <filesystem>

#include "io/file/file_util.h"
#include "src/core/error.h"
#include "src/tokenizer/minja/minja.hpp"

namespace streamq {

struct ChatTemplate::Impl {
  std::shared_ptr<minja::TemplateNode> root;
  std::map<std::string, std::string> special_tokens;
};

namespace {

// transformers compiles templates with trim_blocks and lstrip_blocks and
// jinja2's default of dropping a single trailing newline.
constexpr minja::Options kOptions{/*trim_blocks=*/true, /*lstrip_blocks=*/true, /*keep_trailing_newline=*/false};

// The fixed instant strftime_now formats: 2024-07-26 00:00:00.
std::string strftime_fixed(const std::string& format) {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_wday = 5;  // a Friday
  tm.tm_yday = 207;
  char buf[256];
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
  return std::string(buf, n);
}

// A special token as tokenizer_config.json / special_tokens_map.json write
// it: a string, or an AddedToken object with "content".
bool token_text(const nlohmann::json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    *out = v["content"].get<std::string>();
    return true;
  }
  return false;
}

// transformers' SPECIAL_TOKENS_ATTRIBUTES: the names a template can read.
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::map<std::string, std::string> special_tokens, std::string origin)
    : impl_(std::make_unique<Impl>()), source_(std::move(source)), origin_(std::move(origin)) {
  impl_->special_tokens = std::move(special_tokens);
  try {
    impl_->root = minja::Parser::parse(source_, kOptions);
  } catch (const std::exception& e) {
    throw InputError(origin_ + ": chat template does not parse: " + e.what());
  }
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

ChatTemplate ChatTemplate::from_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string map_path = dir + "/special_tokens_map.json";
  const std::string jinja_path = dir + "/chat_template.jinja";
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path)) config = read_json_file(config_path);
  if (!config.is_object()) throw InputError(config_path + ": expected a JSON object");

  std::string source, origin;
  if (fs::exists(jinja_path)) {
    source = read_file(jinja_path);
    origin = jinja_path;
  } else {
    const auto it = config.find("chat_template");
    if (it == config.end() || it->is_null())
      throw InputError(dir + ": the model has no chat template (neither chat_template.jinja nor a \"chat_template\" "
                             "in tokenizer_config.json); calibration samples with \"messages\" need one, or give "
                             "samples as \"text\"");
    origin = config_path + " (chat_template)";
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      for (const auto& t : *it)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
          source = t["template"].get<std::string>();
      if (source.empty())
        throw InputError(config_path + ": \"chat_template\" is a list without a \"default\" template");
      origin = config_path + " (chat_template 'default')";
    } else {
      throw InputError(config_path + ": \"chat_template\" must be a string or a list of {name, template}");
    }
  }
  std::map<std::string, std::string> special;
  auto take = [&](const nlohmann::json& j) {
    if (!j.is_object()) return;
    for (const char* name : kSpecialTokenNames) {
      std::string text;
      if (j.contains(name) && token_text(j[name], &text)) special[name] = text;
    }
  };
  take(config);
  if (fs::exists(map_path)) take(read_json_file(map_path));
  return ChatTemplate(std::move(source), std::move(special), std::move(origin));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  if (!messages.is_array()) throw InputError(origin_ + ": chat template input: \"messages\" must be a list");
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  for (const auto& [name, text] : impl_->special_tokens) vars[name] = text;
  vars["messages"] = messages;
  vars["tools"] = nullptr;
  vars["documents"] = nullptr;
  vars["add_generation_prompt"] = add_generation_prompt;
  auto context = minja::Context::make(minja::Value(vars));
  context->set("strftime_now", minja::Value::callable([](const std::shared_ptr<minja::Context>&,
                                                             minja::ArgumentsValue& args) -> minja::Value {
                 args.expectArgs("strftime_now", {1, 1}, {0, 0});
                 return minja::Value(strftime_fixed(args.args[0].get<std::string>()));
               }));
  try {
    return impl_->root->render(context);
  } catch (const std::exception& e) {
    throw InputError(origin_ + ": chat template: " + e.what());
  }
}

}  // namespace streamq
