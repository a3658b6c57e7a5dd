// In-memory and simple on-disk ActivationStore implementations.
#include "io/store/activation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"

namespace streamq {

const char* to_string(Flow f) { return f == Flow::Fp ? "fp" : "quant"; }

namespace {

std::string where(int64_t block, Flow flow, int64_t chunk) {
  return "activation store: block " + std::to_string(block) + ", flow " + to_string(flow) + ", chunk " +
         std::to_string(chunk);
}

class MemoryStore final : public ActivationStore {
 public:
  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    auto& slot = chunks_[{block, static_cast<int>(flow), chunk}];
    bytes_ -= slot.size() * sizeof(float);
    slot.assign(data, data + numel);
    bytes_ += slot.size() * sizeof(float);
  }
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override {
    auto it = chunks_.find({block, static_cast<int>(flow), chunk});
    if (it == chunks_.end()) throw InternalError(where(block, flow, chunk) + ": not stored");
    *out = it->second;
  }
  void drop(int64_t block) override {
    for (auto it = chunks_.begin(); it != chunks_.end();) {
      if (std::get<0>(it->first) == block) {
        bytes_ -= it->second.size() * sizeof(float);
        it = chunks_.erase(it);
      } else {
        ++it;
      }
    }
  }
  uint64_t bytes_held() const override { return bytes_; }

 private:
  std::map<std::tuple<int64_t, int, int64_t>, std::vector<float>> chunks_;
  uint64_t bytes_ = 0;
};

class DiskStore final : public ActivationStore {
 public:
  explicit DiskStore(std::string dir) : dir_(std::move(dir)) { make_dirs(dir_); }
  ~DiskStore() override {
    for (auto& [key, f] : files_) {
      ::close(f.fd);
      ::unlink(f.path.c_str());
    }
  }

  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    File& f = file(block, flow);
    const uint64_t nbytes = static_cast<uint64_t>(numel) * sizeof(float);
    const uint64_t offset = f.end;
    write_all(f, data, nbytes, offset, block, flow, chunk);
    f.end += nbytes;
    f.chunks[chunk] = {offset, nbytes};
    bytes_ += nbytes;
  }

  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override {
    auto fit = files_.find({block, static_cast<int>(flow)});
    if (fit == files_.end() || !fit->second.chunks.count(chunk))
      throw InternalError(where(block, flow, chunk) + ": not stored");
    File& f = fit->second;
    const auto [offset, nbytes] = f.chunks.at(chunk);
    out->resize(nbytes / sizeof(float));
    auto* p = reinterpret_cast<char*>(out->data());
    uint64_t done = 0;
    while (done < nbytes) {
      const ssize_t r = ::pread(f.fd, p + done, nbytes - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw InternalError(where(block, flow, chunk) + ": read of " + f.path + " failed: " +
                            (r == 0 ? std::string("file shorter than recorded") : std::strerror(errno)));
      done += static_cast<uint64_t>(r);
    }
  }

  void drop(int64_t block) override {
    for (auto it = files_.begin(); it != files_.end();) {
      if (it->first.first == block) {
        bytes_ -= it->second.end;
        ::close(it->second.fd);
        ::unlink(it->second.path.c_str());
        it = files_.erase(it);
      } else {
        ++it;
      }
    }
  }
  uint64_t bytes_held() const override { return bytes_; }

 private:
  struct File {
    std::string path;
    int fd = -1;
    uint64_t end = 0;
    std::map<int64_t, std::pair<uint64_t, uint64_t>> chunks;  // chunk -> (offset, bytes)
  };

  File& file(int64_t block, Flow flow) {
    auto key = std::make_pair(block, static_cast<int>(flow));
    auto it = files_.find(key);
    if (it != files_.end()) return it->second;
    File f;
    f.path = dir_ + "/block" + std::to_string(block) + "." + to_string(flow) + ".f32";
    f.fd = ::open(f.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) throw InternalError("activation store: cannot create " + f.path + ": " + std::strerror(errno));
    return files_.emplace(key, std::move(f)).first->second;
  }

  static void write_all(const File& f, const float* data, uint64_t nbytes, uint64_t offset, int64_t block,
                        Flow flow, int64_t chunk) {
    const auto* p = reinterpret_cast<const char*>(data);
    uint64_t done = 0;
    while (done < nbytes) {
      const ssize_t w = ::pwrite(f.fd, p + done, nbytes - done, static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        throw InternalError(where(block, flow, chunk) + ": write to " + f.path + " failed: " + std::strerror(errno));
      done += static_cast<uint64_t>(w);
    }
  }

  std::string dir_;
  std::map<std::pair<int64_t, int>, File> files_;
  uint64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<ActivationStore> make_memory_store() { return std::make_unique<MemoryStore>(); }
std::unique_ptr<ActivationStore> make_disk_store(const std::string& dir) { return std::make_unique<DiskStore>(dir); }

}  // namespace streamq
