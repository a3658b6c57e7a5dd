// Encoding and validation of chunk file headers. Fields are written byte by
// byte at fixed offsets, so the format does not depend on struct layout.
#include "io/chunk_header.h"

#include <xxhash.h>

#include <cstring>
#include <zstd.h>

namespace streamq {

namespace {

constexpr char kMagic[8] = {'S', 'Q', 'A', 'C', 'T', 'Z', 'S', 'T'};
// Offsets of the fields in the header block.
enum : size_t {
  kOffMagic = 0, kOffVersion = 8, kOffHeaderBytes = 12, kOffBlock = 16, kOffChunk = 24, kOffFlow = 32,
  kOffStorage = 36, kOffShuffled = 40, kOffSegment = 44, kOffLevel = 48, kOffNumel = 56, kOffRaw = 64,
  kOffCompressed = 72, kOffXxhCompressed = 80, kOffXxhRaw = 88, kOffXxhHeader = 96
};
// Storage dtype codes in the file (stable, unlike the DType enum's order).
constexpr uint32_t kCodeF32 = 1, kCodeBF16 = 2;

void put_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void put_u64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// The header's checksum: all 4096 bytes with the checksum field read as zero.
uint64_t header_hash(const char* in) {
  char copy[kChunkHeaderBytes];
  std::memcpy(copy, in, kChunkHeaderBytes);
  put_u64(copy + kOffXxhHeader, 0);
  return XXH64(copy, kChunkHeaderBytes, 0);
}

}  // namespace

void encode_chunk_header(const ChunkHeader& h, char* out) {
  std::memset(out, 0, kChunkHeaderBytes);
  std::memcpy(out + kOffMagic, kMagic, sizeof kMagic);
  put_u32(out + kOffVersion, kChunkFormatVersion);
  put_u32(out + kOffHeaderBytes, kChunkHeaderBytes);
  put_u64(out + kOffBlock, static_cast<uint64_t>(h.block));
  put_u64(out + kOffChunk, static_cast<uint64_t>(h.chunk));
  put_u32(out + kOffFlow, h.flow);
  put_u32(out + kOffStorage, h.storage == DType::F32 ? kCodeF32 : kCodeBF16);
  put_u32(out + kOffShuffled, h.shuffled ? 1 : 0);
  put_u32(out + kOffSegment, h.segment_elems);
  put_u32(out + kOffLevel, static_cast<uint32_t>(h.zstd_level));
  put_u64(out + kOffNumel, h.numel);
  put_u64(out + kOffRaw, h.raw_bytes);
  put_u64(out + kOffCompressed, h.compressed_bytes);
  put_u64(out + kOffXxhCompressed, h.xxh64_compressed);
  put_u64(out + kOffXxhRaw, h.xxh64_raw);
  put_u64(out + kOffXxhHeader, header_hash(out));
}

std::string decode_chunk_header(const char* in, ChunkHeader* h) {
  if (std::memcmp(in + kOffMagic, kMagic, sizeof kMagic) != 0) return "bad magic (not a streamq chunk file)";
  if (get_u64(in + kOffXxhHeader) != header_hash(in)) return "header checksum mismatch";
  const uint32_t version = get_u32(in + kOffVersion);
  if (version != kChunkFormatVersion)
    return "format version " + std::to_string(version) + ", expected " + std::to_string(kChunkFormatVersion);
  if (get_u32(in + kOffHeaderBytes) != kChunkHeaderBytes) return "unexpected header size";
  h->block = static_cast<int64_t>(get_u64(in + kOffBlock));
  h->chunk = static_cast<int64_t>(get_u64(in + kOffChunk));
  h->flow = get_u32(in + kOffFlow);
  const uint32_t storage = get_u32(in + kOffStorage);
  if (storage != kCodeF32 && storage != kCodeBF16) return "unknown storage dtype code " + std::to_string(storage);
  h->storage = storage == kCodeF32 ? DType::F32 : DType::BF16;
  const uint32_t shuffled = get_u32(in + kOffShuffled);
  if (shuffled > 1) return "bad shuffle flag";
  h->shuffled = shuffled == 1;
  h->segment_elems = get_u32(in + kOffSegment);
  if (h->segment_elems == 0) return "zero segment size";
  h->zstd_level = static_cast<int32_t>(get_u32(in + kOffLevel));
  h->numel = get_u64(in + kOffNumel);
  h->raw_bytes = get_u64(in + kOffRaw);
  h->compressed_bytes = get_u64(in + kOffCompressed);
  h->xxh64_compressed = get_u64(in + kOffXxhCompressed);
  h->xxh64_raw = get_u64(in + kOffXxhRaw);
  if (h->numel > (uint64_t{1} << 48) || h->raw_bytes != h->numel * dtype_size(h->storage))
    return "raw size " + std::to_string(h->raw_bytes) + " does not match " + std::to_string(h->numel) + " values";
  if (h->compressed_bytes == 0 || h->compressed_bytes > ZSTD_compressBound(h->raw_bytes))
    return "compressed size " + std::to_string(h->compressed_bytes) + " impossible for " +
           std::to_string(h->raw_bytes) + " raw bytes";
  return {};
}

uint64_t chunk_file_bytes(const ChunkHeader& h) {
  return kChunkHeaderBytes + (h.compressed_bytes + kChunkHeaderBytes - 1) / kChunkHeaderBytes * kChunkHeaderBytes;
}

}  // namespace streamq
