// Fuzz target: a compressed activation chunk file (io/store/chunk_header.h)
// through ChunkCodec::read: header, frame table, zstd frames, byte shuffle,
// dtype conversion. Every field is covered by an xxh64, so mutated bytes would
// rarely get past the header check; unless the flags byte (offset 127, in the
// header's zero padding) says otherwise, the target first recomputes the
// compressed-bytes, raw and header checksums of the mutated file, so the
// search reaches the frame decoding behind them. Damage is reported as
// StoreCorruptionError, the expected failure here.
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>

#include "io/file/io_backend.h"
#include "io/file/io_engine.h"
#include "io/store/chunk_codec.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

namespace {

// Offsets of the fixed fields the fix-up needs, as chunk_header.cpp writes
// them in format version 1 (a new version needs them updated, or the search
// stops at the header checksum again).
constexpr size_t kOffHeaderBytes = 12, kOffBlock = 16, kOffChunk = 24, kOffFlow = 32, kOffFrames = 52,
                 kOffCompressed = 72, kOffXxhCompressed = 80, kOffXxhRaw = 88, kOffXxhHeader = 96,
                 kOffFuzzFlags = 127, kFixedBytes = 128, kFrameEntryBytes = 12;
enum : uint8_t { kKeepHeaderHash = 1, kKeepRawHash = 2, kKeepCompressedHash = 4 };

uint64_t get_u64(const std::string& s, size_t off) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[off + i])) << (8 * i);
  return v;
}
uint32_t get_u32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(s[off + i])) << (8 * i);
  return v;
}
void put_u64(std::string& s, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) s[off + i] = static_cast<char>(v >> (8 * i));
}

// Recomputes the checksums the flags byte does not ask to keep, where the
// sizes the file states allow it.
void fix_checksums(std::string& f) {
  if (f.size() < kChunkAlign) return;
  const uint8_t flags = static_cast<uint8_t>(f[kOffFuzzFlags]);
  const uint64_t header_bytes = get_u32(f, kOffHeaderBytes);
  if (header_bytes < kFixedBytes || header_bytes > f.size()) return;
  const uint64_t compressed = get_u64(f, kOffCompressed);
  if (!(flags & kKeepCompressedHash) && compressed <= f.size() - header_bytes)
    put_u64(f, kOffXxhCompressed, XXH64(f.data() + header_bytes, compressed, 0));
  const uint64_t nframes = get_u32(f, kOffFrames);
  if (!(flags & kKeepRawHash) && nframes <= (header_bytes - kFixedBytes) / kFrameEntryBytes) {
    std::string raw(nframes * 8, '\0');
    for (uint64_t i = 0; i < nframes; ++i)
      put_u64(raw, 8 * i, get_u64(f, kFixedBytes + kFrameEntryBytes * i + 4));
    put_u64(f, kOffXxhRaw, XXH64(raw.data(), raw.size(), 0));
  }
  if (!(flags & kKeepHeaderHash)) {
    put_u64(f, kOffXxhHeader, 0);
    put_u64(f, kOffXxhHeader, XXH64(f.data(), header_bytes, 0));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static IoEngine io(make_posix_backend(), 64 << 10, 4);
  static ChunkCodec codec;
  std::string file(reinterpret_cast<const char*>(data), size);
  fix_checksums(file);
  const std::string path = fuzz::write_scratch("chunk.sqz", file);
  // What the store expects: the file's own block, flow and chunk, so that
  // the search is not stopped by a mismatch (one input in 2^64 would pass).
  ChunkHeader expect;
  if (file.size() >= kFixedBytes) {
    expect.block = static_cast<int64_t>(get_u64(file, kOffBlock));
    expect.chunk = static_cast<int64_t>(get_u64(file, kOffChunk));
    expect.flow = get_u32(file, kOffFlow);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  fuzz::expect_input_errors<StoreCorruptionError>([&] {
    std::vector<float> out;
    const ChunkHeader h = codec.read(io, fd, path, file.size(), expect, "fuzz", 2, &out);
    if (out.size() != h.numel) std::abort();
  });
  ::close(fd);
  return 0;
}
