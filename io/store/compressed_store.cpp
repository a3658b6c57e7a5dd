// CompressedStore: the table of chunk files, their asynchronous writes, and
// what happens around them (replacement, drop, flush, failures, stats). The
// bytes of one chunk are ChunkCodec's business.
#include "io/store/compressed_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "io/store/chunk_codec.h"
#include "io/file/file_util.h"
#include "io/file/io_engine.h"
#include "io/file/fd.h"

namespace streamq {

namespace {


std::string where(int64_t block, Flow flow, int64_t chunk) {
  return "activation store: block " + std::to_string(block) + ", flow " + to_string(flow) + ", chunk " +
         std::to_string(chunk);
}

void log_once(std::once_flag& flag, const std::string& msg) {
  std::call_once(flag, [&] { std::fprintf(stderr, "streamq: %s\n", msg.c_str()); });
}
std::once_flag g_uring_fallback_logged, g_direct_fallback_logged;

// Hands a pooled codec back on every path out.
class CodecPool {
 public:
  class Lease {
   public:
    Lease(CodecPool* pool, std::unique_ptr<ChunkCodec> c) : pool_(pool), codec_(std::move(c)) {}
    ~Lease() {
      std::lock_guard lk(pool_->m_);
      pool_->free_.push_back(std::move(codec_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ChunkCodec* operator->() { return codec_.get(); }

   private:
    CodecPool* pool_;
    std::unique_ptr<ChunkCodec> codec_;
  };
  Lease lease() {
    std::unique_ptr<ChunkCodec> c;
    {
      std::lock_guard lk(m_);
      if (!free_.empty()) {
        c = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!c) c = std::make_unique<ChunkCodec>();
    return Lease(this, std::move(c));
  }

 private:
  std::mutex m_;
  std::vector<std::unique_ptr<ChunkCodec>> free_;
};

class CompressedStoreImpl final : public CompressedStore {
 public:
  CompressedStoreImpl(const CompressedStoreOptions& o, const IoBackendWrapper& wrap)
      : opts_(o), direct_(o.direct_io), io_(make_backend(o, wrap), o.slab_bytes, o.slabs) {
    if (opts_.storage != DType::F32 && opts_.storage != DType::BF16)
      throw InputError(std::string("activation store: storage dtype must be F32 or BF16, got ") +
                       dtype_name(opts_.storage));
    if (opts_.frame_elems == 0) throw InputError("activation store: frame_elems must be positive");
    make_dirs(opts_.dir);
  }

  ~CompressedStoreImpl() override {
    try {
      io_.wait_all();  // before any descriptor closes under the kernel's feet
    } catch (...) {
    }
    if (opts_.keep_files) return;
    for (auto& [key, e] : table_) ::unlink(e->path.c_str());
  }

  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    const std::string w = where(block, flow, chunk);
    if (numel < 0) throw InternalError(w + ": negative size " + std::to_string(numel));
    collect(true);
    const Key key{block, static_cast<int>(flow), chunk};
    forget(key);  // an earlier version of this chunk: its file is rewritten in place
    auto e = std::make_shared<Entry>();
    e->key = key;
    e->path = compressed_chunk_path(opts_.dir, block, flow, chunk);
    e->group.path = e->path;
    e->fd = open_file(e->path, O_WRONLY | O_CREAT | O_TRUNC, w);
    ChunkHeader h;
    h.block = block;
    h.flow = static_cast<uint32_t>(flow);
    h.chunk = chunk;
    h.numel = static_cast<uint64_t>(numel);
    h.storage = opts_.storage;
    h.shuffled = opts_.shuffle;
    h.frame_elems = opts_.frame_elems;
    h.zstd_level = opts_.zstd_level;
    try {
      auto codec = codecs_.lease();
      e->header = codec->write(io_, e->fd.get(), &e->group, h, data);
      e->file_bytes = chunk_file_bytes(e->header);
      e->header.frames = {};  // only get() needs them, and it reads them from the file
    } catch (const std::exception& ex) {
      io_.wait(&e->group);  // what was queued still refers to the descriptor
      e->fd.reset();
      ::unlink(e->path.c_str());
      throw InternalError(w + ": " + ex.what());
    }
    std::lock_guard lk(m_);
    table_[key] = std::move(e);
  }

  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override { read(block, flow, chunk, out); }
  void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) override {
    read(block, flow, chunk, out);
  }

  void drop(int64_t block) override {
    std::vector<std::shared_ptr<Entry>> gone;
    {
      std::lock_guard lk(m_);
      for (auto it = table_.begin(); it != table_.end();) {
        if (std::get<0>(it->first) == block) {
          gone.push_back(std::move(it->second));
          it = table_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& e : gone) {
      io_.wait(&e->group);
      e->fd.reset();
      ::unlink(e->path.c_str());
    }
  }

  uint64_t bytes_held() const override { return stats(-1).file_bytes; }

  void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) override {
    for (const Flow flow : flows) {
      for (int64_t c = 0; c < nchunks; ++c) {
        const std::string w = where(block, flow, c);
        auto e = std::make_shared<Entry>();
        e->key = Key{block, static_cast<int>(flow), c};
        e->path = compressed_chunk_path(opts_.dir, block, flow, c);
        ChunkHeader expect;
        expect.block = block;
        expect.flow = static_cast<uint32_t>(flow);
        expect.chunk = c;
        e->header = read_header(e->path, expect, w, &e->file_bytes);
        e->header.frames = {};
        e->writing = false;
        e->dirty = false;
        std::lock_guard lk(m_);
        table_[e->key] = std::move(e);
      }
    }
  }

  void flush() override {
    for (auto& e : snapshot()) io_.wait(&e->group);
    collect(false);
    std::vector<std::shared_ptr<Entry>> dirty;
    {
      std::lock_guard lk(m_);
      for (auto& [key, e] : table_) {
        if (e->failed) {
          e->reported = true;
          throw failure(key, *e);
        }
        if (e->dirty) dirty.push_back(e);
      }
    }
    for (auto& e : dirty) {
      const Key& k = e->key;
      const std::string w = where(std::get<0>(k), static_cast<Flow>(std::get<1>(k)), std::get<2>(k));
      Fd fd(::open(e->path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd || ::fsync(fd.get()) != 0)
        throw InternalError(w + ": fsync of " + e->path + " failed: " + std::strerror(errno));
      std::lock_guard lk(m_);
      e->dirty = false;
    }
    if (!dirty.empty()) fsync_dir(opts_.dir);
  }

  StoreStats stats(int64_t block) const override {
    std::lock_guard lk(m_);
    StoreStats s;
    for (const auto& [key, e] : table_) {
      if (e->failed || (block >= 0 && std::get<0>(key) != block)) continue;
      ++s.chunks;
      s.input_bytes += e->header.numel * sizeof(float);
      s.raw_bytes += e->header.raw_bytes;
      s.compressed_bytes += e->header.compressed_bytes;
      s.file_bytes += e->file_bytes;
    }
    return s;
  }

  std::string io_description() const override {
    return io_.backend_name() + (direct_ ? ", O_DIRECT" : ", buffered");
  }

 private:
  // get and get_into: Out is std::vector<float>* (resized) or std::span<float> (exact).
  template <class Out>
  void read(int64_t block, Flow flow, int64_t chunk, Out out) {
    const std::string w = where(block, flow, chunk);
    const std::shared_ptr<Entry> e = find({block, static_cast<int>(flow), chunk});
    if (!e) throw InternalError(w + ": not stored");
    io_.wait(&e->group);
    if (!e->group.error.empty()) throw InternalError(w + ": not stored, its write failed: " + e->group.error);
    Fd fd = open_file(e->path, O_RDONLY, w);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      throw InternalError(w + ": cannot stat " + e->path + ": " + std::strerror(errno));
    ChunkHeader expect;
    expect.block = block;
    expect.flow = static_cast<uint32_t>(flow);
    expect.chunk = chunk;
    auto codec = codecs_.lease();
    codec->read(io_, fd.get(), e->path, static_cast<uint64_t>(st.st_size), expect, w, opts_.read_ahead, out);
  }

  using Key = std::tuple<int64_t, int, int64_t>;
  struct Entry {
    Key key;
    std::string path;
    Fd fd;                  // open while its writes may be in flight
    IoEngine::Group group;  // its writes
    ChunkHeader header;
    uint64_t file_bytes = 0;
    bool writing = true;    // completion not yet collected
    bool failed = false, reported = false;
    bool dirty = true;      // not yet fsynced
  };

  static std::unique_ptr<IoBackend> make_backend(const CompressedStoreOptions& o, const IoBackendWrapper& wrap) {
    std::string fallback;
    // Every request holds a slab, so the pool size bounds the ring's use.
    auto b = select_io_backend(o.io, o.slabs, &fallback);
    if (!fallback.empty()) log_once(g_uring_fallback_logged, "io_uring unavailable (" + fallback + "); using pread/pwrite");
    return wrap ? wrap(std::move(b)) : std::move(b);
  }

  // Opens with O_DIRECT while the filesystem allows it; the first EINVAL
  // switches this store to buffered I/O, said once.
  Fd open_file(const std::string& path, int flags, const std::string& w) {
    flags |= O_CLOEXEC;
    const bool direct = direct_;
    int fd = io_.open(path, flags | (direct ? O_DIRECT : 0), 0644);
    if (fd == -EINVAL && direct) {
      direct_ = false;
      log_once(g_direct_fallback_logged,
               "O_DIRECT unsupported under " + opts_.dir + " (Invalid argument); using buffered I/O");
      fd = io_.open(path, flags, 0644);
    }
    if (fd < 0)
      throw InternalError(w + ": cannot open " + path + ": " + std::strerror(-fd));
    return Fd(fd);
  }

  // The header of a chunk file, checked as get() checks it (read_chunk_header)
  // but read with plain buffered reads; *file_bytes gets the file's size.
  static ChunkHeader read_header(const std::string& path, const ChunkHeader& expect, const std::string& w,
                                 uint64_t* file_bytes) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw StoreCorruptionError(w + ": " + path + " is missing: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      throw StoreCorruptionError(w + ": cannot stat " + path + ": " + std::strerror(errno));
    *file_bytes = static_cast<uint64_t>(st.st_size);
    auto read_at = [&](uint64_t offset, char* dst, size_t n) {
      const ssize_t got = ::pread(fd.get(), dst, n, static_cast<off_t>(offset));
      if (got != static_cast<ssize_t>(n))  // the file shrank since fstat, or the read failed
        throw StoreCorruptionError(w + ": corrupt chunk file " + path + ": " +
                                   (got < 0 ? std::string("read failed: ") + std::strerror(errno)
                                            : "truncated: read " + std::to_string(got) + " of " +
                                                  std::to_string(n) + " bytes at offset " +
                                                  std::to_string(offset)));
    };
    return read_chunk_header(read_at, path, *file_bytes, expect, w);
  }

  std::shared_ptr<Entry> find(const Key& key) {
    std::lock_guard lk(m_);
    auto it = table_.find(key);
    return it == table_.end() ? nullptr : it->second;
  }

  std::vector<std::shared_ptr<Entry>> snapshot() {
    std::lock_guard lk(m_);
    std::vector<std::shared_ptr<Entry>> v;
    for (auto& [key, e] : table_) v.push_back(e);
    return v;
  }

  // Removes a chunk from the table once its writes are over (not its file).
  void forget(const Key& key) {
    std::shared_ptr<Entry> old;
    {
      std::lock_guard lk(m_);
      auto it = table_.find(key);
      if (it == table_.end()) return;
      old = std::move(it->second);
      table_.erase(it);
    }
    io_.wait(&old->group);
  }

  static InternalError failure(const Key& k, const Entry& e) {
    return InternalError(where(std::get<0>(k), static_cast<Flow>(std::get<1>(k)), std::get<2>(k)) + ": " +
                         e.group.error + "; the chunk is not stored");
  }

  // Closes the descriptors of chunks whose writes are over; a failed chunk
  // loses its file, and with `report` the first failure nobody was told about
  // is thrown.
  void collect(bool report) {
    std::lock_guard lk(m_);
    for (auto& [key, e] : table_) {
      if (!e->writing || !io_.finished(&e->group)) continue;
      e->writing = false;
      e->fd.reset();
      if (!e->group.error.empty()) {
        e->failed = true;
        ::unlink(e->path.c_str());
      }
    }
    if (!report) return;
    for (auto& [key, e] : table_) {
      if (e->failed && !e->reported) {
        e->reported = true;
        throw failure(key, *e);
      }
    }
  }

  CompressedStoreOptions opts_;
  std::atomic<bool> direct_;  // cleared for good by the first EINVAL
  IoEngine io_;
  CodecPool codecs_;
  mutable std::mutex m_;  // guards table_ and the entries' flags
  std::map<Key, std::shared_ptr<Entry>> table_;
};

}  // namespace

std::string compressed_chunk_path(const std::string& dir, int64_t block, Flow flow, int64_t chunk) {
  return dir + "/b" + std::to_string(block) + "." + to_string(flow) + ".c" + std::to_string(chunk) + ".sqz";
}

std::unique_ptr<CompressedStore> open_compressed_store(const CompressedStoreOptions& opts,
                                                       const IoBackendWrapper& wrap) {
  return std::make_unique<CompressedStoreImpl>(opts, wrap);
}

}  // namespace streamq
