// The chunk header's size checks, before any allocation: a header must not
// make the reader allocate more than its frames can hold. A zstd frame
// expands a byte at most 32768 times (3-byte block header + 1 RLE byte per
// 128 KiB block), so numel values in frames of C compressed bytes are
// possible only when numel * dtype size <= 32768 * C.
#include <gtest/gtest.h>

#include <vector>

#include "io/store/chunk_header.h"

namespace streamq {
namespace {

ChunkHeader one_frame(uint64_t numel, uint32_t compressed_bytes) {
  ChunkHeader h;
  h.block = 1;
  h.numel = numel;
  h.storage = DType::F32;
  h.frame_elems = static_cast<uint32_t>(numel);
  h.raw_bytes = numel * 4;
  h.compressed_bytes = compressed_bytes;
  h.frames = {ChunkFrame{compressed_bytes, 7}};
  return h;
}

std::string decode(ChunkHeader h) {
  std::vector<char> bytes(chunk_header_bytes(h.frames.size()));
  encode_chunk_header(h, bytes.data());
  ChunkHeader back;
  return decode_chunk_header(bytes.data(), static_cast<uint32_t>(bytes.size()), &back);
}

TEST(ChunkHeader, AFrameCannotClaimMoreValuesThanZstdCanExpandTo) {
  // The fuzz finding (tests/fuzz/corpus/fuzz_chunk/crash-numel-2p30-*):
  // 2^30 float32 values (4 GiB) in a 1,932-byte frame.
  const std::string bad = decode(one_frame(uint64_t{1} << 30, 1932));
  EXPECT_NE(bad.find("frame 0: compressed size 1932 impossible for 1073741824 values"), std::string::npos) << bad;
  // At the bound: 32768 bytes per compressed byte is possible, one value more is not.
  EXPECT_EQ(decode(one_frame(1932 * 32768 / 4, 1932)), "");
  EXPECT_NE(decode(one_frame(1932 * 32768 / 4 + 1, 1932)), "");
}

}  // namespace
}  // namespace streamq
