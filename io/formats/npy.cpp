// .npy parsing and writing.
#include "io/formats/npy.h"

#include <charconv>
#include <cstring>
#include <regex>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/safetensors.h"

namespace streamq {
namespace {

const char* npy_descr(DType t) {
  switch (t) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I32: return "<i4";
    case DType::U8: return "|u1";
    default: return nullptr;
  }
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw InputError(path + ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw InputError(path + ": truncated .npy header");
    uint32_t len;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  } else {
    throw InputError(path + ": unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size()) throw InputError(path + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  NpyArray a;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'")))
    throw InputError(path + ": .npy header has no descr");
  const std::string descr = m[1];
  if (descr == "<f4") a.dtype = DType::F32;
  else if (descr == "<f8") a.dtype = DType::F64;
  else if (descr == "<i4") a.dtype = DType::I32;
  else if (descr == "|u1") a.dtype = DType::U8;
  else throw InputError(path + ": .npy dtype '" + descr + "' not supported (use float32 or float64)");
  const bool fortran = std::regex_search(header, std::regex("'fortran_order'\\s*:\\s*True"));
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")))
    throw InputError(path + ": .npy header has no shape");
  const std::string dims = m[1];
  const std::regex number("\\d+");
  // Each dimension and their product checked: a shape past 64 bits would
  // otherwise wrap into a small byte count that the size check accepts.
  uint64_t numel = 1;
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    const std::string text = it->str();
    int64_t d = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (ec != std::errc() || ptr != text.data() + text.size() || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
      throw InputError(path + ": .npy shape (" + dims + ") is too large");
    a.shape.push_back(d);
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(a.dtype)), &nbytes))
    throw InputError(path + ": .npy shape (" + dims + ") is too large");
  const size_t data_at = offset + header_len;
  if (bytes.size() - data_at != nbytes)
    throw InputError(path + ": .npy data is " + std::to_string(bytes.size() - data_at) + " bytes, shape needs " +
                     std::to_string(nbytes));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_at), bytes.end());
  if (fortran && a.shape.size() == 2) {
    const int64_t r = a.shape[0], c = a.shape[1];
    const size_t es = dtype_size(a.dtype);
    std::vector<uint8_t> t(a.data.size());
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) std::memcpy(&t[(i * c + j) * es], &a.data[(j * r + i) * es], es);
    a.data.swap(t);
  } else if (fortran && a.shape.size() > 2) {
    throw InputError(path + ": Fortran-order arrays of more than 2 dimensions are not supported");
  }
  return a;
}

std::vector<double> read_matrix_f64(const std::string& path, std::vector<int64_t>* shape) {
  std::vector<double> out;
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    auto f = SafetensorsFile::open(path);
    if (f->tensors().size() != 1)
      throw InputError(path + ": expected exactly one tensor, found " + std::to_string(f->tensors().size()));
    const TensorInfo& t = f->tensors()[0];
    *shape = t.shape;
    std::vector<float> tmp(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::F64) {
      out.resize(tmp.size());
      if (t.nbytes > 0) std::memcpy(out.data(), f->data(t), t.nbytes);  // an empty vector's data() may be null
      return out;
    }
    convert_to_f32(t.dtype, f->data(t), tmp.data(), tmp.size());
    return std::vector<double>(tmp.begin(), tmp.end());
  }
  const NpyArray a = read_npy(path);
  *shape = a.shape;
  const size_t n = a.data.size() / dtype_size(a.dtype);
  out.resize(n);
  if (a.dtype == DType::F64) {
    // A shape with a 0 in it has no data: memcpy must not see a null pointer (fuzz_npy, UBSan).
    if (!a.data.empty()) std::memcpy(out.data(), a.data.data(), a.data.size());
  } else if (a.dtype == DType::F32) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, a.data.data() + 4 * i, 4);
      out[i] = v;
    }
  } else {
    throw InputError(path + ": expected a float32 or float64 array");
  }
  return out;
}

void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data) {
  const char* descr = npy_descr(dtype);
  if (!descr) throw InternalError(std::string("write_npy: unsupported dtype ") + dtype_name(dtype));
  std::string dims;
  uint64_t numel = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ",";
    numel *= static_cast<uint64_t>(d);
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so the data starts on a 64-byte boundary, header ends with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(data), numel * dtype_size(dtype));
  atomic_write_file(path, out);
}

}  // namespace streamq
