// One pass of a block over its activation chunks, declared as a task graph
// (scheduler/task_graph.h) rather than a loop, so that host I/O, the
// host<->device copies and compute overlap. For each item (a chunk of one
// flow), in order:
//
//   read (store get into a host slot) -> upload (upload stream)
//     -> compute (compute stream, items in order) -> download (download
//     stream) -> write (store put from the host slot)
//
// with `slots` chunk buffers on the host and on the device, one per item in
// flight, each held from its item's read to its write (on a device the host
// slot is pinned memory, Backend::alloc_pinned, so the copies return before
// they have run, and the store reads into and writes from it directly, with
// no host copy between store and copy engine): the read and upload
// of item i+1 and the download and write of item i-1 run while item i
// computes. The streams are ordered by events (Backend::record/wait), which
// the emulated device checks. Compute runs in item order on one stream, so
// results never depend on the overlap. The CPU device runs the same graph:
// it has nothing to copy (compute works on the host slot itself), and reads
// and writes still overlap compute. Store calls (reads and writes) run one
// at a time, reads in item order and writes in item order.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace streamq {

class TraceRecorder;

struct ChunkPassItem {
  int64_t floats = 0;  // the chunk's size: what the host slot holds for this item
  // Fills the host slot (floats elements) from the store. On a device the
  // slot is the pinned staging the upload copies from, so the store decodes
  // straight into it (ActivationStore::get_into).
  std::function<void(std::span<float> host)> read;
  // Queues the item's work on be's compute stream on x, the chunk in be's
  // memory (the device slot, or the host slot on a host-addressable
  // backend), which it may change in place.
  std::function<void(float* x)> compute;
  // Takes the host slot after compute (downloaded first on a device, into
  // the pinned staging, which the store then reads from). Empty: the item's
  // result stays on the device (a statistics pass), nothing is downloaded,
  // and the slot is free once compute has finished.
  std::function<void(std::span<const float> host)> write;
};

// Chunks in flight in the propagate pass (double buffering): the memory
// plans count this many chunk buffers on the host and on the device.
constexpr int kPropagateSlots = 2;
// Chunks (each of every flow the statistics read) in flight in a group's
// statistics pass.
constexpr int kStatsSlots = 2;

struct ChunkPassOptions {
  int slots = 2;  // items in flight (2: double buffering)
  std::string what = "chunk";  // names the device slots in budget errors
};

// Device bytes a pass holds beyond what its compute allocates: the slots.
inline uint64_t chunk_pass_device_bytes(const Backend& be, int slots, int64_t max_floats) {
  return be.host_addressable() ? 0 : static_cast<uint64_t>(slots) * static_cast<uint64_t>(max_floats) * sizeof(float);
}
// Pinned host bytes a pass holds (be.pinned_memory()): a staging buffer per
// slot on a device, none on the host.
inline uint64_t chunk_pass_pinned_bytes(const Backend& be, int slots, int64_t max_floats) {
  return chunk_pass_device_bytes(be, slots, max_floats);
}

// Runs the items; returns when every write has been made (and every device
// stream has finished the pass's work). The first error (a task's, or the
// device's) is rethrown after the tasks already running finished.
void run_chunk_pass(Backend& be, std::vector<ChunkPassItem> items, const ChunkPassOptions& options);

}  // namespace streamq
