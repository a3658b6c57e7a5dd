// Staged, atomically committed output directories.
#include "src/job/output_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"

namespace fs = std::filesystem;

namespace streamq {

OutputDir::OutputDir(std::string path, bool overwrite, const std::string& tag)
    : path_(std::move(path)), overwrite_(overwrite) {
  if (path_.empty()) throw InputError("--out: an output directory is required");
  while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    if (!fs::is_directory(path_, ec)) throw InputError("--out " + path_ + ": exists and is not a directory");
    if (!fs::is_empty(path_, ec) && !overwrite_)
      throw InputError("--out " + path_ + ": directory exists and is not empty; pass --overwrite to replace it");
  }
  remove_dead_stagings();
  staging_ = path_ + ".partial-" + (tag.empty() ? std::to_string(::getpid()) : tag);
  fs::remove_all(staging_, ec);
  make_dirs(staging_);
}

// A killed run leaves <path>.partial-<pid> (and, mid-commit, .old-<pid>)
// behind; once that pid is gone nobody will finish it. (A process just
// SIGKILLed may still exist for a moment; its leftover goes next time.)
void OutputDir::remove_dead_stagings() const {
  const fs::path p(path_);
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string base = p.filename().string();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    for (const std::string tag : {".partial-", ".old-"}) {
      if (name.rfind(base + tag, 0) != 0) continue;
      const std::string pid_text = name.substr(base.size() + tag.size());
      if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
      // Not a pid (past pid_t's range): not ours to remove.
      pid_t pid = 0;
      const auto [ptr, perr] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
      if (perr != std::errc() || ptr != pid_text.data() + pid_text.size() || pid <= 0) continue;
      if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(e.path(), ec);
    }
  }
}

void OutputDir::remove_abandoned_staging(std::string path, const std::string& tag) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::error_code ec;
  fs::remove_all(path + ".partial-" + tag, ec);
}

OutputDir::~OutputDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

void OutputDir::copy_side_files(const std::string& model_dir) {
  for (const auto& e : fs::directory_iterator(model_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (ext == ".safetensors" || name == "model.safetensors.index.json" || ext == ".bin" || ext == ".pt" ||
        ext == ".gguf")
      continue;
    if (e.file_size() > (64ull << 20)) continue;  // side files are small; skip stray big data
    atomic_write_file(staging_ + "/" + name, read_file(e.path().string()));
  }
}

void OutputDir::commit() {
  fsync_dir(staging_);
  std::error_code ec;
  const std::string old = path_ + ".old-" + std::to_string(::getpid());
  const bool had_old = fs::exists(path_, ec);
  if (had_old) fs::rename(path_, old);
  fs::rename(staging_, path_);
  committed_ = true;
  const fs::path parent = fs::absolute(path_).parent_path();
  fsync_dir(parent.string());
  if (had_old) fs::remove_all(old, ec);
}

}  // namespace streamq
