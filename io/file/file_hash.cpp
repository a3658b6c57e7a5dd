// Streaming xxh64 of files.
#include "io/file/file_hash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "io/file/fd.h"

namespace streamq {
namespace {

using HashState = std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)>;

HashState new_state() {
  HashState s(XXH64_createState(), XXH64_freeState);
  XXH64_reset(s.get(), 0);
  return s;
}

// Hashes [off, off + len) of an open file.
void hash_range(int fd, const std::string& path, uint64_t off, uint64_t len, XXH64_state_t* st) {
  std::vector<char> buf(1 << 20);
  while (len > 0) {
    const ssize_t n = ::pread(fd, buf.data(), std::min<uint64_t>(len, buf.size()), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InputError(path + ": read failed: " + std::strerror(errno));
    if (n == 0) throw InputError(path + ": file shrank while being hashed");
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
    off += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
}

Fd open_and_size(const std::string& path, uint64_t* size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw InputError(path + ": cannot open for reading: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw InputError(path + ": cannot stat: " + std::strerror(errno));
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

}  // namespace

uint64_t xxh64_file(const std::string& path) {
  uint64_t size = 0;
  const Fd fd = open_and_size(path, &size);
  HashState st = new_state();
  hash_range(fd.get(), path, 0, size, st.get());
  return XXH64_digest(st.get());
}

uint64_t xxh64_file_ends(const std::string& path, uint64_t head, uint64_t tail) {
  uint64_t size = 0;
  const Fd fd = open_and_size(path, &size);
  HashState st = new_state();
  XXH64_update(st.get(), &size, sizeof size);
  if (head + tail >= size) {
    hash_range(fd.get(), path, 0, size, st.get());
  } else {
    hash_range(fd.get(), path, 0, head, st.get());
    hash_range(fd.get(), path, size - tail, tail, st.get());
  }
  return XXH64_digest(st.get());
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace streamq
