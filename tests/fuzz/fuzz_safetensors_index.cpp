// Fuzz target: model.safetensors.index.json through SafetensorsModel::open,
// in a directory holding small valid shards (a.safetensors, b.safetensors,
// sub/c.safetensors, a symlink to a file outside) next to outside.safetensors,
// which no index may reach: a tensor of it showing up in an opened model is a
// confinement failure and aborts. Every tensor is then read as float32.
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "io/formats/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

namespace {

// One shard of one tensor, written once per process.
void write_shard(const std::string& dir, const std::string& base, const std::string& tensor, DType dtype,
                 std::vector<int64_t> shape) {
  std::filesystem::create_directories(dir);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  std::vector<unsigned char> bytes(static_cast<size_t>(numel) * dtype_size(dtype), 0x3c);
  SafetensorsWriter w(dir, {{tensor, dtype, shape}}, {{"format", "pt"}}, UINT64_MAX, base);
  w.write(tensor, bytes.data(), bytes.size());
  w.finish();
}

// The fixed part of the scratch directory: model/ holds what an index may
// name; outside.safetensors holds the tensor it must never reach.
std::string model_dir() {
  static const std::string dir = [] {
    const std::string root = fuzz::scratch_dir();
    const std::string m = root + "/model";
    write_shard(m, "a", "a.weight", DType::F16, {2, 3});
    write_shard(m, "b", "b.weight", DType::BF16, {4});
    write_shard(m + "/sub", "c", "c.weight", DType::F32, {2});
    write_shard(root, "outside", "outside.secret", DType::F32, {1});
    std::filesystem::create_symlink("../outside.safetensors", m + "/link.safetensors");
    return m;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = model_dir();
  fuzz::write_scratch("model/model.safetensors.index.json", {reinterpret_cast<const char*>(data), size});
  fuzz::expect_input_errors([&] {
    const auto m = SafetensorsModel::open(dir);
    if (m->has("outside.secret")) {
      std::fprintf(stderr, "fuzz: the index reached a shard outside %s\n", dir.c_str());
      std::abort();
    }
    for (const std::string& name : m->tensor_names()) {
      const std::vector<float> v = m->read_f32(name);
      if (static_cast<int64_t>(v.size()) != m->info(name).numel()) std::abort();
    }
    m->read_ahead(m->tensor_names());
    m->release(m->tensor_names());
  });
  return 0;
}
