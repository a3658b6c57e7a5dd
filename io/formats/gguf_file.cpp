// GGUF container parsing and validation: header, metadata key/values, tensor
// infos and the data section, all read through a bounds-checked cursor over
// the mmapped file. Dequantization is in gguf_dequant.cpp, the HF view in
// gguf_llama.cpp.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "src/core/error.h"
#include "io/formats/gguf.h"

namespace streamq {

static_assert(std::endian::native == std::endian::little,
              "GGUF values are read in place as little-endian; a big-endian host needs byte swaps");

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // validated at open: no overflow
  return n;
}

namespace {

constexpr uint32_t kMaxArrayNesting = 8;  // guards the recursion against crafted files

// Fixed size of a numeric/bool value type, 0 for String and Array.
uint64_t value_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
  }
}

// The fewest bytes one element of type `t` occupies in the file: what bounds
// an array's count by the bytes left before anything is allocated for it.
uint64_t min_encoded_size(GgufValueType t) {
  if (t == GgufValueType::String) return 8;   // length, no characters
  if (t == GgufValueType::Array) return 12;   // element type and count, no elements
  return value_size(t);
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::F64); }

// A cursor over the mapped bytes; every read is checked against the end of
// the file and a failure says what was being read and where.
class Cursor {
 public:
  Cursor(const unsigned char* base, uint64_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const unsigned char* here() const { return base_ + pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      throw InputError(path_ + ": truncated: " + what + " at byte " + std::to_string(pos_) + " needs " +
                       std::to_string(n) + " bytes, only " + std::to_string(left()) + " left in the file");
  }
  const unsigned char* take(uint64_t n, const std::string& what) {
    need(n, what);
    const unsigned char* p = here();
    pos_ += n;
    return p;
  }
  template <class T>
  T get(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string string(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " (string length)");
    // Checked before the allocation: a corrupt length cannot ask for more
    // memory than the file holds.
    const unsigned char* p = take(n, what + " (string of " + std::to_string(n) + " bytes)");
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  const unsigned char* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

void read_array(Cursor& c, const std::string& what, const std::string& path, uint32_t depth, GgufValue* out) {
  if (depth >= kMaxArrayNesting)
    throw InputError(path + ": " + what + ": arrays nested deeper than " + std::to_string(kMaxArrayNesting));
  const uint32_t et = c.get<uint32_t>(what + " (array element type)");
  if (!known_value_type(et))
    throw InputError(path + ": " + what + ": unknown array element type " + std::to_string(et));
  out->elem_type = static_cast<GgufValueType>(et);
  out->count = c.get<uint64_t>(what + " (array length)");
  const uint64_t min_size = min_encoded_size(out->elem_type);
  if (out->count > c.left() / min_size)
    throw InputError(path + ": truncated: " + what + " claims " + std::to_string(out->count) + " elements of " +
                     gguf_value_type_name(out->elem_type) + " but only " + std::to_string(c.left()) +
                     " bytes are left in the file");
  if (out->elem_type == GgufValueType::String) {
    out->strings.reserve(out->count);
    for (uint64_t i = 0; i < out->count; ++i) out->strings.push_back(c.string(what + "[" + std::to_string(i) + "]"));
  } else if (out->elem_type == GgufValueType::Array) {
    out->arrays.resize(out->count);
    for (uint64_t i = 0; i < out->count; ++i) {
      out->arrays[i].type = GgufValueType::Array;
      read_array(c, what + "[" + std::to_string(i) + "]", path, depth + 1, &out->arrays[i]);
    }
  } else {
    out->raw = c.take(out->count * min_size, what + " (array data)");
  }
}

void read_value(Cursor& c, GgufValueType type, const std::string& what, const std::string& path, uint32_t depth,
                GgufValue* out) {
  out->type = type;
  if (type == GgufValueType::String) out->str = c.string(what);
  else if (type == GgufValueType::Array) read_array(c, what, path, depth, out);
  else out->raw = c.take(value_size(type), what);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }  // a is a power of two <= 2^31

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->file_.open(path);
  f->file_size_ = f->file_.size();
  if (f->file_size_ == 0) throw InputError(path + ": empty file (truncated?)");
  f->parse();
  if (f->architecture() == "llama") f->build_llama_view();
  else f->hf_unavailable_ = "general.architecture is '" + f->architecture() + "'; only 'llama' maps to HF names";
  return f;
}

GgufFile::~GgufFile() = default;

void GgufFile::parse() {
  const auto* base = file_.data();
  Cursor c(base, file_size_, path_);

  c.need(4, "magic");
  if (std::memcmp(c.here(), "GGUF", 4) != 0) {
    std::string got;
    for (int i = 0; i < 4 && i < static_cast<int>(file_size_); ++i) {
      const unsigned char ch = base[i];
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", ch);
      got += (ch >= 32 && ch < 127) ? std::string(1, static_cast<char>(ch)) : std::string(hex);
    }
    throw InputError(path_ + ": bad magic '" + got + "', expected 'GGUF' (not a GGUF file)");
  }
  c.take(4, "magic");
  version_ = c.get<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    // A big-endian GGUF (allowed since v3) shows its version byte-swapped.
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped == 2 || swapped == 3)
      throw InputError(path_ + ": big-endian GGUF (version " + std::to_string(swapped) + ") is not supported");
    throw InputError(path_ + ": GGUF version " + std::to_string(version_) +
                     " is not supported (only 2 and 3; version 1 used 32-bit lengths)");
  }
  const uint64_t n_tensors = c.get<uint64_t>("tensor count");
  const uint64_t n_kv = c.get<uint64_t>("metadata count");
  // Bounds before reserving: a key/value takes at least 13 bytes (key length,
  // type, one byte of value), a tensor info at least 24 (name length, n_dims,
  // type, offset).
  if (n_kv > c.left() / 13)
    throw InputError(path_ + ": truncated: metadata count " + std::to_string(n_kv) + " cannot fit in the " +
                     std::to_string(c.left()) + " bytes left");
  if (n_tensors > c.left() / 24)
    throw InputError(path_ + ": truncated: tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
                     std::to_string(c.left()) + " bytes left");

