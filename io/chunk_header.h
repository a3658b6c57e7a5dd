// The on-disk format of one compressed activation chunk file:
//   [0, 4096)            header (below), little-endian, zero padded; its own
//                        xxh64 covers all 4096 bytes, so no flipped byte passes
//   [4096, 4096 + C)     one zstd frame of the storage-dtype payload, byte-
//                        shuffled per segment when `shuffled`
//   zero padding up to a multiple of 4096 (O_DIRECT moves whole blocks)
// The payload checksum covers the C compressed bytes; the raw checksum covers
// the storage-dtype bytes before shuffling, i.e. what decoding must give back.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace streamq {

constexpr uint32_t kChunkHeaderBytes = 4096;
constexpr uint32_t kChunkFormatVersion = 1;

struct ChunkHeader {
  int64_t block = 0;
  uint32_t flow = 0;  // Flow as an integer
  int64_t chunk = 0;
  uint64_t numel = 0;  // float32 values put
  DType storage = DType::BF16;  // F32 or BF16
  bool shuffled = false;
  uint32_t segment_elems = 0;  // the shuffle's span: byte planes are per segment of this many elements
  int32_t zstd_level = 0;      // informative: decoding does not need it
  uint64_t raw_bytes = 0;      // numel * dtype_size(storage)
  uint64_t compressed_bytes = 0;
  uint64_t xxh64_compressed = 0;
  uint64_t xxh64_raw = 0;
};

// A stored chunk that does not decode to what was put: bad header, checksum,
// size or zstd frame. The message names block, flow, chunk and file.
class StoreCorruptionError : public InternalError {
 public:
  explicit StoreCorruptionError(const std::string& what) : InternalError(what) {}
};

// Writes the 4096-byte header block.
void encode_chunk_header(const ChunkHeader& h, char* out);
// Parses and checks a header block (magic, version, checksum, sizes
// consistent with dtype and numel). Returns an empty string when sound, else
// what is wrong.
std::string decode_chunk_header(const char* in, ChunkHeader* h);
// Bytes of the whole file: header plus payload padded to 4096.
uint64_t chunk_file_bytes(const ChunkHeader& h);

}  // namespace streamq
