// QuantConfig survives a JSON round trip field by field (a workdir compares
// configs through it, the GPTQ export reads it back).
#include <gtest/gtest.h>

#include "src/core/error.h"
#include "src/methods/quant_config_json.h"

namespace streamq {
namespace {

TEST(QuantConfigJson, RoundTripsEveryNonDefaultField) {
  QuantConfig c;
  c.method = MethodKind::Gptaq;
  c.bits = 3;
  c.group = 32;
  c.sym = false;
  c.grid_style = GridStyle::Gptq;
  c.clip = ClipSearch::TwoStage;
  c.mse_grid = 77;
  c.mse_max_shrink = 0.7;
  c.mse_norm = 2.0;
  c.act_order = true;
  c.static_groups = true;
  c.checkpoint_format = CheckpointFormat::GptqV2;
  c.percdamp = 0.05;
  c.blocksize = 64;
  c.max_damp_retries = 3;
  c.gptaq_alpha = 1.0;
  c.cae = true;
  c.cae_alpha = 0.5;
  c.cae_source = CaeSource::Xfx;
  c.p1_original = true;
  c.variant = Variant::Official;
  c.scale_beta_step = 0.01;
  c.scale_beta_min = 0.6;
  c.scale_beta_max = 1.1;
  c.scale_refine_iters = 4;
  const nlohmann::json j = quant_config_to_json(c);
  const QuantConfig back = quant_config_from_json(j, "test");
  // Every field differs from its default, so a field the round trip drops fails here.
  EXPECT_EQ(quant_config_to_json(back), j);
  EXPECT_NE(quant_config_to_json(QuantConfig{}), j);
  EXPECT_EQ(back.describe(), c.describe());
  EXPECT_EQ(back.checkpoint_format, CheckpointFormat::GptqV2);
  EXPECT_EQ(j.at("checkpoint_format"), "gptq_v2");  // config.json's spelling
}

TEST(QuantConfigJson, RejectsUnknownSpellingsAndMissingFields) {
  nlohmann::json j = quant_config_to_json(QuantConfig{});
  j["clip"] = "lucky";
  EXPECT_THROW(quant_config_from_json(j, "x"), InputError);
  j = quant_config_to_json(QuantConfig{});
  j.erase("bits");
  EXPECT_THROW(quant_config_from_json(j, "x"), InputError);
  j = quant_config_to_json(QuantConfig{});
  j["checkpoint_format"] = "gptq_v3";
  EXPECT_THROW(quant_config_from_json(j, "x"), InputError);
}

// Integers are checked as integers in the field's range: a float past int's
// range was converted with undefined behaviour (fuzz_quant_config found
// "bits": 418446744073709551616, which JSON parsers read as a double).
TEST(QuantConfigJson, IntegerFieldsMustBeIntegersInRange) {
  for (const char* key : {"bits", "group", "mse_grid", "blocksize", "max_damp_retries", "scale_refine_iters"}) {
    for (const nlohmann::json& bad : {nlohmann::json(4.18e20), nlohmann::json(1.5), nlohmann::json("4"),
                                      nlohmann::json::parse("418446744073709551616")}) {
      nlohmann::json j = quant_config_to_json(QuantConfig{});
      j[key] = bad;
      try {
        quant_config_from_json(j, "cfg.json");
        ADD_FAILURE() << key << " = " << bad.dump() << " accepted";
      } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(std::string("cfg.json: ") + key), std::string::npos) << e.what();
      }
    }
  }
  nlohmann::json j = quant_config_to_json(QuantConfig{});
  j["bits"] = 5000000000ll;  // an integer, past int
  EXPECT_THROW(quant_config_from_json(j, "x"), InputError);
  j["bits"] = 3u;  // unsigned, in range
  EXPECT_EQ(quant_config_from_json(j, "x").bits, 3);
}

}  // namespace
}  // namespace streamq
