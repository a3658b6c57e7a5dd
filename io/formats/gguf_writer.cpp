// GGUF v3 writing: metadata and tensor infos up front, data streamed, staged file.
#include "io/formats/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/gguf.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

constexpr uint64_t kAlignment = kGgufDefaultAlignment;  // general.alignment is not written: 32

template <class T>
void put(std::string* s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s->append(b, sizeof(T));
}
void put_str(std::string* s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s->append(v);
}
uint64_t align_up(uint64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

struct GgufWriter::Impl {
  std::string path, tmp;
  std::string kv;
  uint64_t n_kv = 0;
  struct Planned {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    uint64_t offset, nbytes;
  };
  std::vector<Planned> tensors;
  uint64_t data_bytes = 0;
  int fd = -1;
  size_t next = 0;          // tensor being written
  uint64_t written = 0;     // bytes of it so far
  uint64_t pos = 0;         // file position
  bool finished = false;

  void write_all(const void* p, uint64_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw InternalError(tmp + ": write failed: " + std::strerror(errno));
      }
      c += w;
      n -= static_cast<uint64_t>(w);
      pos += static_cast<uint64_t>(w);
    }
  }
  void pad_to(uint64_t target) {
    static const char zeros[64] = {};
    while (pos < target) write_all(zeros, std::min<uint64_t>(sizeof zeros, target - pos));
  }
  void begin() {  // header, metadata, tensor infos, padding
    std::string h = "GGUF";
    put<uint32_t>(&h, 3);
    put<uint64_t>(&h, tensors.size());
    put<uint64_t>(&h, n_kv);
    h += kv;
    for (const Planned& t : tensors) {
      put_str(&h, t.name);
      put<uint32_t>(&h, static_cast<uint32_t>(t.ne.size()));
      for (int64_t d : t.ne) put<uint64_t>(&h, static_cast<uint64_t>(d));
      put<uint32_t>(&h, t.type);
      put<uint64_t>(&h, t.offset);  // relative to the data section
    }
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw InternalError(tmp + ": cannot create: " + std::strerror(errno));
    write_all(h.data(), h.size());
    pad_to(align_up(pos));
  }
};

GgufWriter::GgufWriter(std::string path) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->tmp = impl_->path + ".partial-" + std::to_string(::getpid());
}

GgufWriter::~GgufWriter() {
  if (impl_->fd >= 0) ::close(impl_->fd);
  if (!impl_->finished) {
    std::error_code ec;
    fs::remove(impl_->tmp, ec);
  }
}

#define STREAMQ_GGUF_KV(fn, T, id)                                      \
  void GgufWriter::fn(const std::string& key, T v) {                    \
    if (impl_->fd >= 0) throw InternalError("GgufWriter: metadata after tensor data"); \
    put_str(&impl_->kv, key);                                           \
    put<uint32_t>(&impl_->kv, id);                                      \
    put<T>(&impl_->kv, v);                                              \
    ++impl_->n_kv;                                                      \
  }
STREAMQ_GGUF_KV(kv_u32, uint32_t, 4)
STREAMQ_GGUF_KV(kv_i32, int32_t, 5)
STREAMQ_GGUF_KV(kv_f32, float, 6)
STREAMQ_GGUF_KV(kv_u64, uint64_t, 10)
#undef STREAMQ_GGUF_KV

void GgufWriter::kv_bool(const std::string& key, bool v) {
  put_str(&impl_->kv, key);
  put<uint32_t>(&impl_->kv, 7);
  put<uint8_t>(&impl_->kv, v ? 1 : 0);
  ++impl_->n_kv;
}

void GgufWriter::kv_str(const std::string& key, const std::string& v) {
  put_str(&impl_->kv, key);
  put<uint32_t>(&impl_->kv, 8);
  put_str(&impl_->kv, v);
  ++impl_->n_kv;
}

void GgufWriter::kv_str_array(const std::string& key, const std::vector<std::string>& v) {
  put_str(&impl_->kv, key);
  put<uint32_t>(&impl_->kv, 9);
  put<uint32_t>(&impl_->kv, 8);
  put<uint64_t>(&impl_->kv, v.size());
  for (const auto& s : v) put_str(&impl_->kv, s);
  ++impl_->n_kv;
}

