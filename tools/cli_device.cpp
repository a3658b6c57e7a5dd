// --device: choosing and opening the backend the pipeline runs on.
#include "tools/cli_device.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "kernels/cuda/cuda_plugin.h"
#include "kernels/emulated/emulated_backend.h"
#include "scheduler/memory_budget.h"
#include "src/core/error.h"

namespace streamq::cli {

OpenedDevice::OpenedDevice() = default;
OpenedDevice::~OpenedDevice() = default;
OpenedDevice::OpenedDevice(OpenedDevice&&) noexcept = default;

void add_device_flags(po::options_description& opts, DeviceFlags* f, bool with_sweep) {
  opts.add_options()
      ("device", po::value(&f->device)->default_value("auto"),
       "where the forward passes, statistics and GPTQ sweep run: cpu (host memory; the reference path), cuda "
       "(the GPU; builds with nvcc), emulated (a CPU-executed device with its own address space, a hard "
       "capacity and checked pointers: tests the device path without a GPU; needs --gpu-mem-limit), or auto "
       "(cuda when a usable device answers, else cpu)")
      ("gpu-mem-limit", po::value(&f->gpu_mem_limit),
       (std::string("device memory the job may hold at once (cuda, emulated): ") + kSizeGrammar +
        ". Default on cuda: the device's free memory minus 1 GiB; required on emulated (its capacity)")
           .c_str())
      ("emulated-pcie-gbps", po::value(&f->emulated_pcie_gbps)->default_value(0),
       "emulated only: host<->device copy bandwidth in GB/s (e.g. 25), so copies take the time they would "
       "over PCIe and overlap shows in traces; 0 = as fast as memcpy")
      ("device-weights", po::value(&f->device_weights)->default_value("f32"),
       "on a device (cuda, emulated): how a block's linear weights are held in device memory, f32 (the "
       "default) or bf16 (half the resident bytes; each linear is widened to a float32 scratch just before its "
       "GEMM, so the forwards run on bf16-rounded weights: exact for a bf16 model, a rounding of each weight "
       "otherwise; the quantized weights themselves are computed from the float32 originals). An error with "
       "--device cpu (it reads the host's float32 arrays in place: there is nothing to halve) and with "
       "`streamq layer` (it holds no block)");
  if (with_sweep)
    opts.add_options()
        ("sweep-precision", po::value(&f->sweep_precision)->default_value("f32"),
         "on a device (cuda, emulated): the GPTQ sweep's arithmetic, f32 (what a GPU runs fast; the default) "
         "or f64 (emulated only: cuda GPUs with 48 GB run float64 at 1/32-1/64 of float32). The Hessian's factor "
         "and compensation matrices are float64 on the device when their n x n buffers fit beside the block's "
         "weights (else on the host; the report's device.factor says where); LoaQ's target and the other "
         "methods' matrices stay float64 on the host; two-stage grids, free-min grids and the official variant "
         "sweep on the host in float64. Ignored by --device cpu, whose sweep is float64")
        ("factor-precision", po::value(&f->factor_precision)->default_value("f32"),
         "on a device (cuda, emulated): the arithmetic of the Hessian's factor and compensation matrices when "
         "they run there: f32 (the default: what the GPTQ papers' code runs; 32-64x faster than f64 on 48 GB "
         "cards such as RTX 6000 Ada, L40S, A6000, as fast on H100/A100; SmolLM2 GPTAQ perplexity equal to f64 "
         "within 0.04% over 3 seeds, bench/RESULTS.md) or f64 (the CPU path's arithmetic, whose bits the "
         "emulated device reproduces). The damping retries apply to both");
}

namespace {

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

bool given(const po::variables_map& vm, const char* flag) { return vm.count(flag) && !vm[flag].defaulted(); }

// libstreamq_cuda.so next to this binary (the build puts it there).
std::filesystem::path cuda_plugin_path() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path(".") : exe.parent_path()) / kCudaPluginFile;
}

// The plugin's table, loaded once per process and never unloaded (backends
// it made may live until exit); nullptr with *why set when it cannot load.
const CudaPlugin* load_cuda_plugin(std::string* why) {
  static const CudaPlugin* plugin = nullptr;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const auto path = cuda_plugin_path();
    if (!std::filesystem::exists(path)) {
      error = "this streamq was built without CUDA (no " + path.string() + "; nvcc was not found at build time)";
    } else if (void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL); lib == nullptr) {
      error = std::string("cannot load ") + path.string() + ": " + dlerror();
    } else if (auto* entry = reinterpret_cast<const CudaPlugin* (*)()>(dlsym(lib, kCudaPluginSymbol)); !entry) {
      error = path.string() + " has no " + kCudaPluginSymbol + " (not a streamq CUDA plugin)";
    } else if (entry()->abi != kCudaPluginAbi) {
      error = path.string() + " is from another streamq build (plugin ABI " + std::to_string(entry()->abi) +
              ", this binary " + std::to_string(kCudaPluginAbi) + "); rebuild";
    } else {
      plugin = entry();
    }
  }
  if (!plugin && why) *why = error;
  return plugin;
}

