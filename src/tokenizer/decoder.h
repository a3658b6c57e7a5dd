// tokenizer.json decoders: turn token strings back into text (ByteLevel,
// Metaspace, and Llama-2's Replace + ByteFallback + Fuse + Strip sequence).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace streamq::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // The reference's decode_chain: tokens in, (possibly fewer) strings out.
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

// nullptr for a JSON null. Throws InputError naming an unsupported type.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

}  // namespace streamq::tok
