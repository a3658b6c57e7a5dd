// safetensors reading (single file or sharded directory, fully validated,
// zero-copy through mmap) and streaming, atomic writing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "io/file/mapped_file.h"

namespace streamq {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset of the data in the file
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// Largest header we accept before allocating anything for it (safetensors' own
// reader uses 100 MB).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// One .safetensors file, opened and validated: JSON well-formed, every entry has
// a known dtype, a shape whose element count times dtype size neither overflows
// nor differs from its data_offsets, offsets within the file and not
// overlapping. Every failure throws InputError naming the file (and tensor).
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Zero-copy view of the tensor's bytes (the file is mmapped read-only).
  const void* data(const TensorInfo& t) const;
  // Tells the kernel these tensors' mapped pages are not needed for now
  // (madvise MADV_DONTNEED), so they stop counting in this process's RSS.
  // Pages that also hold bytes of other tensors (or the header) at the edges
  // of a range are kept. Reading the tensors later is safe: the mapping is
  // private and read-only, so the pages fault back in from the file. Returns
  // the bytes advised.
  uint64_t release(const std::vector<const TensorInfo*>& tensors) const;
  // Starts reading these tensors' bytes into the page cache (MappedFile::
  // read_ahead, adjacent tensors merged into one request): the next block's
  // weights load while this one computes. Returns the bytes requested, 0 when
  // the file system refuses read-ahead (the later load then reads the disk).
  uint64_t read_ahead(const std::vector<const TensorInfo*>& tensors) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  MappedFile file_;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length: the header's pages are never released
};

// A model directory: `model.safetensors`, or `model.safetensors.index.json`
// with its shards (each shard name must resolve inside the directory: no
// absolute paths, no `..`, no symlink escape). Any other single *.safetensors
// file is accepted when it is the only one.
class SafetensorsModel {
 public:
  static std::unique_ptr<SafetensorsModel> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> tensor_names() const;  // sorted
  bool has(const std::string& name) const;
  // Throws InputError naming the directory and tensor when absent.
  const TensorInfo& info(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  // The tensor converted to float32 (F32/F16/BF16/F64 sources); throws InputError
  // when the element count is not `expect_numel` (pass -1 to skip the check).
  std::vector<float> read_f32(const std::string& name, int64_t expect_numel = -1) const;
  // Sum of all tensors' bytes.
  uint64_t total_bytes() const;
  // SafetensorsFile::release for named tensors, each in its own file;
  // InputError when one is absent. Returns the bytes advised.
  uint64_t release(const std::vector<std::string>& names) const;
  // SafetensorsFile::read_ahead for named tensors, each in its own file;
  // InputError when one is absent. Returns the bytes requested.
  uint64_t read_ahead(const std::vector<std::string>& names) const;

 private:
  // Named tensors grouped by the file that holds them; InputError when one is absent.
  std::map<const SafetensorsFile*, std::vector<const TensorInfo*>> by_file(
      const std::vector<std::string>& names) const;
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::size_t> owner_;  // tensor name -> index in files_
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

// Writes a set of tensors, planned up front, into `out_dir` as
// `<base>.safetensors` or, when they exceed `max_shard_bytes`,
// `<base>-0000i-of-0000n.safetensors` plus `<base>.safetensors.index.json`.
// Tensors are written one at a time, in any order (pwrite at planned offsets),
// so the whole model never sits in memory. Files are written under temporary
// names and only fsynced and renamed into place by finish(); a writer destroyed
// before finish() removes its temporaries.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string out_dir, std::vector<TensorSpec> plan,
                    std::map<std::string, std::string> metadata,
                    uint64_t max_shard_bytes = 5ull << 30, std::string base = "model");
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Raw bytes in the planned dtype; nbytes must match the plan.
  void write(const std::string& name, const void* bytes, uint64_t nbytes);
  // Floats converted to the planned (floating) dtype.
  void write_f32(const std::string& name, const float* values, int64_t numel);
  // A tensor written in consecutive parts (row panels of a tensor too large
  // to hold whole): values for elements [first, first + numel), each part
  // starting where the last ended; the tensor counts as written once its
  // last element is. InputError for a part out of order or past the end.
  void write_f32_part(const std::string& name, int64_t first, const float* values, int64_t numel);
  // Checks every planned tensor was written, fsyncs, renames, writes the index
  // (when sharded) and fsyncs the directory.
  void finish();
  // Final file names (relative to out_dir), in shard order.
  std::vector<std::string> file_names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace streamq
