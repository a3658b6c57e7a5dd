// Implementation of the shared test helpers.
#include "tests/support/test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "io/file/fd.h"

namespace streamq::test {

std::string source_dir() { return STREAMQ_SOURCE_DIR; }
std::string demo_model_dir() { return source_dir() + "/data/stories260K"; }
std::string shared_fixtures_dir() { return source_dir() + "/../shared/fixtures"; }
std::string streamq_bin() { return STREAMQ_BIN; }

ScratchDir::ScratchDir(const std::string& tag) {
  std::string templ = (std::filesystem::temp_directory_path() / ("streamq-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed for " + templ);
  path_ = templ;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string output_bytes(const std::string& path) {
  std::string bytes = read_all(path);
  const std::string ext = ".safetensors";
  if (path.size() < ext.size() || path.compare(path.size() - ext.size(), ext.size(), ext) != 0 || bytes.size() < 8)
    return bytes;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (n > bytes.size() - 8) return bytes;
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n), nullptr, false);
  if (!header.is_object() || !header.contains("__metadata__")) return bytes;
  header["__metadata__"].erase("streamq_settings");
  return header.dump() + bytes.substr(8 + n);
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

static std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

CliResult run_streamq(const std::vector<std::string>& args) { return run_streamq_with("", args); }

CliResult run_streamq_with(const std::string& prefix, const std::vector<std::string>& args) {
  ScratchDir tmp("cli");
  std::string cmd = prefix + (prefix.empty() ? "" : " ") + shell_quote(STREAMQ_BIN);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " >" + shell_quote(tmp.file("out")) + " 2>" + shell_quote(tmp.file("err"));
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : (WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1);
  r.out = read_all(tmp.file("out"));
  r.err = read_all(tmp.file("err"));
  return r;
}

uint64_t fresh_seed() {
  if (const char* s = std::getenv("STREAMQ_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         (static_cast<uint64_t>(getpid()) << 32);
}

bool page_mapped(const void* p) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const Fd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot open /proc/self/pagemap");
  uint64_t entry = 0;
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / page * sizeof(entry));
  const ssize_t n = ::pread(fd.get(), &entry, sizeof entry, at);
  if (n != static_cast<ssize_t>(sizeof entry)) throw std::runtime_error("short read of /proc/self/pagemap");
  return (entry >> 63) & 1;
}

double relative_difference(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) throw std::runtime_error("relative_difference: sizes differ");
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

}  // namespace streamq::test