void GgufWriter::kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  put_str(&impl_->kv, key);
  put<uint32_t>(&impl_->kv, 9);
  put<uint32_t>(&impl_->kv, 5);
  put<uint64_t>(&impl_->kv, v.size());
  for (int32_t x : v) put<int32_t>(&impl_->kv, x);
  ++impl_->n_kv;
}

void GgufWriter::kv_f32_array(const std::string& key, const std::vector<float>& v) {
  put_str(&impl_->kv, key);
  put<uint32_t>(&impl_->kv, 9);
  put<uint32_t>(&impl_->kv, 6);
  put<uint64_t>(&impl_->kv, v.size());
  for (float x : v) put<float>(&impl_->kv, x);
  ++impl_->n_kv;
}

uint64_t GgufWriter::tensor_bytes(const std::vector<int64_t>& ne, uint32_t type) {
  const GgmlTypeTraits* tr = ggml_type_traits(type);
  if (!tr) throw InternalError("GgufWriter: unknown ggml type " + std::to_string(type));
  if (ne.empty() || ne[0] % tr->block != 0)
    throw InternalError("GgufWriter: ne[0] is not a multiple of the " + std::string(tr->name) + " block");
  uint64_t n = 1;
  for (int64_t d : ne) n *= static_cast<uint64_t>(d);
  return n / tr->block * tr->bytes;
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type) {
  if (impl_->fd >= 0) throw InternalError("GgufWriter: tensor planned after data started");
  if (ne.empty() || ne.size() > kGgufMaxDims) throw InternalError("GgufWriter: " + name + ": bad rank");
  const uint64_t nbytes = tensor_bytes(ne, type);
  impl_->tensors.push_back({name, ne, type, impl_->data_bytes, nbytes});
  impl_->data_bytes = align_up(impl_->data_bytes + nbytes);
}

void GgufWriter::write_tensor_data(const std::string& name, const void* bytes, uint64_t nbytes) {
  Impl& m = *impl_;
  if (m.fd < 0) m.begin();
  if (m.next >= m.tensors.size() || m.tensors[m.next].name != name)
    throw InternalError("GgufWriter: " + name + " written out of plan order");
  const Impl::Planned& t = m.tensors[m.next];
  if (m.written + nbytes > t.nbytes) throw InternalError("GgufWriter: " + name + ": more bytes than planned");
  m.write_all(bytes, nbytes);
  m.written += nbytes;
  if (m.written == t.nbytes) {
    ++m.next;
    m.written = 0;
    if (m.next < m.tensors.size()) m.pad_to(m.pos + (align_up(m.pos) - m.pos));
  }
}

void GgufWriter::finish() {
  Impl& m = *impl_;
  if (m.fd < 0) m.begin();
  if (m.next != m.tensors.size())
    throw InternalError("GgufWriter: tensor " + m.tensors[m.next].name + " was planned but not written");
  if (::fsync(m.fd) != 0) throw InternalError(m.tmp + ": fsync failed: " + std::strerror(errno));
  ::close(m.fd);
  m.fd = -1;
  std::error_code ec;
  fs::rename(m.tmp, m.path, ec);
  if (ec) throw InternalError(m.path + ": cannot rename into place: " + ec.message());
  m.finished = true;
  const std::string dir = fs::path(m.path).parent_path().string();
  fsync_dir(dir.empty() ? "." : dir);
}

void ggml_encode_q4_0(const uint8_t* codes, uint16_t d, uint8_t* out) {
  std::memcpy(out, &d, 2);
  for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>((codes[j] & 0x0F) | (codes[j + 16] << 4));
}

void ggml_encode_q4_1(const uint8_t* codes, uint16_t d, uint16_t m, uint8_t* out) {
  std::memcpy(out, &d, 2);
  std::memcpy(out + 2, &m, 2);
  for (int j = 0; j < 16; ++j) out[4 + j] = static_cast<uint8_t>((codes[j] & 0x0F) | (codes[j + 16] << 4));
}

void ggml_encode_q8_0(const uint8_t* codes, uint16_t d, uint8_t* out) {
  std::memcpy(out, &d, 2);
  for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(codes[j] - 128));
}

}  // namespace streamq
