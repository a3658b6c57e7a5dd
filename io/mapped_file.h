// A file opened read-only and mapped into memory (RAII): the zero-copy base of
// the safetensors and GGUF readers.
#pragma once

#include <cstdint>
#include <string>

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

 private:
  int fd_ = -1;
  void* map_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace streamq
