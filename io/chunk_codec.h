// Turning one chunk of float32 activations into a chunk file and back:
// dtype conversion, byte shuffle, streaming zstd straight into and out of the
// I/O engine's slabs, checksums. One codec serves one call at a time (it owns
// zstd contexts and segment buffers); the store keeps a pool of them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/chunk_header.h"
#include "io/io_engine.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace streamq {

class ChunkCodec {
 public:
  ChunkCodec();
  ~ChunkCodec();
  ChunkCodec(const ChunkCodec&) = delete;
  ChunkCodec& operator=(const ChunkCodec&) = delete;

  // Encodes data[h.numel] as `h` asks (block, flow, chunk, numel, storage,
  // shuffled, segment_elems, zstd_level) and queues the file's writes on fd
  // into g: payload slabs as they fill, while compression goes on, then the
  // header. Returns when all are queued, not written; returns h completed
  // with sizes and checksums.
  ChunkHeader write(IoEngine& io, int fd, IoEngine::Group* g, ChunkHeader h, const float* data);

  // Reads the chunk file on fd (file_bytes long, named path), checks it
  // against expect's block, flow and chunk and its checksums, and decodes it
  // into out, with up to read_ahead slab reads in flight. Throws
  // StoreCorruptionError for bad contents and InternalError for failed I/O,
  // both starting with `where`. Returns the header.
  ChunkHeader read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes, const ChunkHeader& expect,
                   const std::string& where, uint32_t read_ahead, std::vector<float>* out);

 private:
  void ensure_segment(size_t bytes);

  std::unique_ptr<ZSTD_CCtx_s, size_t (*)(ZSTD_CCtx_s*)> cctx_;
  std::unique_ptr<ZSTD_DCtx_s, size_t (*)(ZSTD_DCtx_s*)> dctx_;
  std::vector<char> seg_, shuf_;  // one segment of storage-dtype bytes, plain and shuffled
};

}  // namespace streamq
