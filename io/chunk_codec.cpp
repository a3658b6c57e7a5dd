// ChunkCodec: the encode and decode loops of a chunk file. Compression writes
// into the current slab and ships it the moment it is full, so the disk works
// while zstd goes on; decoding keeps several slab reads in flight ahead of
// the decompressor.
#include "io/chunk_codec.h"

#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>

#include "io/activation_store.h"
#include "io/byte_shuffle.h"

namespace streamq {

namespace {

constexpr uint64_t kAlign = kChunkHeaderBytes;
// Bound on a header's segment size before allocating for it (64 Mi elements).
constexpr uint32_t kMaxSegmentElems = 1u << 26;

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

size_t zstd_check(size_t r, const char* what) {
  if (ZSTD_isError(r)) throw InternalError(std::string("zstd ") + what + ": " + ZSTD_getErrorName(r));
  return r;
}

// xxh64 over a stream of pieces.
class Xxh64 {
 public:
  Xxh64() : s_(XXH64_createState(), XXH64_freeState) {
    if (!s_) throw InternalError("xxhash: cannot allocate a hash state");
    XXH64_reset(s_.get(), 0);
  }
  void update(const void* p, size_t n) { XXH64_update(s_.get(), p, n); }
  uint64_t digest() const { return XXH64_digest(s_.get()); }

 private:
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> s_;
};

// Reads in flight, oldest first. Whatever way a decode ends, the kernel must
// be done writing into a slab before it goes back to the pool.
class ReadWindow {
 public:
  struct Read {
    IoEngine::Slab slab;
    IoEngine::Group group;
    uint32_t len = 0;
  };
  explicit ReadWindow(IoEngine& io) : io_(io) {}
  ~ReadWindow() {
    while (!reads_.empty()) pop();
  }
  std::deque<Read>& reads() { return reads_; }
  void pop() {
    Read& r = reads_.front();
    try {
      io_.wait(&r.group);
    } catch (...) {
      // The engine failed as a whole; the slab must not be reused while the
      // kernel may still own it, so it is left out of the pool.
      reads_.pop_front();
      return;
    }
    io_.release(r.slab);
    reads_.pop_front();
  }

 private:
  IoEngine& io_;
  std::deque<Read> reads_;  // a deque: pushing and popping keeps the others' addresses
};

}  // namespace

ChunkCodec::ChunkCodec() : cctx_(ZSTD_createCCtx(), ZSTD_freeCCtx), dctx_(ZSTD_createDCtx(), ZSTD_freeDCtx) {
  if (!cctx_ || !dctx_) throw InternalError("zstd: cannot allocate a context");
}

ChunkCodec::~ChunkCodec() = default;

void ChunkCodec::ensure_segment(size_t bytes) {
  if (seg_.size() < bytes) {
    seg_.resize(bytes);
    shuf_.resize(bytes);
  }
}

ChunkHeader ChunkCodec::write(IoEngine& io, int fd, IoEngine::Group* g, ChunkHeader h, const float* data) {
  const size_t esz = dtype_size(h.storage);
  h.raw_bytes = h.numel * esz;
  ensure_segment(size_t{h.segment_elems} * esz);
  ZSTD_CCtx* c = cctx_.get();
  zstd_check(ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters), "reset");
  zstd_check(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, h.zstd_level), "level");
  zstd_check(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0), "checksum flag");  // xxh64 covers it
  zstd_check(ZSTD_CCtx_setPledgedSrcSize(c, h.raw_bytes), "pledged size");

  Xxh64 raw_hash, comp_hash;
  const size_t slab_bytes = io.slab_bytes();
  std::optional<SlabLease> cur;  // the slab being filled; never held while blocking for another
  size_t fill = 0;
  uint64_t file_off = kChunkHeaderBytes, csize = 0;
  auto ship = [&](bool last) {
    comp_hash.update(cur->data(), fill);
    csize += fill;
    const size_t len = last ? round_up(fill) : fill;
    std::memset(cur->data() + fill, 0, len - fill);  // deterministic padding
    io.queue(IoKind::Write, fd, cur->take(), static_cast<uint32_t>(len), file_off, g);
    io.submit();
    cur.reset();
    file_off += len;
    fill = 0;
  };
  auto compress = [&](ZSTD_inBuffer* in, ZSTD_EndDirective mode) {
    for (;;) {
      if (!cur) cur.emplace(io, io.acquire());
      ZSTD_outBuffer out{cur->data(), slab_bytes, fill};
      const size_t left = zstd_check(ZSTD_compressStream2(c, &out, in, mode), "compress");
      fill = out.pos;
      const bool done = mode == ZSTD_e_end ? left == 0 : in->pos == in->size;
      if (done) return;
      if (fill == slab_bytes) ship(false);
    }
  };

  for (uint64_t s = 0; s < h.numel; s += h.segment_elems) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(h.segment_elems, h.numel - s));
    const void* raw = data + s;
    if (h.storage != DType::F32) {
      convert_from_f32(h.storage, data + s, seg_.data(), n);
      raw = seg_.data();
    }
    raw_hash.update(raw, n * esz);
    const void* in = raw;
    if (h.shuffled) {
      byte_shuffle(raw, shuf_.data(), n, esz);
      in = shuf_.data();
    }
    ZSTD_inBuffer zin{in, n * esz, 0};
    compress(&zin, ZSTD_e_continue);
    if (fill == slab_bytes) ship(false);
  }
  ZSTD_inBuffer none{nullptr, 0, 0};
  compress(&none, ZSTD_e_end);
  if (fill > 0) ship(true);
  cur.reset();

  h.compressed_bytes = csize;
  h.xxh64_compressed = comp_hash.digest();
  h.xxh64_raw = raw_hash.digest();
  // The header goes last: it is the only part that says the payload is complete.
  SlabLease head(io, io.acquire());
  encode_chunk_header(h, head.data());
  io.queue(IoKind::Write, fd, head.take(), kChunkHeaderBytes, 0, g);
  io.submit();
  return h;
}

