// Where the activations between blocks live: for each block boundary, two
// flows (the FP model's and the quantized model's) of chunks of whole
// calibration sequences. The compressed, asynchronous store
// (io/store/compressed_store.h) is behind this same interface.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "src/core/dtype.h"
#include "io/file/io_backend.h"

namespace streamq {

enum class Flow { Fp = 0, Quant = 1 };
const char* to_string(Flow f);
// Both flows, in the order a boundary is written.
inline const std::vector<Flow> kAllFlows = {Flow::Fp, Flow::Quant};

// What a store holds on disk (the compressed store; zero for memory).
struct StoreStats {
  int64_t chunks = 0;
  uint64_t input_bytes = 0;       // float32 bytes put
  uint64_t raw_bytes = 0;         // in the storage dtype, before compression
  uint64_t compressed_bytes = 0;  // zstd payloads
  uint64_t file_bytes = 0;        // on disk: headers and padding included
  double ratio() const { return compressed_bytes ? static_cast<double>(raw_bytes) / compressed_bytes : 0.0; }
};

// The decorators (read-ahead, mirror, trace) forward every call below, so a
// job holds only the outermost store; the calls a store needs no work for
// have default implementations.
class ActivationStore {
 public:
  virtual ~ActivationStore() = default;
  // Stores chunk `chunk` of `flow` at boundary `block` (the input of block
  // `block`); numel floats.
  virtual void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) = 0;
  // Reads it back into out (resized). Throws when absent or damaged, naming
  // block, flow and chunk.
  virtual void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) = 0;
  // Reads it into the caller's buffer, which must have exactly the chunk's
  // size (else InternalError naming block, flow, chunk and both sizes): a
  // chunk pass reads straight into the pinned staging its upload copies
  // from, with no vector between store and copy engine. The default reads
  // through get() and copies; the stores override it to decode in place.
  virtual void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out);
  // Frees everything of boundary `block` (consumed).
  virtual void drop(int64_t block) = 0;
  // Bytes currently held (memory) or on disk.
  virtual uint64_t bytes_held() const = 0;

  // Returns once every put so far is durable on disk. Memory: nothing to do.
  virtual void flush() {}
  // A read-ahead hint: starts reading the chunk in the background and says
  // whether it did (or needs none). false: not now, or this store has no
  // background reader (it reads when asked; memory holds everything).
  virtual bool prefetch(int64_t /*block*/, Flow /*flow*/, int64_t /*chunk*/) { return false; }
  // A resumed job's boundary `block`, left on disk by an earlier process:
  // `nchunks` chunks of each of `flows`, taken over and read from disk. Call
  // before any put of that block. A store with no disk side has nothing to
  // take over: InternalError (the caller placed a resumed job wrongly).
  virtual void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows);
  // What is held on disk for `block` (all blocks when block < 0); empty for
  // a store with nothing on disk.
  virtual StoreStats stats(int64_t /*block*/ = -1) const { return {}; }
};

// A held chunk into get_into's buffer: its size error (naming block, flow,
// chunk and both sizes) when they differ, else a copy (for the stores' own
// get_into).
void copy_chunk_into(int64_t block, Flow flow, int64_t chunk, const std::vector<float>& held, std::span<float> out);

// Everything in host memory.
std::unique_ptr<ActivationStore> make_memory_store();

// The compressed store: one checksummed, zstd-compressed file per chunk under
// `dir`, written and read through io_uring (or pread/pwrite) with O_DIRECT.
struct CompressedStoreOptions {
  std::string dir;  // created
  // What a chunk is stored as: F32 is lossless; BF16 (what a GPU pipeline
  // carries) rounds each value to nearest even (f32_to_bf16) and halves the bytes.
  DType storage = DType::BF16;
  // Measured (bench/bench_store, bf16, shuffled): level 1 compresses
  // stories260K block inputs 1.723x and gaussian data 1.466x, as well as or
  // better than 3 (1.675, 1.419), 5 (1.715, 1.432) and 9 (1.714, 1.439),
  // and faster than all of them; -1 loses a tenth of the ratio (1.549, 1.227).
  int zstd_level = 1;
  // Byte planes before zstd (io/store/byte_shuffle.h). Measured at level 1: the
  // ratio goes from 1.497 to 1.723 (stories260K) and 1.287 to 1.466
  // (gaussian), and decompression gets faster; compression gets slower.
  bool shuffle = true;
  // Values per zstd frame: the unit of parallel work and of the shuffle.
  // Measured on gaussian bf16, zstd 1, shuffled: 64 Ki values per frame give
  // a ratio of 1.322, 128 Ki 1.443, 256 Ki 1.466, one 16 Mi frame 1.464 (below
  // 256 Ki a plane is shorter than zstd's 128 KiB block; above, nothing is
  // gained and parallelism is lost).
  uint32_t frame_elems = 1u << 18;
  IoPath io = IoPath::Auto;
  bool direct_io = true;  // O_DIRECT; buffered, said once, where the filesystem refuses it
  uint32_t slab_bytes = 1u << 20;  // one request, one registered buffer; a multiple of 4096
  uint32_t slabs = 32;             // the fixed pool: bounds requests in flight and pinned memory
  uint32_t read_ahead = 8;         // slab reads in flight per get()
  bool keep_files = false;         // leave chunk files behind when the store is destroyed
};

}  // namespace streamq
