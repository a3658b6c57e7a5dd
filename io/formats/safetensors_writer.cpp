// SafetensorsWriter: plans the shard layout up front, then accepts tensors in
// any order (pwrite at planned offsets) into temporary files that finish()
// fsyncs and renames into place; an unfinished writer removes its temporaries.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/file/fd.h"
#include "io/file/file_util.h"
#include "io/formats/safetensors.h"

namespace streamq {

using nlohmann::json;

namespace {

bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}

std::string shard_file_name(const std::string& base, std::size_t i, std::size_t n) {
  if (n == 1) return base + ".safetensors";
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", i + 1, n);
  return base + buf + ".safetensors";
}

}  // namespace

struct SafetensorsWriter::Impl {
  enum class State { Pending, Writing, Partial, Done };
  struct Slot {
    TensorSpec spec;
    std::size_t shard = 0;
    uint64_t offset = 0;  // absolute, in the shard file
    uint64_t nbytes = 0;
    State state = State::Pending;
    uint64_t parts_bytes = 0;  // write_f32_part: bytes written so far
  };
  struct Shard {
    std::string final_name;  // relative to out_dir
    std::string tmp_path;
    Fd fd;  // open until finish() has made it durable
    uint64_t size = 0;
  };

  std::string out_dir;
  std::string base;
  std::vector<Slot> slots;
  std::map<std::string, std::size_t> by_name;
  std::vector<Shard> shards;
  std::mutex mu;  // guards slot states; pwrites of distinct tensors run unlocked
  bool finished = false;

  ~Impl() {
    if (finished) return;
    for (Shard& s : shards) {
      if (!s.tmp_path.empty()) ::unlink(s.tmp_path.c_str());
    }
  }

  void pwrite_all(const Shard& s, const void* bytes, uint64_t n, uint64_t offset, const std::string& what) {
    const auto* p = static_cast<const unsigned char*>(bytes);
    while (n > 0) {
      const ssize_t w = ::pwrite(s.fd.get(), p, std::min<uint64_t>(n, 1ull << 30), static_cast<off_t>(offset));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw InternalError(s.tmp_path + ": writing " + what + " failed: " + std::strerror(errno));
      }
      p += w;
      n -= static_cast<uint64_t>(w);
      offset += static_cast<uint64_t>(w);
    }
  }

  // Floats converted to the slot's dtype and written at elements [first,
  // first + numel), in bounded chunks so a large tensor never needs a second
  // full copy.
  void pwrite_f32(const Slot& s, int64_t first, const float* values, int64_t numel, const std::string& name) {
    const uint64_t esize = dtype_size(s.spec.dtype);
    constexpr int64_t kChunk = 1 << 20;
    std::vector<unsigned char> buf(static_cast<std::size_t>(std::min(numel, kChunk) * esize));
    for (int64_t i = 0; i < numel; i += kChunk) {
      const int64_t n = std::min(kChunk, numel - i);
      convert_from_f32(s.spec.dtype, values + i, buf.data(), static_cast<std::size_t>(n));
      pwrite_all(shards[s.shard], buf.data(), static_cast<uint64_t>(n) * esize,
                 s.offset + static_cast<uint64_t>(first + i) * esize, "tensor '" + name + "'");
    }
  }

  // Marks a tensor as being written so a second write of it is caught even
  // when both race from different threads.
  Slot& claim(const std::string& name, const char* op, bool part = false) {
    std::lock_guard<std::mutex> lock(mu);
    if (finished) throw InternalError(out_dir + ": " + op + " of tensor '" + name + "' after finish()");
    const auto it = by_name.find(name);
    if (it == by_name.end())
      throw InputError(out_dir + ": " + op + " of tensor '" + name + "' which is not in the write plan");
    Slot& s = slots[it->second];
    if (s.state != State::Pending && !(part && s.state == State::Partial))
      throw InternalError(shards[s.shard].final_name + ": tensor '" + name + "' written twice");
    s.state = State::Writing;
    return s;
  }

  void settle(Slot& s, bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    s.state = ok ? State::Done : State::Pending;
  }
  // After a part: Partial until the last byte is in (a failed part leaves
  // the tensor as it was before it).
  void settle_part(Slot& s, uint64_t bytes_before, bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    if (!ok) s.parts_bytes = bytes_before;
    s.state = s.parts_bytes == s.nbytes ? State::Done : (s.parts_bytes > 0 ? State::Partial : State::Pending);
  }
};

