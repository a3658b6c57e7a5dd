// Checksums of whole files (xxh64), for manifests that must notice a damaged
// or replaced file before trusting it.
#pragma once

#include <cstdint>
#include <string>

namespace streamq {

// xxh64 (seed 0) of the file's bytes; throws InputError naming the path when
// it cannot be read.
uint64_t xxh64_file(const std::string& path);
// xxh64 of the byte ranges [0, head) and [size - tail, size) plus the size: a
// cheap identity for multi-gigabyte model files (a different model differs in
// its safetensors header, which sits at the start).
uint64_t xxh64_file_ends(const std::string& path, uint64_t head, uint64_t tail);
// 16 lowercase hex digits.
std::string hex64(uint64_t v);

}  // namespace streamq
