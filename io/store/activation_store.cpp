// The in-memory ActivationStore (the compressed on-disk one is io/store/compressed_store.cpp).
#include "io/store/activation_store.h"

#include <algorithm>

#include "src/core/error.h"

namespace streamq {

const char* to_string(Flow f) { return f == Flow::Fp ? "fp" : "quant"; }

void ActivationStore::adopt(int64_t block, int64_t, const std::vector<Flow>&) {
  throw InternalError("activation store: boundary " + std::to_string(block) +
                      " is on disk, but this store keeps nothing on disk to resume from");
}

void copy_chunk_into(int64_t block, Flow flow, int64_t chunk, const std::vector<float>& held, std::span<float> out) {
  if (held.size() != out.size())
    throw InternalError("activation store: block " + std::to_string(block) + ", flow " + to_string(flow) + ", chunk " +
                        std::to_string(chunk) + ": holds " + std::to_string(held.size()) +
                        " values, the reader's buffer " + std::to_string(out.size()));
  std::copy(held.begin(), held.end(), out.begin());
}

void ActivationStore::get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) {
  std::vector<float> v;
  get(block, flow, chunk, &v);
  copy_chunk_into(block, flow, chunk, v, out);
}

namespace {

std::string where(int64_t block, Flow flow, int64_t chunk) {
  return "activation store: block " + std::to_string(block) + ", flow " + to_string(flow) + ", chunk " +
         std::to_string(chunk);
}

class MemoryStore final : public ActivationStore {
 public:
  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    auto& slot = chunks_[{block, static_cast<int>(flow), chunk}];
    bytes_ -= slot.size() * sizeof(float);
    slot.assign(data, data + numel);
    bytes_ += slot.size() * sizeof(float);
  }
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override {
    auto it = chunks_.find({block, static_cast<int>(flow), chunk});
    if (it == chunks_.end()) throw InternalError(where(block, flow, chunk) + ": not stored");
    *out = it->second;
  }
  void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) override {
    auto it = chunks_.find({block, static_cast<int>(flow), chunk});
    if (it == chunks_.end()) throw InternalError(where(block, flow, chunk) + ": not stored");
    copy_chunk_into(block, flow, chunk, it->second, out);
  }
  void drop(int64_t block) override {
    for (auto it = chunks_.begin(); it != chunks_.end();) {
      if (std::get<0>(it->first) == block) {
        bytes_ -= it->second.size() * sizeof(float);
        it = chunks_.erase(it);
      } else {
        ++it;
      }
    }
  }
  uint64_t bytes_held() const override { return bytes_; }

 private:
  std::map<std::tuple<int64_t, int, int64_t>, std::vector<float>> chunks_;
  uint64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<ActivationStore> make_memory_store() { return std::make_unique<MemoryStore>(); }

}  // namespace streamq
