// ChunkCodec: a chunk goes through a oneTBB pipeline of frames. Writing: cut
// into frames in order, frames converted, shuffled, hashed and compressed in
// parallel, then appended in order to slabs that ship the moment they fill.
// Reading: frames' compressed bytes pulled in order from slab reads running
// ahead, then decompressed, checked and converted in parallel straight into
// the output.
#include "io/store/chunk_codec.h"

#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>

#include "io/store/byte_shuffle.h"

namespace streamq {

struct ChunkCodec::Frame {
  uint64_t index = 0;
  size_t n = 0;  // values
  std::vector<char> conv, shuf, comp;
  size_t csize = 0;
  uint64_t raw_hash = 0;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{nullptr, ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{nullptr, ZSTD_freeDCtx};
};

namespace {

char* sized(std::vector<char>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Frames alive at once: enough to keep every core busy while the serial
// stages wait for the disk, few enough to bound the buffers (about 3 frames'
// bytes each).
size_t pipeline_frames() { return static_cast<size_t>(std::clamp(2 * tbb::this_task_arena::max_concurrency(), 2, 16)); }

// Appends bytes to a file through slabs, each queued as soon as it is full.
class SlabWriter {
 public:
  SlabWriter(IoEngine& io, int fd, IoEngine::Group* g, uint64_t offset) : io_(io), fd_(fd), g_(g), off_(offset) {}
  void append(const char* p, size_t n) {
    while (n > 0) {
      if (!cur_) cur_.emplace(io_, io_.acquire());  // holds no slab while it blocks
      const size_t k = std::min(n, io_.slab_bytes() - fill_);
      std::memcpy(cur_->data() + fill_, p, k);
      fill_ += k;
      p += k;
      n -= k;
      if (fill_ == io_.slab_bytes()) ship();
    }
  }
  // Zero-pads the last slab to a whole block (deterministic bytes) and queues it.
  void finish() {
    if (!cur_) return;
    const size_t len = (fill_ + kChunkAlign - 1) / kChunkAlign * kChunkAlign;
    std::memset(cur_->data() + fill_, 0, len - fill_);
    fill_ = len;
    ship();
  }

 private:
  void ship() {
    io_.queue(IoKind::Write, fd_, cur_->take(), static_cast<uint32_t>(fill_), off_, g_);
    io_.submit();
    cur_.reset();
    off_ += fill_;
    fill_ = 0;
  }
  IoEngine& io_;
  int fd_;
  IoEngine::Group* g_;
  uint64_t off_;
  std::optional<SlabLease> cur_;
  size_t fill_ = 0;
};

// A file's bytes in order, with up to `ahead` slab reads in flight but never
// past end(), which the caller raises as it learns the file is long enough.
// However reading ends, the kernel is done with a slab before it goes back.
class SlabReader {
 public:
  SlabReader(IoEngine& io, int fd, const std::string& path, const std::string& where, uint32_t ahead)
      : io_(io), fd_(fd), path_(path), where_(where), ahead_(std::max<uint32_t>(ahead, 1)) {}
  ~SlabReader() {
    while (!reads_.empty()) pop();
  }
  void set_end(uint64_t end) { end_ = end; }
  void read(char* dst, size_t n) {
    while (n > 0) {
      top_up();
      if (reads_.empty()) throw InternalError(where_ + ": read past the checked end of " + path_);
      Read& r = reads_.front();
      io_.wait(&r.group);
      if (!r.group.error.empty()) throw InternalError(where_ + ": " + r.group.error);
      const size_t k = std::min<size_t>(n, r.len - pos_);
      std::memcpy(dst, r.slab.data + pos_, k);
      dst += k;
      n -= k;
      pos_ += k;
      if (pos_ == r.len) {
        pop();
        pos_ = 0;
      }
    }
  }

 private:
  struct Read {
    IoEngine::Slab slab;
    IoEngine::Group group;
    uint32_t len = 0;
  };
  void top_up() {
    while (next_ < end_ && reads_.size() < ahead_) {
      IoEngine::Slab s;
      if (reads_.empty()) s = io_.acquire();
      else if (!io_.try_acquire(&s)) break;  // holding slabs: never block for more
      Read& r = reads_.emplace_back();
      r.slab = s;
      r.group.path = path_;
      r.len = static_cast<uint32_t>(std::min<uint64_t>(io_.slab_bytes(), end_ - next_));
      io_.queue(IoKind::Read, fd_, s, r.len, next_, &r.group);
      next_ += r.len;
    }
    io_.submit();
  }
  void pop() {
    Read& r = reads_.front();
    try {
      io_.wait(&r.group);
      io_.release(r.slab);
    } catch (...) {
      // The engine failed as a whole: the kernel may still own the slab, so it
      // stays out of the pool.
    }
    reads_.pop_front();
  }
  IoEngine& io_;
  int fd_;
  const std::string& path_;
  const std::string& where_;
  uint32_t ahead_;
  uint64_t next_ = 0, end_ = 0;
  size_t pos_ = 0;             // consumed bytes of the front read
  std::deque<Read> reads_;     // a deque keeps the others' addresses as it grows and shrinks
};

size_t zstd_check(size_t r, const char* what) {
  if (ZSTD_isError(r)) throw InternalError(std::string("zstd ") + what + ": " + ZSTD_getErrorName(r));
  return r;
}

void encode_frame(ChunkCodec::Frame& f, const ChunkHeader& h, const float* data) {
  const size_t esz = dtype_size(h.storage), bytes = f.n * esz;
  const float* src = data + f.index * h.frame_elems;
  const char* raw = reinterpret_cast<const char*>(src);
  if (h.storage != DType::F32) {
    convert_from_f32(h.storage, src, sized(f.conv, bytes), f.n);
    raw = f.conv.data();
  }
  f.raw_hash = XXH64(raw, bytes, 0);
  const char* in = raw;
  if (h.shuffled) {
    byte_shuffle(raw, sized(f.shuf, bytes), f.n, esz);
    in = f.shuf.data();
  }
  if (!f.cctx) f.cctx.reset(ZSTD_createCCtx());
  if (!f.cctx) throw InternalError("zstd: cannot allocate a compression context");
  const size_t cap = ZSTD_compressBound(bytes);
  // The simple API ignores any earlier advanced setting: the bytes depend on
  // the input and the level only.
  f.csize = zstd_check(ZSTD_compressCCtx(f.cctx.get(), sized(f.comp, cap), cap, in, bytes, h.zstd_level), "compress");
}

void decode_frame(ChunkCodec::Frame& f, const ChunkHeader& h, float* out, const std::string& what) {
  const size_t esz = dtype_size(h.storage), bytes = f.n * esz;
  float* dst = out + f.index * h.frame_elems;
  // f32 goes straight into the output; bf16 through a conversion buffer.
  char* raw = h.storage == DType::F32 ? reinterpret_cast<char*>(dst) : sized(f.conv, bytes);
  char* z = h.shuffled ? sized(f.shuf, bytes) : raw;
  if (!f.dctx) f.dctx.reset(ZSTD_createDCtx());
  if (!f.dctx) throw InternalError("zstd: cannot allocate a decompression context");
  const std::string frame = "frame " + std::to_string(f.index) + ": ";
  const size_t r = ZSTD_decompressDCtx(f.dctx.get(), z, bytes, f.comp.data(), f.csize);
  if (ZSTD_isError(r)) throw StoreCorruptionError(what + frame + "zstd: " + ZSTD_getErrorName(r));
  if (r != bytes)
    throw StoreCorruptionError(what + frame + "decodes to " + std::to_string(r) + " of " + std::to_string(bytes) +
                               " bytes");
  if (h.shuffled) byte_unshuffle(z, raw, f.n, esz);
  if (XXH64(raw, bytes, 0) != h.frames[f.index].xxh64_raw)
    throw StoreCorruptionError(what + frame + "raw data checksum mismatch");
  if (h.storage != DType::F32) convert_to_f32(h.storage, raw, dst, f.n);
}

}  // namespace

ChunkCodec::ChunkCodec() {
  for (size_t i = pipeline_frames(); i-- > 0;) {
    frames_.push_back(std::make_unique<Frame>());
    free_.push_back(frames_.back().get());
  }
}

ChunkCodec::~ChunkCodec() = default;

ChunkCodec::Frame* ChunkCodec::take_frame() {
  std::lock_guard lk(m_);
  Frame* f = free_.back();  // never empty: the pipeline keeps at most frames_.size() alive
  free_.pop_back();
  return f;
}

void ChunkCodec::give_back(Frame* f) {
  std::lock_guard lk(m_);
  free_.push_back(f);
}

ChunkCodec::FramesBack::~FramesBack() {
  std::lock_guard lk(c->m_);
  c->free_.clear();
  for (auto& f : c->frames_) c->free_.push_back(f.get());
}

ChunkHeader ChunkCodec::write(IoEngine& io, int fd, IoEngine::Group* g, ChunkHeader h, const float* data) {
  h.raw_bytes = h.numel * dtype_size(h.storage);
  const uint64_t nframes = chunk_frame_count(h.numel, h.frame_elems);
  const uint32_t header_bytes = chunk_header_bytes(nframes);
  if (header_bytes == 0 || header_bytes > io.slab_bytes())
    throw InternalError("a chunk of " + std::to_string(h.numel) + " values in " + std::to_string(nframes) +
                        " frames needs a header larger than one I/O slab (" + std::to_string(io.slab_bytes()) +
                        " bytes)");
  h.frames.assign(nframes, {});
  SlabWriter payload(io, fd, g, header_bytes);
  XXH64_state_t* comp_hash = XXH64_createState();
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> hold(comp_hash, XXH64_freeState);
  XXH64_reset(comp_hash, 0);
  uint64_t next = 0, csize = 0;
  const FramesBack frames_back{this};
  tbb::parallel_pipeline(
      frames_.size(),
      tbb::make_filter<void, Frame*>(tbb::filter_mode::serial_in_order,
                                     [&](tbb::flow_control& fc) -> Frame* {
                                       if (next == nframes) {
                                         fc.stop();
                                         return nullptr;
                                       }
                                       Frame* f = take_frame();
                                       f->index = next++;
                                       f->n = static_cast<size_t>(
                                           std::min<uint64_t>(h.frame_elems, h.numel - f->index * h.frame_elems));
                                       return f;
                                     }) &
          tbb::make_filter<Frame*, Frame*>(tbb::filter_mode::parallel,
                                           [&](Frame* f) {
                                             encode_frame(*f, h, data);
                                             return f;
                                           }) &
          tbb::make_filter<Frame*, void>(tbb::filter_mode::serial_in_order, [&](Frame* f) {
            h.frames[f->index] = {static_cast<uint32_t>(f->csize), f->raw_hash};
            XXH64_update(comp_hash, f->comp.data(), f->csize);
            payload.append(f->comp.data(), f->csize);
            csize += f->csize;
            give_back(f);
          }));
  payload.finish();
  h.compressed_bytes = csize;
  h.xxh64_compressed = XXH64_digest(comp_hash);
  // The header goes last: it is the only part that says the payload is complete.
  SlabLease head(io, io.acquire());
  encode_chunk_header(h, head.data());
  io.queue(IoKind::Write, fd, head.take(), header_bytes, 0, g);
  io.submit();
  return h;
}

ChunkHeader ChunkCodec::read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes,
                             const ChunkHeader& expect, const std::string& where, uint32_t read_ahead,
                             std::vector<float>* out) {
  return read_to(io, fd, path, file_bytes, expect, where, read_ahead, [out](uint64_t numel) {
    out->resize(numel);
    return out->data();
  });
}

ChunkHeader ChunkCodec::read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes,
                             const ChunkHeader& expect, const std::string& where, uint32_t read_ahead,
                             std::span<float> out) {
  return read_to(io, fd, path, file_bytes, expect, where, read_ahead, [&](uint64_t numel) {
    if (numel != out.size())
      throw InternalError(where + ": holds " + std::to_string(numel) + " values, the reader's buffer " +
                          std::to_string(out.size()));
    return out.data();
  });
}

ChunkHeader ChunkCodec::read_to(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes,
                                const ChunkHeader& expect, const std::string& where, uint32_t read_ahead,
                                const std::function<float*(uint64_t)>& dest) {
  // The reader's end only ever rises to what read_chunk_header, then the
  // header itself, has found the file long enough for: a damaged file never
  // makes the engine read past its end.
  SlabReader in(io, fd, path, where, read_ahead);
  const ChunkHeader h = read_chunk_header(
      [&](uint64_t offset, char* dst, size_t n) {
        in.set_end(offset + n);  // reads come in file order, so the reader is at offset
        in.read(dst, n);
      },
      path, file_bytes, expect, where);
  in.set_end(chunk_file_bytes(h));
  const std::string what = where + ": corrupt chunk file " + path + ": ";

  float* const values = dest(h.numel);
  XXH64_state_t* comp_hash = XXH64_createState();
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> hold(comp_hash, XXH64_freeState);
  XXH64_reset(comp_hash, 0);
  uint64_t next = 0;
  const FramesBack frames_back{this};
  tbb::parallel_pipeline(
      frames_.size(),
      tbb::make_filter<void, Frame*>(tbb::filter_mode::serial_in_order,
                                     [&](tbb::flow_control& fc) -> Frame* {
                                       if (next == h.frames.size()) {
                                         fc.stop();
                                         return nullptr;
                                       }
                                       Frame* f = take_frame();
                                       f->index = next++;
                                       f->n = static_cast<size_t>(
                                           std::min<uint64_t>(h.frame_elems, h.numel - f->index * h.frame_elems));
                                       f->csize = h.frames[f->index].compressed_bytes;
                                       in.read(sized(f->comp, f->csize), f->csize);
                                       XXH64_update(comp_hash, f->comp.data(), f->csize);
                                       return f;
                                     }) &
          tbb::make_filter<Frame*, void>(tbb::filter_mode::parallel, [&](Frame* f) {
            decode_frame(*f, h, values, what);
            give_back(f);
          }));
  if (XXH64_digest(comp_hash) != h.xxh64_compressed) throw StoreCorruptionError(what + "payload checksum mismatch");
  return h;
}

}  // namespace streamq