  std::set<std::string> keys;
  metadata_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string ord = "metadata entry " + std::to_string(i);
    std::string key = c.string(ord + " key");
    const std::string what = "metadata '" + key + "'";
    if (!keys.insert(key).second) throw InputError(path_ + ": " + what + " appears twice");
    const uint32_t t = c.get<uint32_t>(what + " (value type)");
    if (!known_value_type(t)) throw InputError(path_ + ": " + what + " has unknown value type " + std::to_string(t));
    GgufValue v;
    read_value(c, static_cast<GgufValueType>(t), what, path_, 0, &v);
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const int64_t al = a->as_int(path_ + ": metadata 'general.alignment'");
    if (al <= 0 || al > (int64_t{1} << 30) || (al & (al - 1)) != 0)
      throw InputError(path_ + ": metadata 'general.alignment' is " + std::to_string(al) +
                       ", expected a power of two");
    alignment_ = static_cast<uint64_t>(al);
  }

  std::set<std::string> names;
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.string("tensor info " + std::to_string(i) + " name");
    const std::string where = path_ + ": tensor '" + t.name + "'";
    const std::string what = "tensor '" + t.name + "'";
    if (!names.insert(t.name).second) throw InputError(where + " appears twice");
    const uint32_t n_dims = c.get<uint32_t>(what + " n_dims");
    if (n_dims > kGgufMaxDims)
      throw InputError(where + ": n_dims " + std::to_string(n_dims) + " exceeds " + std::to_string(kGgufMaxDims));
    uint64_t numel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.get<uint64_t>(what + " dimension " + std::to_string(d));
      overflow |= dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
                  numel > static_cast<uint64_t>(INT64_MAX);
      t.ne.push_back(static_cast<int64_t>(dim & static_cast<uint64_t>(INT64_MAX)));
    }
    std::string dims;
    for (int64_t d : t.ne) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    if (overflow) throw InputError(where + ": dimensions [" + dims + "] have too many elements (overflow)");
    t.type = c.get<uint32_t>(what + " type");
    const GgmlTypeTraits* tt = ggml_type_traits(t.type);
    if (!tt) throw InputError(where + ": unknown tensor type id " + std::to_string(t.type));
    const int64_t row = t.ne.empty() ? 1 : t.ne[0];  // a 0-d tensor holds one element
    if (row % tt->block != 0)
      throw InputError(where + ": first dimension " + std::to_string(row) + " is not a multiple of " +
                       tt->name + "'s block size " + std::to_string(tt->block));
    if (__builtin_mul_overflow(numel / tt->block, static_cast<uint64_t>(tt->bytes), &t.nbytes))
      throw InputError(where + ": dimensions [" + dims + "] of " + tt->name + " overflow 64-bit byte sizes");
    t.offset = c.get<uint64_t>(what + " offset");
    if (t.offset % alignment_ != 0)
      throw InputError(where + ": data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                       std::to_string(alignment_));
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next alignment boundary; a file without
  // tensors (a vocabulary-only GGUF) may end before it.
  data_start_ = align_up(c.pos(), alignment_);
  if (tensors_.empty()) return;
  if (data_start_ > file_size_)
    throw InputError(path_ + ": truncated: the data section would start at byte " + std::to_string(data_start_) +
                     ", beyond the end of the " + std::to_string(file_size_) + "-byte file");
  const uint64_t data_size = file_size_ - data_start_;
  std::vector<std::size_t> order(tensors_.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    GgufTensorInfo& t = tensors_[i];
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      throw InputError(path_ + ": tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                       std::to_string(t.nbytes) + ") runs beyond the " + std::to_string(data_size) +
                       "-byte data section (file truncated?)");
    t.offset += data_start_;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return tensors_[a].offset < tensors_[b].offset;
  });
  const GgufTensorInfo* prev = nullptr;
  for (std::size_t i : order) {
    const GgufTensorInfo& t = tensors_[i];
    if (t.nbytes == 0) continue;
    if (prev && t.offset < prev->offset + prev->nbytes)
      throw InputError(path_ + ": tensor '" + t.name + "' overlaps tensor '" + prev->name + "' in the data section");
    prev = &t;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

int64_t GgufFile::meta_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw InputError(path_ + ": missing metadata '" + key + "'");
  return v->as_int(path_ + ": metadata '" + key + "'");
}

int64_t GgufFile::meta_int(const std::string& key, int64_t fallback) const {
  return find(key) ? meta_int(key) : fallback;
}

double GgufFile::meta_double(const std::string& key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_double(path_ + ": metadata '" + key + "'") : fallback;
}

bool GgufFile::meta_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool(path_ + ": metadata '" + key + "'") : fallback;
}

std::string GgufFile::meta_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw InputError(path_ + ": missing metadata '" + key + "'");
  return v->as_string(path_ + ": metadata '" + key + "'");
}

std::string GgufFile::meta_string(const std::string& key, const std::string& fallback) const {
  return find(key) ? meta_string(key) : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const void* GgufFile::data(const GgufTensorInfo& t) const {
  return file_.data() + t.offset;
}

std::vector<float> GgufFile::read_f32(const GgufTensorInfo& t) const {
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  gguf_dequantize(t.type, data(t), out.data(), t.numel(), path_ + ": tensor '" + t.name + "'");
  return out;
}

}  // namespace streamq
