// The on-disk format of one compressed activation chunk file:
//   [0, H)          header: fixed fields (below) and a frame table, little-
//                   endian, zero padded to H, a multiple of 4096; its own
//                   xxh64 covers all H bytes, so no flipped byte passes
//   [H, H + C)      the frames back to back: frame i is an independent zstd
//                   frame of values [i*F, (i+1)*F) in the storage dtype, byte-
//                   shuffled (planes per frame) when `shuffled`
//   zero padding up to a multiple of 4096 (O_DIRECT moves whole blocks)
// Independent frames let both directions run on all cores with output that
// does not depend on how many. Checksums: xxh64 of the C compressed bytes, and
// per frame xxh64 of its storage-dtype bytes before shuffling (what decoding
// must give back); the header's raw checksum is the xxh64 of those.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"

namespace streamq {

constexpr uint32_t kChunkAlign = 4096;
constexpr uint32_t kChunkFormatVersion = 1;

struct ChunkFrame {
  uint32_t compressed_bytes = 0;
  uint64_t xxh64_raw = 0;  // of its storage-dtype bytes before shuffling
};

struct ChunkHeader {
  int64_t block = 0;
  uint32_t flow = 0;  // Flow as an integer
  int64_t chunk = 0;
  uint64_t numel = 0;  // float32 values put
  DType storage = DType::BF16;  // F32 or BF16
  bool shuffled = false;
  uint32_t frame_elems = 0;  // values per frame (the last may hold fewer)
  int32_t zstd_level = 0;    // informative: decoding does not need it
  uint64_t raw_bytes = 0;    // numel * dtype_size(storage)
  uint64_t compressed_bytes = 0;
  uint64_t xxh64_compressed = 0;
  uint64_t xxh64_raw = 0;  // of the frames' raw checksums
  std::vector<ChunkFrame> frames;
};

// A stored chunk that does not decode to what was put: bad header, checksum,
// size or zstd frame. The message names block, flow, chunk and file.
class StoreCorruptionError : public InternalError {
 public:
  explicit StoreCorruptionError(const std::string& what) : InternalError(what) {}
};

// Frames of a chunk of numel values, and the size of its header.
uint64_t chunk_frame_count(uint64_t numel, uint32_t frame_elems);
uint32_t chunk_header_bytes(uint64_t nframes);
// Writes the header (chunk_header_bytes(h.frames.size()) bytes); fills in
// h.xxh64_raw from the frames.
void encode_chunk_header(ChunkHeader& h, char* out);
// From the first 4096 bytes of a file: the whole header's size, or an error.
std::string peek_chunk_header_bytes(const char* in, uint32_t* header_bytes);
// Parses and checks a whole header (magic, version, checksum, sizes
// consistent with dtype, numel and frames). Returns an empty string when
// sound, else what is wrong.
std::string decode_chunk_header(const char* in, uint32_t header_bytes, ChunkHeader* h);
// Bytes of the whole file: header plus payload padded to 4096.
uint64_t chunk_file_bytes(const ChunkHeader& h);

// Reads n bytes of a chunk file at offset into dst, or throws. Calls come in
// file order from offset 0, so a streaming reader can serve them.
using ChunkFileRead = std::function<void(uint64_t offset, char* dst, size_t n)>;
// Reads the header of the chunk file `path` (file_bytes long) through `read`
// and checks it: sound (decode_chunk_header), expect's block, flow and chunk,
// and a file long enough for the payload it describes. Sizes are checked
// before each read, so `read` is never asked to go past the end (which would
// be an I/O error, not the corruption it is). Throws StoreCorruptionError
// "<where>: corrupt chunk file <path>: <what is wrong>".
ChunkHeader read_chunk_header(const ChunkFileRead& read, const std::string& path, uint64_t file_bytes,
                              const ChunkHeader& expect, const std::string& where);

}  // namespace streamq
