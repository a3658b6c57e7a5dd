// QuantConfig and LoaqConfig as JSON: every field, so a stored description
// (a workdir's fingerprint, a checkpoint's metadata) can be compared exactly
// and turned back into the config that produced it.
#pragma once

#include <nlohmann/json.hpp>

#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"

namespace streamq {

nlohmann::json quant_config_to_json(const QuantConfig& c);
// Throws InputError naming `where` and the field when a value is missing or
// not one of the known spellings.
QuantConfig quant_config_from_json(const nlohmann::json& j, const std::string& where);

nlohmann::json loaq_config_to_json(const LoaqConfig& c);

}  // namespace streamq