ChunkHeader ChunkCodec::read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes,
                             const ChunkHeader& expect, const std::string& where, uint32_t read_ahead,
                             std::vector<float>* out) {
  auto corrupt = [&](const std::string& why) {
    return StoreCorruptionError(where + ": corrupt chunk file " + path + ": " + why);
  };
  if (file_bytes < kChunkHeaderBytes)
    throw corrupt("truncated: " + std::to_string(file_bytes) + " bytes, shorter than its header");
  ChunkHeader h;
  {
    SlabLease s(io, io.acquire());
    IoEngine::Group g;
    g.path = path;
    io.queue(IoKind::Read, fd, s.slab(), kChunkHeaderBytes, 0, &g);
    io.submit();
    io.wait(&g);
    if (!g.error.empty()) throw InternalError(where + ": " + g.error);
    const std::string bad = decode_chunk_header(s.data(), &h);
    if (!bad.empty()) throw corrupt(bad);
  }
  if (h.block != expect.block || h.flow != expect.flow || h.chunk != expect.chunk)
    throw corrupt("holds block " + std::to_string(h.block) + ", flow " +
                  (h.flow <= 1 ? to_string(static_cast<Flow>(h.flow)) : std::to_string(h.flow)) + ", chunk " +
                  std::to_string(h.chunk));
  if (file_bytes < chunk_file_bytes(h))
    throw corrupt("truncated: " + std::to_string(file_bytes) + " bytes, its header needs " +
                  std::to_string(chunk_file_bytes(h)));
  if (h.segment_elems > kMaxSegmentElems) throw corrupt("segment size " + std::to_string(h.segment_elems));

  const size_t esz = dtype_size(h.storage);
  ensure_segment(size_t{h.segment_elems} * esz);
  out->resize(h.numel);
  Xxh64 raw_hash, comp_hash;
  uint64_t elems = 0;     // values decoded into out
  size_t seg_fill = 0;    // bytes of the current segment decompressed
  auto seg_len = [&] { return static_cast<size_t>(std::min<uint64_t>(h.segment_elems, h.numel - elems)); };
  auto finish_segment = [&] {
    const size_t n = seg_len();
    const char* raw = seg_.data();
    if (h.shuffled) {
      byte_unshuffle(seg_.data(), shuf_.data(), n, esz);
      raw = shuf_.data();
    }
    raw_hash.update(raw, n * esz);
    convert_to_f32(h.storage, raw, out->data() + elems, n);
    elems += n;
    seg_fill = 0;
  };

  ZSTD_DCtx* d = dctx_.get();
  zstd_check(ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters), "reset");
  const uint64_t payload = chunk_file_bytes(h) - kChunkHeaderBytes;
  uint64_t next = 0, fed = 0;
  size_t frame_left = 1;  // zstd's hint: 0 once the frame is complete and flushed
  ReadWindow window(io);
  auto top_up = [&] {
    while (next < payload && window.reads().size() < std::max<uint32_t>(read_ahead, 1)) {
      IoEngine::Slab s;
      if (window.reads().empty()) s = io.acquire();
      else if (!io.try_acquire(&s)) break;  // holding slabs: never block for more
      auto& r = window.reads().emplace_back();
      r.slab = s;
      r.group.path = path;
      r.len = static_cast<uint32_t>(std::min<uint64_t>(io.slab_bytes(), payload - next));
      io.queue(IoKind::Read, fd, s, r.len, kChunkHeaderBytes + next, &r.group);
      next += r.len;
    }
    io.submit();
  };

  top_up();
  while (!window.reads().empty()) {
    auto& r = window.reads().front();
    io.wait(&r.group);
    if (!r.group.error.empty()) throw InternalError(where + ": " + r.group.error);
    const size_t take = static_cast<size_t>(std::min<uint64_t>(r.len, h.compressed_bytes - fed));
    comp_hash.update(r.slab.data, take);
    ZSTD_inBuffer zin{r.slab.data, take, 0};
    // Until the input is used up and zstd has nothing buffered: a full output
    // buffer may mean more output is waiting.
    for (bool full = true; zin.pos < zin.size || (full && frame_left != 0);) {
      if (frame_left == 0) throw corrupt("data after the end of the zstd frame");
      char extra;
      const bool at_end = elems == h.numel;
      ZSTD_outBuffer zout = at_end ? ZSTD_outBuffer{&extra, 1, 0}
                                   : ZSTD_outBuffer{seg_.data(), seg_len() * esz, seg_fill};
      const size_t rc = ZSTD_decompressStream(d, &zout, &zin);
      if (ZSTD_isError(rc)) throw corrupt(std::string("zstd: ") + ZSTD_getErrorName(rc));
      frame_left = rc;
      if (at_end && zout.pos > 0) throw corrupt("decodes to more than " + std::to_string(h.raw_bytes) + " bytes");
      full = !at_end && zout.pos == zout.size;
      if (!at_end) seg_fill = zout.pos;
      if (full) finish_segment();
    }
    fed += take;
    window.pop();
    top_up();
  }
  if (frame_left != 0) throw corrupt("the zstd frame ends early");
  if (elems != h.numel)
    throw corrupt("decodes to " + std::to_string(elems) + " of " + std::to_string(h.numel) + " values");
  if (comp_hash.digest() != h.xxh64_compressed) throw corrupt("payload checksum mismatch");
  if (raw_hash.digest() != h.xxh64_raw) throw corrupt("raw data checksum mismatch");
  return h;
}

}  // namespace streamq
