// Fuzz target: one .safetensors file (header JSON, dtypes, shapes, offsets)
// through SafetensorsFile::open, then every tensor's bytes read, released and
// read ahead, so a range the validation let through that is not inside the
// mapping shows as an ASan or SEGV report.
#include <vector>

#include "io/formats/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::write_scratch("model.safetensors", {reinterpret_cast<const char*>(data), size});
  fuzz::expect_input_errors([&] {
    const auto f = SafetensorsFile::open(path);
    std::vector<const TensorInfo*> all;
    for (const TensorInfo& t : f->tensors()) {
      fuzz::touch(f->data(t), t.nbytes);
      if (f->find(t.name) != &t) std::abort();  // names are unique and indexed
      all.push_back(&t);
    }
    f->release(all);
    f->read_ahead(all);
  });
  return 0;
}
