// Where the activations between blocks live: for each block boundary, two
// flows (the FP model's and the quantized model's) of chunks of whole
// calibration sequences. The compressed, asynchronous store
// (io/compressed_store.h) is behind this same interface.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "io/io_backend.h"

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

// The compressed store: one checksummed, zstd-compressed file per chunk under
// `dir`, written and read through io_uring (or pread/pwrite) with O_DIRECT.
struct CompressedStoreOptions {
  std::string dir;  // created
  // What a chunk is stored as: F32 is lossless; BF16 (what a GPU pipeline
  // carries) rounds each value to nearest even (f32_to_bf16) and halves the bytes.
  DType storage = DType::BF16;
  // Measured by bench/bench_store on stories260K block inputs and gaussian
  // data (bf16): see kDefaultZstdLevel in io/compressed_store.cpp.
  int zstd_level = 1;
  bool shuffle = true;  // byte planes before zstd (see io/byte_shuffle.h)
  IoPath io = IoPath::Auto;
  bool direct_io = true;  // O_DIRECT; buffered, said once, where the filesystem refuses it
  uint32_t slab_bytes = 1u << 20;  // one request, one registered buffer; a multiple of 4096
  uint32_t slabs = 32;             // the fixed pool: bounds requests in flight and pinned memory
  uint32_t read_ahead = 8;         // slab reads in flight per get()
  bool keep_files = false;         // leave chunk files behind when the store is destroyed
};
std::unique_ptr<ActivationStore> make_compressed_store(const CompressedStoreOptions& opts);

}  // namespace streamq
