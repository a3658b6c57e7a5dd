// Which CUDA devices this process can use, asked without ever throwing, so
// callers (and the GPU test runner) can fall back to the CPU or skip.
#pragma once

#include <string>

namespace streamq {

// Number of usable CUDA devices; 0 on any error (no driver, a driver too old
// for this runtime, no device), never throws.
int cuda_device_count();
// Why cuda_device_count() is 0 (the CUDA error text, or "no CUDA device
// found"); empty when a device is available.
std::string cuda_unavailable_reason();
// One line per device: index, name, compute capability, memory, plus the
// driver and runtime versions; or the unavailable reason.
std::string cuda_device_description();

}  // namespace streamq
