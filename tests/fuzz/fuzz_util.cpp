// Scratch files and input splitting for the fuzz targets (fuzz_util.h).
#include "tests/fuzz/fuzz_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace streamq::fuzz {

namespace {
std::string make_scratch() {
  std::string templ = (fs::is_directory("/dev/shm") ? std::string("/dev/shm") : fs::temp_directory_path().string()) +
                      "/streamq-fuzz-XXXXXX";
  if (!mkdtemp(templ.data())) {
    std::perror(("fuzz: mkdtemp " + templ).c_str());
    std::abort();
  }
  return templ;
}
}  // namespace

const std::string& scratch_dir() {
  // Never destroyed: the exit handler that removes the directory runs after
  // the destructors of statics constructed later than it was registered.
  static const std::string& dir = *new std::string([] {
    std::string d = make_scratch();
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(scratch_dir(), ec);
    });
    return d;
  }());
  return dir;
}

void clear_scratch() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(scratch_dir(), ec)) fs::remove_all(e.path(), ec);
}

std::string write_scratch(const std::string& rel, std::string_view bytes) {
  const fs::path path = fs::path(scratch_dir()) / rel;
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path.string();
}

std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t nparts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < nparts) {
    const size_t at = rest.find(kPartSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kPartSeparator.size());
  }
  parts.push_back(rest);
  parts.resize(nparts);
  return parts;
}

// Where touch() leaves its result, so that the reads are not optimised away.
volatile unsigned char touch_sink;

void touch(const void* p, size_t n) {
  const volatile unsigned char* b = static_cast<const unsigned char*>(p);
  unsigned char sum = 0;
  for (size_t i = 0; i < n; ++i) sum ^= b[i];
  touch_sink = sum;
}

}  // namespace streamq::fuzz
