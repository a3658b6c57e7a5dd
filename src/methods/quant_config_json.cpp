// JSON round trip of the quantizer configuration.
#include "src/methods/quant_config_json.h"

#include <limits>
#include <string>

#include "src/core/error.h"

namespace streamq {
namespace {

template <typename E, size_t N>
E parse_enum(const nlohmann::json& j, const char* key, const E (&values)[N], const std::string& where) {
  const std::string s = j.at(key).get<std::string>();
  for (E v : values)
    if (s == to_string(v)) return v;
  throw InputError(where + ": unknown " + key + " '" + s + "'");
}

// An integer field, checked: nlohmann's get<int>() converts a float as a
// C cast does, undefined past int's range (fuzz_quant_config: 4.2e20 for
// "bits"), and wraps a large integer silently.
template <class T>
T integer_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const nlohmann::json& v = j.at(key);
  const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                    : v.is_number_integer()
                        ? v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                              v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
                        : false;
  if (!fits) throw InputError(where + ": " + key + " must be an integer in range, not " + v.dump());
  return v.is_number_unsigned() ? static_cast<T>(v.get<uint64_t>()) : static_cast<T>(v.get<int64_t>());
}

}  // namespace

nlohmann::json quant_config_to_json(const QuantConfig& c) {
  nlohmann::json j{{"method", to_string(c.method)},
          {"bits", c.bits},
          {"group", c.group},
          {"sym", c.sym},
          {"grid_style", to_string(c.grid_style)},
          {"clip", to_string(c.clip)},
          {"mse_grid", c.mse_grid},
          {"mse_max_shrink", c.mse_max_shrink},
          {"mse_norm", c.mse_norm},
          {"act_order", c.act_order},
          {"static_groups", c.static_groups},
          {"checkpoint_format", to_string(c.checkpoint_format)},
          {"percdamp", c.percdamp},
          {"blocksize", c.blocksize},
          {"max_damp_retries", c.max_damp_retries},
          {"gptaq_alpha", c.gptaq_alpha},
          {"cae", c.cae},
          {"cae_alpha", c.cae_alpha},
          {"cae_source", to_string(c.cae_source)},
          {"p1_original", c.p1_original},
          {"variant", to_string(c.variant)},
          {"scale_beta_step", c.scale_beta_step},
          {"scale_beta_min", c.scale_beta_min},
          {"scale_beta_max", c.scale_beta_max},
          {"scale_refine_iters", c.scale_refine_iters}};
  if (c.free_min) j["free_min"] = true;  // only when set: older manifests and quant files stay identical
  return j;
}

QuantConfig quant_config_from_json(const nlohmann::json& j, const std::string& where) {
  QuantConfig c;
  try {
    c.method = parse_enum(j, "method", {MethodKind::Rtn, MethodKind::Gptq, MethodKind::Gptaq}, where);
    c.bits = integer_field<int>(j, "bits", where);
    c.group = integer_field<int64_t>(j, "group", where);
    c.sym = j.at("sym").get<bool>();
    c.grid_style = parse_enum(j, "grid_style", {GridStyle::Quarot, GridStyle::Gptq}, where);
    c.clip = parse_enum(j, "clip", {ClipSearch::MinMax, ClipSearch::Mse, ClipSearch::TwoStage}, where);
    c.mse_grid = integer_field<int>(j, "mse_grid", where);
    c.mse_max_shrink = j.at("mse_max_shrink").get<double>();
    c.mse_norm = j.at("mse_norm").get<double>();
    c.act_order = j.at("act_order").get<bool>();
    c.static_groups = j.at("static_groups").get<bool>();
    c.checkpoint_format =
        parse_enum(j, "checkpoint_format", {CheckpointFormat::Gptq, CheckpointFormat::GptqV2}, where);
    c.percdamp = j.at("percdamp").get<double>();
    c.blocksize = integer_field<int64_t>(j, "blocksize", where);
    c.max_damp_retries = integer_field<int>(j, "max_damp_retries", where);
    c.gptaq_alpha = j.at("gptaq_alpha").get<double>();
    c.cae = j.at("cae").get<bool>();
    c.cae_alpha = j.at("cae_alpha").get<double>();
    c.cae_source = parse_enum(j, "cae_source", {CaeSource::Xx, CaeSource::Xfx}, where);
    c.p1_original = j.at("p1_original").get<bool>();
    c.variant = parse_enum(j, "variant", {Variant::Exact, Variant::Official}, where);
    c.scale_beta_step = j.at("scale_beta_step").get<double>();
    c.scale_beta_min = j.at("scale_beta_min").get<double>();
    c.scale_beta_max = j.at("scale_beta_max").get<double>();
    c.scale_refine_iters = integer_field<int>(j, "scale_refine_iters", where);
    c.free_min = j.value("free_min", false);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": bad quantizer config: " + e.what());
  }
  return c;
}

nlohmann::json loaq_config_to_json(const LoaqConfig& c) {
  return {{"enabled", c.enabled}, {"alpha", c.alpha}, {"beta", c.beta}, {"norm", c.norm}};
}

}  // namespace streamq