// Whether an NVIDIA driver is installed: without one no CUDA device can
// answer, and --device auto need not load the CUDA libraries to find out.
bool nvidia_driver_present() {
  return std::filesystem::exists("/proc/driver/nvidia/version") || std::filesystem::exists("/dev/nvidiactl");
}

}  // namespace

OpenedDevice open_device(const DeviceFlags& f, const po::variables_map& vm) {
  std::string kind = f.device;
  if (kind != "auto" && kind != "cpu" && kind != "cuda" && kind != "emulated")
    throw InputError("--device '" + kind + "': expected cpu, cuda, emulated or auto");
  const CudaPlugin* cuda = nullptr;
  if (kind == "auto") {
    kind = "cpu";
    if (nvidia_driver_present()) {
      std::string why;
      cuda = load_cuda_plugin(&why);
      if (cuda && cuda->device_count() > 0) kind = "cuda";
      else if (!cuda && why.find("built without CUDA") == std::string::npos)
        std::fprintf(stderr, "streamq: --device auto: an NVIDIA driver is present but %s; running on cpu\n",
                     why.c_str());
    }
  }
  if (given(vm, "emulated-pcie-gbps") && kind != "emulated")
    throw InputError("--emulated-pcie-gbps applies to --device emulated only (the device is " + kind + ")");
  if (f.emulated_pcie_gbps < 0) throw InputError("--emulated-pcie-gbps must be >= 0");
  if (given(vm, "gpu-mem-limit") && kind == "cpu")
    throw InputError("--gpu-mem-limit applies to --device cuda or emulated (the device is cpu; host memory is "
                     "--host-mem-limit's)");
  OpenedDevice d;
  if (f.sweep_precision == "f32") d.sweep_precision = SweepPrecision::F32;
  else if (f.sweep_precision == "f64") d.sweep_precision = SweepPrecision::F64;
  else throw InputError("--sweep-precision '" + f.sweep_precision + "': expected f32 or f64");
  if (f.factor_precision == "f32") d.factor_precision = FactorPrecision::F32;
  else if (f.factor_precision == "f64") d.factor_precision = FactorPrecision::F64;
  else throw InputError("--factor-precision '" + f.factor_precision + "': expected f32 or f64");
  if (given(vm, "factor-precision") && kind == "cpu")
    throw InputError("--factor-precision applies to --device cuda or emulated (the cpu factor is float64)");
  if (given(vm, "sweep-precision") && kind == "cpu")
    throw InputError("--sweep-precision applies to --device cuda or emulated (the cpu sweep is float64)");
  if (f.device_weights == "f32") d.device_weights = DeviceWeights::F32;
  else if (f.device_weights == "bf16") d.device_weights = DeviceWeights::Bf16;
  else throw InputError("--device-weights '" + f.device_weights + "': expected f32 or bf16");
  if (given(vm, "device-weights") && kind == "cpu")
    throw InputError("--device-weights applies to --device cuda or emulated (the cpu device reads the model's "
                     "float32 arrays in place)");
  const uint64_t limit = f.gpu_mem_limit.empty() ? 0 : parse_size(f.gpu_mem_limit, "--gpu-mem-limit");
  if (!f.gpu_mem_limit.empty() && limit == 0) throw InputError("--gpu-mem-limit must be more than 0 bytes");

  if (kind == "cpu") {
    d.backend_ = make_cpu_backend();
    d.description = "cpu";
    return d;
  }
  if (kind == "emulated") {
    if (f.gpu_mem_limit.empty())
      throw InputError("--device emulated needs --gpu-mem-limit (its capacity, e.g. --gpu-mem-limit 8GiB)");
    d.backend_ = make_emulated_backend({.memory_bytes = limit, .pcie_gbps = f.emulated_pcie_gbps});
    d.description = "emulated (capacity " + gib(limit) +
                    (f.emulated_pcie_gbps > 0 ? ", copies at " + std::to_string(f.emulated_pcie_gbps) + " GB/s"
                                              : std::string(", copies at memcpy speed")) +
                    ")";
    return d;
  }
  if (!cuda) {
    std::string why;
    cuda = load_cuda_plugin(&why);
    if (!cuda) throw InputError("--device cuda: " + why + "; use --device cpu or emulated");
  }
  if (cuda->device_count() == 0)
    throw InputError("--device cuda: no usable CUDA device (" + cuda->unavailable_reason() +
                     "); use --device cpu, or --device emulated to test the device path");
  if (d.sweep_precision == SweepPrecision::F64)
    throw InputError("--sweep-precision f64: the CUDA backend's sweep is float32 only (use f32, or --device cpu)");
  const uint64_t pool_bytes = limit > 0 ? limit : cuda->default_pool_limit();
  d.backend_ = cuda->open(pool_bytes);
  d.description = "cuda: " + cuda->device_description() + " (pool " + gib(pool_bytes) + ")";
  return d;
}

}  // namespace streamq::cli
