// The --device flags of quantize, eval and layer, and the backend they open:
// cpu (host memory, the reference path), cuda (the CUDA backend on a
// budgeted device pool; a build with nvcc only) or emulated (a CPU-executed
// device with its own address space and a hard capacity,
// kernels/emulated/emulated_backend.h).
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "kernels/backend.h"
#include "src/model/resident_block.h"
#include "tools/cli_common.h"

namespace streamq::cli {

struct DeviceFlags {
  std::string device = "auto";
  std::string gpu_mem_limit;  // "" = the device's free memory minus a margin (cuda); required for emulated
  double emulated_pcie_gbps = 0;
  std::string sweep_precision = "f32";
  std::string factor_precision = "f32";
  std::string device_weights = "f32";
};

// Adds --device, --gpu-mem-limit, --emulated-pcie-gbps, --device-weights and
// (with_sweep) --sweep-precision and --factor-precision to opts.
void add_device_flags(po::options_description& opts, DeviceFlags* flags, bool with_sweep);

// The opened device: its backend (a CUDA one owns its pool).
class OpenedDevice {
 public:
  OpenedDevice();
  ~OpenedDevice();
  OpenedDevice(OpenedDevice&&) noexcept;
  Backend& backend() { return *backend_; }
  SweepPrecision sweep_precision = SweepPrecision::F32;
  FactorPrecision factor_precision = FactorPrecision::F32;
  DeviceWeights device_weights = DeviceWeights::F32;  // --device-weights (F32 on cpu: the flag is refused there)
  // "cpu", "emulated (capacity 2.0 GiB, PCIe 25 GB/s)", "cuda: NVIDIA H100 ... (pool 78.2 GiB)".
  std::string description;

 private:
  friend OpenedDevice open_device(const DeviceFlags& flags, const po::variables_map& vm);
  std::unique_ptr<Backend> backend_;
};

// Opens the device the flags name ("auto": cuda when a usable device
// answers, else cpu). InputError (exit 2) naming the flag for a flag that
// means nothing on the chosen device, an emulated device without
// --gpu-mem-limit, cuda in a build without it (no libstreamq_cuda.so next to the binary) or
// on a machine without a GPU. The CUDA libraries are loaded only here, only
// for cuda, or for auto when an NVIDIA driver is installed.
OpenedDevice open_device(const DeviceFlags& flags, const po::variables_map& vm);

}  // namespace streamq::cli
