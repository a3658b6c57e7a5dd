// `streamq inspect`: a model's config and tensor table.
#include <cstdio>
#include <iostream>

#include "tools/cli_common.h"
#include "src/model/model.h"

namespace streamq::cli {

int run_inspect(const std::vector<std::string>& args) {
  std::string dir;
  po::options_description opts("inspect flags");
  opts.add_options()("help,h", "show this help")("model", po::value(&dir), "model directory");
  po::variables_map vm;
  if (!parse("inspect", "--model DIR", opts, args, &vm)) return 0;
  require(vm, {"model"});
  const Model model(dir);  // validates config and every tensor's shape
  const ModelConfig& c = model.config();
  std::printf("model %s\narchitecture %s\nhidden %lld  intermediate %lld  layers %lld\n", dir.c_str(),
              c.arch_name.c_str(), (long long)c.hidden, (long long)c.intermediate, (long long)c.layers);
  std::printf("heads %lld  kv_heads %lld  head_dim %lld  vocab %lld  max_pos %lld\n", (long long)c.heads,
              (long long)c.kv_heads, (long long)c.head_dim, (long long)c.vocab, (long long)c.max_pos);
  std::printf("rms_eps %g  rope_theta %g  rope_scaling %s  tied %s  attn_bias %s  qk_norm %s\n", c.rms_eps,
              c.rope_theta, c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type.c_str(),
              c.tie_word_embeddings ? "yes" : "no", c.attention_bias ? "yes" : "no", c.qk_norm ? "yes" : "no");
  const SafetensorsModel& st = model.tensors();
  std::printf("\n%-56s %-5s %-16s %12s  file\n", "tensor", "dtype", "shape", "bytes");
  for (const auto& name : st.tensor_names()) {
    const TensorInfo& t = st.info(name);
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    shape += "]";
    std::string file = st.file_of(name).path();
    file = file.substr(file.find_last_of('/') + 1);
    std::printf("%-56s %-5s %-16s %12llu  %s\n", name.c_str(), dtype_name(t.dtype), shape.c_str(),
                (unsigned long long)t.nbytes, file.c_str());
  }
  std::printf("\n%zu tensors, %.2f MiB\n", st.tensor_names().size(), st.total_bytes() / 1048576.0);
  return 0;
}

}  // namespace streamq::cli
