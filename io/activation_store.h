// Where the activations between blocks live: for each block boundary, two
// flows (the FP model's and the quantized model's) of chunks of whole
// calibration sequences. The compressed, asynchronous store comes later behind
// this same interface.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace streamq {

enum class Flow { Fp = 0, Quant = 1 };
const char* to_string(Flow f);

class ActivationStore {
 public:
  virtual ~ActivationStore() = default;
  // Stores chunk `chunk` of `flow` at boundary `block` (the input of block
  // `block`); numel floats.
  virtual void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) = 0;
  // Reads it back into out (resized). Throws when absent or damaged, naming
  // block, flow and chunk.
  virtual void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) = 0;
  // Frees everything of boundary `block` (consumed).
  virtual void drop(int64_t block) = 0;
  // Bytes currently held (memory) or on disk.
  virtual uint64_t bytes_held() const = 0;
};

// Everything in host memory.
std::unique_ptr<ActivationStore> make_memory_store();
// One file per block boundary and flow under `dir` (created), chunks at
// recorded offsets, read back with pread; files removed by drop().
std::unique_ptr<ActivationStore> make_disk_store(const std::string& dir);

}  // namespace streamq
