// Turning one chunk of float32 activations into a chunk file and back
// (format in io/store/chunk_header.h): dtype conversion, byte shuffle, zstd and
// checksums per frame on all cores (a oneTBB pipeline), the compressed bytes
// streamed in order through the I/O engine's slabs. One codec serves one call
// at a time (it owns the frames' buffers and zstd contexts); the store keeps
// a pool of them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "io/store/chunk_header.h"
#include "io/file/io_engine.h"

namespace streamq {

class ChunkCodec {
 public:
  ChunkCodec();
  ~ChunkCodec();
  ChunkCodec(const ChunkCodec&) = delete;
  ChunkCodec& operator=(const ChunkCodec&) = delete;

  // Encodes data[h.numel] as `h` asks (block, flow, chunk, numel, storage,
  // shuffled, frame_elems, zstd_level) and queues the file's writes on fd
  // into g: payload slabs as they fill, while later frames still compress,
  // then the header. Returns when all are queued, not written; returns h
  // completed with sizes, frames and checksums.
  ChunkHeader write(IoEngine& io, int fd, IoEngine::Group* g, ChunkHeader h, const float* data);

  // Reads the chunk file on fd (file_bytes long, named path), checks it
  // against expect's block, flow and chunk and its checksums, and decodes it
  // into out, with up to read_ahead slab reads in flight. Throws
  // StoreCorruptionError for bad contents and InternalError for failed I/O,
  // both starting with `where`. Returns the header.
  ChunkHeader read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes, const ChunkHeader& expect,
                   const std::string& where, uint32_t read_ahead, std::vector<float>* out);
  // The same into the caller's buffer, which must hold exactly the chunk's
  // values (else InternalError starting with `where`): decoded in place.
  ChunkHeader read(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes, const ChunkHeader& expect,
                   const std::string& where, uint32_t read_ahead, std::span<float> out);

  struct Frame;  // one frame's buffers and zstd context (chunk_codec.cpp)

 private:
  // read()'s body: `dest(numel)` gives where the chunk's numel values go,
  // once the header is checked.
  ChunkHeader read_to(IoEngine& io, int fd, const std::string& path, uint64_t file_bytes, const ChunkHeader& expect,
                      const std::string& where, uint32_t read_ahead, const std::function<float*(uint64_t)>& dest);
  Frame* take_frame();
  void give_back(Frame* f);
  // Puts every frame back in the free list when a pipeline ends, also when an
  // exception abandoned some on the way.
  struct FramesBack {
    ChunkCodec* c;
    ~FramesBack();
  };

  std::vector<std::unique_ptr<Frame>> frames_;  // as many as the pipeline keeps alive
  std::mutex m_;
  std::vector<Frame*> free_;
};

}  // namespace streamq
