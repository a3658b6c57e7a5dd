// safetensors reading: one file validated entry by entry and mmapped, and a
// model directory (single file or index + shards, shards confined to the dir).
// The writer lives in safetensors_writer.cpp.
#include "io/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "src/core/error.h"
#include "io/file/file_util.h"

namespace streamq {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at open: no overflow, no negatives
  return n;
}

namespace {

// Reads a non-negative JSON integer; nlohmann stores 12 as unsigned, -1 as
// integer and 1.0 as float, and only the first is acceptable here.
bool json_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

std::string shape_text(const json& shape) { return shape.dump(); }

// Parses one tensor entry into `t` (offsets still relative to the data start).
void parse_entry(const std::string& where, const json& e, uint64_t data_size, TensorInfo* t,
                 uint64_t* begin_out, uint64_t* end_out) {
  if (!e.is_object()) throw InputError(where + ": entry is " + e.type_name() + ", expected an object");
  const auto dt = e.find("dtype");
  if (dt == e.end()) throw InputError(where + ": missing field 'dtype'");
  if (!dt->is_string()) throw InputError(where + ": 'dtype' is " + dt->type_name() + ", expected a string");
  if (!dtype_from_name(dt->get<std::string>(), &t->dtype))
    throw InputError(where + ": unknown dtype '" + dt->get<std::string>() +
                     "' (supported: F32, F16, BF16, F64, I32, I16, I8, U8)");

  const auto sh = e.find("shape");
  if (sh == e.end()) throw InputError(where + ": missing field 'shape'");
  if (!sh->is_array()) throw InputError(where + ": 'shape' is " + sh->type_name() + ", expected an array");
  uint64_t numel = 1;
  for (const json& d : *sh) {
    uint64_t dim = 0;
    if (!json_u64(d, &dim) || dim > static_cast<uint64_t>(INT64_MAX))
      throw InputError(where + ": shape " + shape_text(*sh) + " has a dimension that is not a non-negative integer");
    if (__builtin_mul_overflow(numel, dim, &numel) || numel > static_cast<uint64_t>(INT64_MAX))
      throw InputError(where + ": shape " + shape_text(*sh) + " has too many elements (overflow)");
    t->shape.push_back(static_cast<int64_t>(dim));
  }
  if (__builtin_mul_overflow(numel, dtype_size(t->dtype), &t->nbytes))
    throw InputError(where + ": shape " + shape_text(*sh) + " times " + dtype_name(t->dtype) +
                     " size overflows 64 bits");

  const auto off = e.find("data_offsets");
  if (off == e.end()) throw InputError(where + ": missing field 'data_offsets'");
  uint64_t begin = 0, end = 0;
  if (!off->is_array() || off->size() != 2 || !json_u64((*off)[0], &begin) || !json_u64((*off)[1], &end))
    throw InputError(where + ": data_offsets " + off->dump() + " is not a pair of non-negative integers");
  const std::string offs = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end) throw InputError(where + ": " + offs + " begin after end");
  if (end - begin != t->nbytes)
    throw InputError(where + ": " + offs + " hold " + std::to_string(end - begin) + " bytes but shape " +
                     shape_text(*sh) + " of " + dtype_name(t->dtype) + " needs " + std::to_string(t->nbytes));
  if (end > data_size)
    throw InputError(where + ": " + offs + " end beyond data size " + std::to_string(data_size) +
                     " (file truncated?)");
  *begin_out = begin;
  *end_out = end;
}

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->file_.open(path);
  f->file_size_ = f->file_.size();
  if (f->file_size_ < 8)
    throw InputError(path + ": file is " + std::to_string(f->file_size_) +
                     " bytes, too short for the 8-byte header length (empty or truncated?)");
  // Everything below reads through the mapping; the header length is checked
  // against the file size before anything is allocated for the header.
  const auto* bytes = f->file_.data();
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len == 0) throw InputError(path + ": header length is 0");
  if (header_len > kMaxSafetensorsHeaderBytes)
    throw InputError(path + ": header length " + std::to_string(header_len) + " exceeds the " +
                     std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit (not a safetensors file?)");
  if (header_len > f->file_size_ - 8)
    throw InputError(path + ": header length " + std::to_string(header_len) + " runs beyond file size " +
                     std::to_string(f->file_size_) + " (file truncated?)");
  const uint64_t data_start = 8 + header_len;
  f->data_start_ = data_start;
  const uint64_t data_size = f->file_size_ - data_start;

  // nlohmann keeps the last of duplicate keys; a callback sees every top-level
  // key (depth 1) so a file naming one tensor twice is caught instead.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      if (!seen.insert(parsed.get<std::string>()).second) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header;
  const char* hbegin = reinterpret_cast<const char*>(bytes + 8);
  try {
    header = json::parse(hbegin, hbegin + header_len, on_event);
  } catch (const json::exception& e) {
    throw InputError(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw InputError(path + ": header is JSON " + header.type_name() + ", expected an object");
  if (!duplicate.empty()) throw InputError(path + ": tensor '" + duplicate + "' appears twice in the header");

  struct Span { uint64_t begin, end; std::size_t idx; };
  std::vector<Span> spans;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw InputError(path + ": __metadata__ is " + value.type_name() + ", expected an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw InputError(path + ": __metadata__ '" + mk + "' is " + mv.type_name() + ", expected a string");
        f->metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    t.name = key;
    uint64_t begin = 0, end = 0;
    parse_entry(path + ": tensor '" + key + "'", value, data_size, &t, &begin, &end);
    t.offset = data_start + begin;
    spans.push_back({begin, end, f->tensors_.size()});
    f->index_[key] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }

  // Overlap check: after sorting by begin, each tensor must end before the next
  // starts. Gaps are tolerated (the Rust reader is stricter; nothing here needs it).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (std::size_t i = 1; i < spans.size(); ++i) {
    const Span& a = spans[i - 1];
    const Span& b = spans[i];
    if (b.begin < a.end)
      throw InputError(path + ": tensor '" + f->tensors_[b.idx].name + "' data_offsets [" + std::to_string(b.begin) +
                       ", " + std::to_string(b.end) + "] overlap tensor '" + f->tensors_[a.idx].name + "' [" +
                       std::to_string(a.begin) + ", " + std::to_string(a.end) + "]");
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const void* SafetensorsFile::data(const TensorInfo& t) const {
  return file_.data() + t.offset;
}

uint64_t SafetensorsFile::release(const std::vector<const TensorInfo*>& tensors) const {
  if (tensors.empty() || !file_.data()) return 0;
  std::set<const TensorInfo*> released;
  for (const TensorInfo* t : tensors) {
    if (find(t->name) != t)
      throw InternalError(path_ + ": release of tensor '" + t->name + "', which is not in this file");
    released.insert(t);
  }
  // Byte-holding tensors in file order; runs of released ones between kept
  // ones (or the header) are advised, minus the edge pages they share.
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : tensors_)
    if (t.nbytes > 0) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  auto down = [&](uint64_t v) { return v / page * page; };
  auto up = [&](uint64_t v) { return (v + page - 1) / page * page; };
  uint64_t advised = 0, kept_end = data_start_;
  for (std::size_t i = 0; i < order.size();) {
    if (!released.count(order[i])) {
      kept_end = order[i]->offset + order[i]->nbytes;
      ++i;
      continue;
    }
    const uint64_t run_begin = order[i]->offset;
    uint64_t run_end = run_begin;
    for (; i < order.size() && released.count(order[i]); ++i) run_end = order[i]->offset + order[i]->nbytes;
    const uint64_t next_kept = i < order.size() ? order[i]->offset : up(file_size_);
    const uint64_t begin = std::max(down(run_begin), up(kept_end));
    const uint64_t end = std::min(up(run_end), down(next_kept));
    if (end <= begin) continue;
    auto* addr = const_cast<unsigned char*>(file_.data()) + begin;
    if (::madvise(addr, end - begin, MADV_DONTNEED) != 0)
      throw InternalError(path_ + ": madvise(MADV_DONTNEED) of bytes [" + std::to_string(begin) + ", " +
                          std::to_string(end) + ") failed: " + std::strerror(errno));
    advised += end - begin;
  }
  return advised;
}

uint64_t SafetensorsFile::read_ahead(const std::vector<const TensorInfo*>& tensors) const {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) in the file
  for (const TensorInfo* t : tensors) {
    if (find(t->name) != t)
      throw InternalError(path_ + ": read-ahead of tensor '" + t->name + "', which is not in this file");
    if (t->nbytes > 0) ranges.emplace_back(t->offset, t->offset + t->nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t requested = 0;
  for (std::size_t i = 0; i < ranges.size();) {
    auto [begin, end] = ranges[i];
    for (++i; i < ranges.size() && ranges[i].first <= end; ++i) end = std::max(end, ranges[i].second);
    if (!file_.read_ahead(begin, end - begin)) return 0;
    requested += end - begin;
  }
  return requested;
}

// ---- model directory

namespace {

// A shard name from an index must stay inside the model directory: a relative
// path without `..`, whose real path (after symlinks) is under the dir's.
std::string resolve_shard(const std::string& index_path, const std::string& dir_real, const std::string& dir,
                          const std::string& shard) {
  const std::string where = index_path + ": shard '" + shard + "'";
  if (shard.empty()) throw InputError(where + ": empty file name");
  const fs::path p(shard);
  if (p.is_absolute()) throw InputError(where + ": absolute paths are not allowed");
  for (const auto& part : p)
    if (part == "..") throw InputError(where + ": '..' components are not allowed");
  const std::string full = dir + "/" + shard;
  char* real = ::realpath(full.c_str(), nullptr);
  if (!real) throw InputError(where + ": cannot open " + full + ": " + std::strerror(errno));
  const std::string resolved(real);
  std::free(real);
  if (resolved.compare(0, dir_real.size() + 1, dir_real + "/") != 0)
    throw InputError(where + ": resolves to " + resolved + ", outside the model directory");
  return full;
}

}  // namespace

std::unique_ptr<SafetensorsModel> SafetensorsModel::open(const std::string& dir) {
  auto m = std::make_unique<SafetensorsModel>();
  m->dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(dir + ": model directory does not exist or is not a directory");

  const std::string index_path = dir + "/model.safetensors.index.json";
  std::vector<std::pair<std::string, std::string>> expected;  // (tensor, shard) from the index
  std::map<std::string, std::size_t> shard_slot;
  if (fs::exists(index_path, ec)) {
    json index;
    try {
      index = json::parse(read_file(index_path));
    } catch (const json::exception& e) {
      throw InputError(index_path + ": not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw InputError(index_path + ": expected an object with a 'weight_map' object");
    char* real = ::realpath(dir.c_str(), nullptr);
    if (!real) throw InputError(dir + ": cannot resolve directory: " + std::strerror(errno));
    const std::string dir_real(real);
    std::free(real);
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string())
        throw InputError(index_path + ": weight_map '" + tensor + "' is " + shard.type_name() + ", expected a file name");
      const std::string name = shard.get<std::string>();
      if (!shard_slot.count(name)) {
        const std::string full = resolve_shard(index_path, dir_real, dir, name);
        shard_slot[name] = m->files_.size();
        m->files_.push_back(SafetensorsFile::open(full));
      }
      expected.emplace_back(tensor, name);
    }
    if (m->files_.empty()) throw InputError(index_path + ": weight_map is empty");
  } else if (fs::exists(dir + "/model.safetensors", ec)) {
    m->files_.push_back(SafetensorsFile::open(dir + "/model.safetensors"));
  } else {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path().filename().string());
    if (ec) throw InputError(dir + ": cannot list directory: " + ec.message());
    std::sort(found.begin(), found.end());
    if (found.empty())
      throw InputError(dir + ": no model.safetensors, model.safetensors.index.json or other *.safetensors file");
    if (found.size() > 1) {
      std::string names;
      for (const auto& n : found) names += (names.empty() ? "" : ", ") + n;
      throw InputError(dir + ": " + std::to_string(found.size()) + " *.safetensors files (" + names +
                       ") but no model.safetensors.index.json saying how they fit together");
    }
    m->files_.push_back(SafetensorsFile::open(dir + "/" + found[0]));
  }

  for (std::size_t i = 0; i < m->files_.size(); ++i) {
    for (const TensorInfo& t : m->files_[i]->tensors()) {
      const auto [it, inserted] = m->owner_.emplace(t.name, i);
      if (!inserted)
        throw InputError(dir + ": tensor '" + t.name + "' appears in both " + m->files_[it->second]->path() +
                         " and " + m->files_[i]->path());
    }
  }
  for (const auto& [tensor, shard] : expected) {
    if (!m->files_[shard_slot[shard]]->find(tensor))
      throw InputError(index_path + ": tensor '" + tensor + "' is mapped to " + shard + " but that file lacks it");
  }
  return m;
}

std::vector<std::string> SafetensorsModel::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(owner_.size());
  for (const auto& [name, idx] : owner_) names.push_back(name);
  return names;  // std::map iterates sorted
}

bool SafetensorsModel::has(const std::string& name) const { return owner_.count(name) != 0; }

const SafetensorsFile& SafetensorsModel::file_of(const std::string& name) const {
  const auto it = owner_.find(name);
  if (it == owner_.end()) throw InputError(dir_ + ": tensor '" + name + "' not found in the model");
  return *files_[it->second];
}

const TensorInfo& SafetensorsModel::info(const std::string& name) const {
  return *file_of(name).find(name);
}

std::vector<float> SafetensorsModel::read_f32(const std::string& name, int64_t expect_numel) const {
  const SafetensorsFile& f = file_of(name);
  const TensorInfo& t = *f.find(name);
  const std::string where = f.path() + ": tensor '" + name + "'";
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && t.dtype != DType::F64)
    throw InputError(where + ": dtype " + dtype_name(t.dtype) + " is not a floating type (F32/F16/BF16/F64)");
  if (expect_numel >= 0 && t.numel() != expect_numel)
    throw InputError(where + ": has " + std::to_string(t.numel()) + " elements, expected " +
                     std::to_string(expect_numel));
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  convert_to_f32(t.dtype, f.data(t), out.data(), out.size());
  return out;
}

std::map<const SafetensorsFile*, std::vector<const TensorInfo*>> SafetensorsModel::by_file(
    const std::vector<std::string>& names) const {
  std::map<const SafetensorsFile*, std::vector<const TensorInfo*>> out;
  for (const std::string& name : names) {
    const SafetensorsFile& f = file_of(name);
    out[&f].push_back(f.find(name));
  }
  return out;
}

uint64_t SafetensorsModel::release(const std::vector<std::string>& names) const {
  uint64_t advised = 0;
  for (const auto& [f, tensors] : by_file(names)) advised += f->release(tensors);
  return advised;
}

uint64_t SafetensorsModel::read_ahead(const std::vector<std::string>& names) const {
  uint64_t requested = 0;
  for (const auto& [f, tensors] : by_file(names)) requested += f->read_ahead(tensors);
  return requested;
}

uint64_t SafetensorsModel::total_bytes() const {
  uint64_t total = 0;
  for (const auto& f : files_)
    for (const TensorInfo& t : f->tensors()) total += t.nbytes;
  return total;
}

}  // namespace streamq
