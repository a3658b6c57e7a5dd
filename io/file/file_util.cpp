// Whole-file reads and durable atomic replacement of small files (manifests,
// indexes, configs): the temp -> fsync -> rename -> fsync-dir sequence lives here once.
#include "io/file/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/core/error.h"
#include "io/file/fd.h"

namespace streamq {

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

std::string read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw InputError(path + ": cannot open for reading: " + errno_text());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw InputError(path + ": cannot stat: " + errno_text());
  if (S_ISDIR(st.st_mode)) throw InputError(path + ": is a directory, expected a file");
  std::string out;
  out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InputError(path + ": read failed: " + errno_text());
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void atomic_write_file(const std::string& path, const std::string& content,
                       const std::function<void()>& before_rename) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw InternalError(tmp + ": cannot create: " + errno_text());
    std::size_t done = 0;
    while (done < content.size()) {
      const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw InternalError(tmp + ": write failed: " + errno_text());
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) throw InternalError(tmp + ": fsync failed: " + errno_text());
    if (fd.close() != 0) throw InternalError(tmp + ": close failed: " + errno_text());
    if (before_rename) before_rename();
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw InternalError(tmp + ": rename to " + path + " failed: " + errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());  // never leave a half-written temporary behind
    throw;
  }
  fsync_dir(parent_dir(path));
}

void fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw InternalError(dir + ": cannot open directory to fsync: " + errno_text());
  // Some file systems (tmpfs on old kernels, certain FUSE mounts) refuse
  // directory fsync with EINVAL; there is nothing more durable to ask for there.
  if (::fsync(fd.get()) != 0 && errno != EINVAL)
    throw InternalError(dir + ": directory fsync failed: " + errno_text());
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(dir + ": cannot create directory: " + ec.message());
  if (!std::filesystem::is_directory(dir, ec))
    throw InputError(dir + ": exists but is not a directory");
}

}  // namespace streamq