SafetensorsWriter::SafetensorsWriter(std::string out_dir, std::vector<TensorSpec> plan,
                                     std::map<std::string, std::string> metadata, uint64_t max_shard_bytes,
                                     std::string base) {
  auto impl = std::make_unique<Impl>();  // its destructor cleans up if we throw below
  impl->out_dir = out_dir;
  impl->base = base;
  if (plan.empty()) throw InputError(out_dir + ": nothing to write (empty tensor plan for " + base + ")");
  metadata.emplace("format", "pt");  // what transformers expects; kept if the caller set one

  // Layout: plan order, consecutive tensors per shard up to max_shard_bytes
  // (a tensor larger than that gets a shard of its own).
  std::vector<std::vector<std::size_t>> groups;
  uint64_t group_bytes = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorSpec& t = plan[i];
    const std::string where = out_dir + ": planned tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__") throw InputError(where + ": reserved or empty name");
    if (!impl->by_name.emplace(t.name, i).second) throw InputError(where + ": listed twice in the plan");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) throw InputError(where + ": negative dimension");
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        throw InputError(where + ": shape element count overflows");
    }
    Impl::Slot slot;
    slot.spec = t;
    if (__builtin_mul_overflow(numel, dtype_size(t.dtype), &slot.nbytes))
      throw InputError(where + ": byte size overflows");
    if (groups.empty() || (group_bytes > 0 && group_bytes + slot.nbytes > max_shard_bytes)) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(i);
    group_bytes += slot.nbytes;
    impl->slots.push_back(std::move(slot));
  }

  make_dirs(out_dir);
  const std::string pid = std::to_string(::getpid());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    json header = json::object();
    uint64_t rel = 0;
    for (std::size_t i : groups[g]) {
      const Impl::Slot& s = impl->slots[i];
      header[s.spec.name] = {{"dtype", dtype_name(s.spec.dtype)},
                             {"shape", s.spec.shape},
                             {"data_offsets", {rel, rel + s.nbytes}}};
      rel += s.nbytes;
    }
    header["__metadata__"] = metadata;
    std::string text = header.dump();
    // Pad with spaces so the data starts 8-byte aligned, as the Rust writer does.
    text.append((8 - text.size() % 8) % 8, ' ');
    const uint64_t data_start = 8 + text.size();
    uint64_t rel_offset = 0;
    for (std::size_t i : groups[g]) {
      impl->slots[i].shard = g;
      impl->slots[i].offset = data_start + rel_offset;
      rel_offset += impl->slots[i].nbytes;
    }

    Impl::Shard shard;
    shard.final_name = shard_file_name(base, g, groups.size());
    shard.tmp_path = out_dir + "/" + shard.final_name + ".tmp." + pid;
    shard.size = data_start + rel;
    impl->shards.push_back(std::move(shard));
    Impl::Shard& sh = impl->shards.back();
    sh.fd.reset(::open(sh.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!sh.fd) {
      const std::string err = std::strerror(errno);
      throw InternalError(std::exchange(sh.tmp_path, "") + ": cannot create: " + err);  // nothing to unlink
    }
    unsigned char len[8];
    for (int b = 0; b < 8; ++b) len[b] = static_cast<unsigned char>(text.size() >> (8 * b));
    impl->pwrite_all(sh, len, 8, 0, "the header length");
    impl->pwrite_all(sh, text.data(), text.size(), 8, "the header");
    if (::ftruncate(sh.fd.get(), static_cast<off_t>(sh.size)) != 0)
      throw InternalError(sh.tmp_path + ": ftruncate to " + std::to_string(sh.size) + " bytes failed: " +
                          std::strerror(errno));
  }
  impl_ = std::move(impl);
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(const std::string& name, const void* bytes, uint64_t nbytes) {
  Impl::Slot& s = impl_->claim(name, "write");
  try {
    if (nbytes != s.nbytes)
      throw InputError(impl_->shards[s.shard].final_name + ": tensor '" + name + "' given " + std::to_string(nbytes) +
                       " bytes, the plan needs " + std::to_string(s.nbytes));
    impl_->pwrite_all(impl_->shards[s.shard], bytes, nbytes, s.offset, "tensor '" + name + "'");
  } catch (...) {
    impl_->settle(s, false);
    throw;
  }
  impl_->settle(s, true);
}

