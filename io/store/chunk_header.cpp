// Encoding and validation of chunk file headers. Fields are written byte by
// byte at fixed offsets, so the format does not depend on struct layout.
#include "io/store/chunk_header.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <vector>

#include "io/store/activation_store.h"  // to_string(Flow)

namespace streamq {

namespace {

constexpr char kMagic[8] = {'S', 'Q', 'A', 'C', 'T', 'Z', 'S', 'T'};
// Offsets of the fixed fields; the frame table follows at kFixedBytes.
enum : size_t {
  kOffMagic = 0, kOffVersion = 8, kOffHeaderBytes = 12, kOffBlock = 16, kOffChunk = 24, kOffFlow = 32,
  kOffStorage = 36, kOffShuffled = 40, kOffFrameElems = 44, kOffLevel = 48, kOffFrames = 52, kOffNumel = 56,
  kOffRaw = 64, kOffCompressed = 72, kOffXxhCompressed = 80, kOffXxhRaw = 88, kOffXxhHeader = 96,
  kFixedBytes = 128, kFrameEntryBytes = 12
};
// Storage dtype codes in the file (stable, unlike the DType enum's order).
constexpr uint32_t kCodeF32 = 1, kCodeBF16 = 2;
// A header bigger than this is damage, not a chunk (it would describe ~1.4
// billion frames).
constexpr uint32_t kMaxHeaderBytes = 1u << 24;

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

// The header's checksum: all its bytes with the checksum field read as zero.
uint64_t header_hash(const char* in, uint32_t header_bytes) {
  XXH64_state_t* s = XXH64_createState();
  if (!s) throw InternalError("xxhash: cannot allocate a hash state");
  char zero[8] = {};
  XXH64_reset(s, 0);
  XXH64_update(s, in, kOffXxhHeader);
  XXH64_update(s, zero, sizeof zero);
  XXH64_update(s, in + kOffXxhHeader + 8, header_bytes - kOffXxhHeader - 8);
  const uint64_t h = XXH64_digest(s);
  XXH64_freeState(s);
  return h;
}

uint64_t frames_hash(const std::vector<ChunkFrame>& frames) {
  std::vector<char> bytes(frames.size() * 8);
  for (size_t i = 0; i < frames.size(); ++i) put_u64(bytes.data() + 8 * i, frames[i].xxh64_raw);
  return XXH64(bytes.data(), bytes.size(), 0);
}

}  // namespace

uint64_t chunk_frame_count(uint64_t numel, uint32_t frame_elems) { return (numel + frame_elems - 1) / frame_elems; }

uint32_t chunk_header_bytes(uint64_t nframes) {
  const uint64_t b = (kFixedBytes + kFrameEntryBytes * nframes + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
  return b > kMaxHeaderBytes ? 0 : static_cast<uint32_t>(b);
}

void encode_chunk_header(ChunkHeader& h, char* out) {
  const uint32_t header_bytes = chunk_header_bytes(h.frames.size());
  h.xxh64_raw = frames_hash(h.frames);
  std::memset(out, 0, header_bytes);
  std::memcpy(out + kOffMagic, kMagic, sizeof kMagic);
  put_u32(out + kOffVersion, kChunkFormatVersion);
  put_u32(out + kOffHeaderBytes, header_bytes);
  put_u64(out + kOffBlock, static_cast<uint64_t>(h.block));
  put_u64(out + kOffChunk, static_cast<uint64_t>(h.chunk));
  put_u32(out + kOffFlow, h.flow);
  put_u32(out + kOffStorage, h.storage == DType::F32 ? kCodeF32 : kCodeBF16);
  put_u32(out + kOffShuffled, h.shuffled ? 1 : 0);
  put_u32(out + kOffFrameElems, h.frame_elems);
  put_u32(out + kOffLevel, static_cast<uint32_t>(h.zstd_level));
  put_u32(out + kOffFrames, static_cast<uint32_t>(h.frames.size()));
  put_u64(out + kOffNumel, h.numel);
  put_u64(out + kOffRaw, h.raw_bytes);
  put_u64(out + kOffCompressed, h.compressed_bytes);
  put_u64(out + kOffXxhCompressed, h.xxh64_compressed);
  put_u64(out + kOffXxhRaw, h.xxh64_raw);
  for (size_t i = 0; i < h.frames.size(); ++i) {
    char* e = out + kFixedBytes + kFrameEntryBytes * i;
    put_u32(e, h.frames[i].compressed_bytes);
    put_u64(e + 4, h.frames[i].xxh64_raw);
  }
  put_u64(out + kOffXxhHeader, header_hash(out, header_bytes));
}

std::string peek_chunk_header_bytes(const char* in, uint32_t* header_bytes) {
  if (std::memcmp(in + kOffMagic, kMagic, sizeof kMagic) != 0) return "bad magic (not a streamq chunk file)";
  const uint32_t version = get_u32(in + kOffVersion);
  if (version != kChunkFormatVersion)
    return "format version " + std::to_string(version) + ", expected " + std::to_string(kChunkFormatVersion);
  *header_bytes = get_u32(in + kOffHeaderBytes);
  if (*header_bytes < kChunkAlign || *header_bytes % kChunkAlign || *header_bytes > kMaxHeaderBytes)
    return "header size " + std::to_string(*header_bytes) + " impossible";
  return {};
}

std::string decode_chunk_header(const char* in, uint32_t header_bytes, ChunkHeader* h) {
  if (get_u64(in + kOffXxhHeader) != header_hash(in, header_bytes)) return "header checksum mismatch";
  h->block = static_cast<int64_t>(get_u64(in + kOffBlock));
  h->chunk = static_cast<int64_t>(get_u64(in + kOffChunk));
  h->flow = get_u32(in + kOffFlow);
  const uint32_t storage = get_u32(in + kOffStorage);
  if (storage != kCodeF32 && storage != kCodeBF16) return "unknown storage dtype code " + std::to_string(storage);
  h->storage = storage == kCodeF32 ? DType::F32 : DType::BF16;
  const uint32_t shuffled = get_u32(in + kOffShuffled);
  if (shuffled > 1) return "bad shuffle flag";
  h->shuffled = shuffled == 1;
  h->frame_elems = get_u32(in + kOffFrameElems);
  h->zstd_level = static_cast<int32_t>(get_u32(in + kOffLevel));
  h->numel = get_u64(in + kOffNumel);
  h->raw_bytes = get_u64(in + kOffRaw);
  h->compressed_bytes = get_u64(in + kOffCompressed);
  h->xxh64_compressed = get_u64(in + kOffXxhCompressed);
  h->xxh64_raw = get_u64(in + kOffXxhRaw);
  const size_t esz = dtype_size(h->storage);
  if (h->frame_elems == 0) return "zero frame size";
  if (h->numel > (uint64_t{1} << 48) || h->raw_bytes != h->numel * esz)
    return "raw size " + std::to_string(h->raw_bytes) + " does not match " + std::to_string(h->numel) + " values";
  const uint64_t nframes = get_u32(in + kOffFrames);
  if (nframes != chunk_frame_count(h->numel, h->frame_elems) || chunk_header_bytes(nframes) != header_bytes)
    return std::to_string(nframes) + " frames do not match " + std::to_string(h->numel) + " values in a " +
           std::to_string(header_bytes) + "-byte header";
  h->frames.resize(nframes);
  uint64_t total = 0;
  for (uint64_t i = 0; i < nframes; ++i) {
    const char* e = in + kFixedBytes + kFrameEntryBytes * i;
    ChunkFrame& f = h->frames[i];
    f.compressed_bytes = get_u32(e);
    f.xxh64_raw = get_u64(e + 4);
    const uint64_t values = std::min<uint64_t>(h->frame_elems, h->numel - i * h->frame_elems);
    // The least a zstd frame can take: every block of up to 128 KiB has a
    // 3-byte header and at least 1 byte of content (an RLE block), so no
    // frame expands a byte more than 32768 times. Checked here, before the
    // reader allocates numel values for what a crafted header claims.
    constexpr uint64_t kZstdMaxExpansion = (128 << 10) / 4;
    if (f.compressed_bytes == 0 || f.compressed_bytes > ZSTD_compressBound(values * esz) ||
        values * esz > uint64_t{f.compressed_bytes} * kZstdMaxExpansion)
      return "frame " + std::to_string(i) + ": compressed size " + std::to_string(f.compressed_bytes) +
             " impossible for " + std::to_string(values) + " values";
    total += f.compressed_bytes;
  }
  if (total != h->compressed_bytes)
    return "frames add up to " + std::to_string(total) + " bytes, header says " + std::to_string(h->compressed_bytes);
  if (frames_hash(h->frames) != h->xxh64_raw) return "frame checksums do not match the raw checksum";
  return {};
}

uint64_t chunk_file_bytes(const ChunkHeader& h) {
  return chunk_header_bytes(h.frames.size()) + (h.compressed_bytes + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
}

ChunkHeader read_chunk_header(const ChunkFileRead& read, const std::string& path, uint64_t file_bytes,
                              const ChunkHeader& expect, const std::string& where) {
  auto corrupt = [&](const std::string& why) {
    return StoreCorruptionError(where + ": corrupt chunk file " + path + ": " + why);
  };
  auto truncated = [&](uint64_t need) {
    return corrupt("truncated: " + std::to_string(file_bytes) + " bytes, needs " + std::to_string(need));
  };
  if (file_bytes < kChunkAlign) throw truncated(kChunkAlign);
  std::vector<char> head(kChunkAlign);
  read(0, head.data(), kChunkAlign);
  uint32_t header_bytes = 0;
  std::string bad = peek_chunk_header_bytes(head.data(), &header_bytes);
  if (!bad.empty()) throw corrupt(bad);
  if (file_bytes < header_bytes) throw truncated(header_bytes);
  head.resize(header_bytes);
  if (header_bytes > kChunkAlign) read(kChunkAlign, head.data() + kChunkAlign, header_bytes - kChunkAlign);
  ChunkHeader h;
  bad = decode_chunk_header(head.data(), header_bytes, &h);
  if (!bad.empty()) throw corrupt(bad);
  if (h.block != expect.block || h.flow != expect.flow || h.chunk != expect.chunk)
    throw corrupt("holds block " + std::to_string(h.block) + ", flow " +
                  (h.flow <= 1 ? to_string(static_cast<Flow>(h.flow)) : std::to_string(h.flow)) + ", chunk " +
                  std::to_string(h.chunk));
  if (file_bytes < chunk_file_bytes(h)) throw truncated(chunk_file_bytes(h));
  return h;
}

}  // namespace streamq
