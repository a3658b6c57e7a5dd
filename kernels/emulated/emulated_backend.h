// `--device emulated`: a device executed on the CPU, so the pipeline's device
// path (explicit device memory, uploads, downloads, a budget) runs and is
// checked in CI on machines without a GPU. It has its own address space and a
// hard capacity (kernels/emulated/device_memory.h); every op checks, when it
// is queued, that each pointer it receives lies inside a live device
// allocation large enough for the extent the op touches, so a forgotten
// upload, a host pointer passed to a device op, a use after free or a short
// buffer is an immediate InternalError naming the op, the argument and the
// buffer, never a silent host read.
//
// Work is queued in order on three streams (compute, upload, download), as on
// CUDA streams, each executed by a thread of its own; an op's arguments are
// checked when it is queued (a bad one throws at the call, as on the CPU);
// synchronize() waits for every stream and rethrows the first error the
// queued work raised (later work was skipped), once. Events order the
// streams (Backend::record/wait/wait_host), and the device tracks that order
// as vector clocks: queueing work that uses a buffer another stream's queued
// work also uses, with no event between them, throws at once, naming the op,
// the argument and the buffer (a compute op reading a chunk whose upload it
// never waited for; an upload overwriting a buffer compute may still read).
// Copies have CUDA's contract for the host memory they touch: with pinned
// memory (Backend::alloc_pinned) they are asynchronous and the emulator
// enforces it: an upload's host source must stay unchanged until the copy
// ran (it is hashed when queued and checked when copied), and a download's
// host destination reads as 0xFF bytes (NaN) until its event has passed;
// with pageable memory (anything else) the call returns once the copy has
// run, as cudaMemcpyAsync does for pageable memory. Copies can be throttled to a stated bandwidth so overlap
// shows in traces. The arithmetic is the CPU kernels' (kernels/cpu), so
// results equal the CPU backend's bit for bit; the CUDA kernels themselves
// are checked separately on the CPU runtime (kernels/cuda_on_cpu). Timings
// mean nothing here beyond the copy throttle.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/backend.h"

namespace streamq {

struct EmulatedBackendOptions {
  // The device's memory: both its capacity and the pool's limit (what
  // --gpu-mem-limit sets; there is no default for an emulated device).
  uint64_t memory_bytes = 0;
  // Host<->device copy bandwidth in GB/s (1e9 bytes/s); 0 = as fast as memcpy.
  double pcie_gbps = 0;
};

std::unique_ptr<Backend> make_emulated_backend(const EmulatedBackendOptions& options);

// While paused, queued work waits, as a CUDA stream waits on an event the
// host has not recorded yet: lets tests make "the copy has not run yet"
// deterministic (with pinned host memory: a copy from or to pageable memory
// returns only once it has run, so it would wait for the unpause). `be` must
// come from make_emulated_backend (InternalError otherwise).
void emulated_set_paused(Backend& be, bool paused);

}  // namespace streamq