void SafetensorsWriter::write_f32(const std::string& name, const float* values, int64_t numel) {
  Impl::Slot& s = impl_->claim(name, "write_f32");
  try {
    const std::string where = impl_->shards[s.shard].final_name + ": tensor '" + name + "'";
    if (!is_floating(s.spec.dtype))
      throw InputError(where + ": write_f32 into non-floating dtype " + dtype_name(s.spec.dtype));
    const uint64_t esize = dtype_size(s.spec.dtype);
    if (numel < 0 || static_cast<uint64_t>(numel) * esize != s.nbytes)
      throw InputError(where + ": given " + std::to_string(numel) + " values, the plan needs " +
                       std::to_string(s.nbytes / esize));
    impl_->pwrite_f32(s, 0, values, numel, name);
  } catch (...) {
    impl_->settle(s, false);
    throw;
  }
  impl_->settle(s, true);
}

void SafetensorsWriter::write_f32_part(const std::string& name, int64_t first, const float* values, int64_t numel) {
  Impl::Slot& s = impl_->claim(name, "write_f32_part", true);
  const uint64_t before = s.parts_bytes;
  try {
    const std::string where = impl_->shards[s.shard].final_name + ": tensor '" + name + "'";
    if (!is_floating(s.spec.dtype))
      throw InputError(where + ": write_f32_part into non-floating dtype " + dtype_name(s.spec.dtype));
    const uint64_t esize = dtype_size(s.spec.dtype);
    const uint64_t total = s.nbytes / esize, done = before / esize;
    if (first < 0 || numel <= 0 || static_cast<uint64_t>(first) != done ||
        static_cast<uint64_t>(first + numel) > total)
      throw InputError(where + ": part of elements [" + std::to_string(first) + ", " + std::to_string(first + numel) +
                       ") after " + std::to_string(done) + " of " + std::to_string(total) +
                       " written (parts go in order, within the tensor)");
    impl_->pwrite_f32(s, first, values, numel, name);
    s.parts_bytes = before + static_cast<uint64_t>(numel) * esize;
  } catch (...) {
    impl_->settle_part(s, before, false);
    throw;
  }
  impl_->settle_part(s, before, true);
}

void SafetensorsWriter::finish() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->finished) return;
  std::vector<std::string> missing;
  for (const Impl::Slot& s : impl_->slots)
    if (s.state != Impl::State::Done) missing.push_back(s.spec.name);
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", '" : "'") + missing[i] + "'";
    if (missing.size() > 8) list += " and " + std::to_string(missing.size() - 8) + " more";
    throw InternalError(impl_->out_dir + ": finish() with " + std::to_string(missing.size()) +
                        " planned tensor(s) never written: " + list);
  }
  for (Impl::Shard& s : impl_->shards) {
    if (::fsync(s.fd.get()) != 0) throw InternalError(s.tmp_path + ": fsync failed: " + std::strerror(errno));
    if (s.fd.close() != 0) throw InternalError(s.tmp_path + ": close failed: " + std::strerror(errno));
  }
  // Renames come only after every shard is durable, so a crash never leaves a
  // final name pointing at a partly written file.
  for (Impl::Shard& s : impl_->shards) {
    const std::string final_path = impl_->out_dir + "/" + s.final_name;
    if (::rename(s.tmp_path.c_str(), final_path.c_str()) != 0)
      throw InternalError(s.tmp_path + ": rename to " + final_path + " failed: " + std::strerror(errno));
    s.tmp_path.clear();
  }
  const std::string index_path = impl_->out_dir + "/" + impl_->base + ".safetensors.index.json";
  if (impl_->shards.size() > 1) {
    json index;
    uint64_t total = 0;
    for (const Impl::Slot& s : impl_->slots) {
      index["weight_map"][s.spec.name] = impl_->shards[s.shard].final_name;
      total += s.nbytes;
    }
    index["metadata"]["total_size"] = total;
    atomic_write_file(index_path, index.dump(2) + "\n");
  } else {
    // A stale index from an earlier sharded run would win over the new single
    // file when the directory is read back.
    ::unlink(index_path.c_str());
  }
  fsync_dir(impl_->out_dir);
  impl_->finished = true;
}

std::vector<std::string> SafetensorsWriter::file_names() const {
  std::vector<std::string> names;
  for (const Impl::Shard& s : impl_->shards) names.push_back(s.final_name);
  return names;
}

}  // namespace streamq
