// A file opened read-only and mapped into memory (RAII): the zero-copy base of
// the safetensors and GGUF readers.
#pragma once

#include <cstdint>
#include <string>

#include "io/file/fd.h"

namespace streamq {

class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Opens and maps `path`; throws InputError naming it when it cannot be
  // opened, is not a regular file or cannot be mapped. An empty file maps
  // nothing (data() is null, size() 0): callers report it in their terms.
  void open(const std::string& path);
  const unsigned char* data() const { return static_cast<const unsigned char*>(map_); }
  uint64_t size() const { return size_; }
  // Starts reading bytes [offset, offset + len) into the page cache
  // (readahead(2), in pieces that fit any device's read-ahead window, so a
  // range of any length is read whole): no copy, nothing mapped, so no RSS;
  // later reads of the mapping fault in from memory instead of the disk.
  // Blocks while the requests are submitted. Returns false (errno set) when the file system
  // does not support it; a read-ahead is only a hint, so callers go on.
  bool read_ahead(uint64_t offset, uint64_t len) const;

 private:
  Fd fd_;  // kept open for read_ahead
  void* map_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace streamq
