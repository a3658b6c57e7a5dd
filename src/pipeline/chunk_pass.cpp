// The chunk pass's graph: five tasks per item, two resources (the slots, held
// from read to write; the store, one call at a time), the device's streams
// ordered by events recorded in the tasks and read by later tasks (the graph
// orders those tasks, so the event arrays need no lock).
#include "src/pipeline/chunk_pass.h"

#include <algorithm>

#include "scheduler/task_graph.h"
#include "src/core/error.h"
#include "src/core/large_blocks.h"

namespace streamq {

void run_chunk_pass(Backend& be, std::vector<ChunkPassItem> items, const ChunkPassOptions& options) {
  if (items.empty()) return;
  // A pass is a stage of the memory plan: freed large blocks are kept for the
  // next chunk's buffers within it and unmapped at its ends, so neither what
  // the stage before kept nor this pass's intermediates are held into another
  // stage (src/core/large_blocks.h).
  const LargeBlockStage pass_stage;
  using Stream = Backend::Stream;
  const int slots = std::max(1, options.slots);
  const bool device = !be.host_addressable();
  int64_t max_floats = 0;
  for (const ChunkPassItem& it : items) max_floats = std::max(max_floats, it.floats);

  // The host slots: on a device pinned staging, because copies to and from
  // the device are asynchronous only from pinned memory (from pageable
  // vectors they would hold the copy task until the copy engine had run
  // them); the store reads into it and writes from it (get_into, put), so a
  // chunk is never copied on the host between store and copy engine. On the
  // host, plain vectors that compute works on in place.
  std::vector<std::vector<float>> host;
  std::vector<Buffer<float>> dev;
  std::vector<PinnedBuffer<float>> pinned;
  if (!device) {
    for (int s = 0; s < slots; ++s) host.emplace_back(static_cast<size_t>(max_floats));
  } else {
    for (int s = 0; s < slots; ++s) {
      dev.push_back(be.alloc<float>(static_cast<size_t>(max_floats), options.what + " slot " + std::to_string(s)));
      pinned.push_back(
          be.alloc_pinned<float>(static_cast<size_t>(max_floats), options.what + " pinned staging " + std::to_string(s)));
    }
    // The slots are new: nothing on the copy streams may precede their allocation.
    const Backend::Event allocated = be.record(Stream::Compute);
    be.wait(Stream::Upload, allocated);
    be.wait(Stream::Download, allocated);
  }
  auto slot = [&](size_t s, int64_t floats) {
    return std::span<float>(device ? pinned[s].data() : host[s].data(), static_cast<size_t>(floats));
  };
  const size_t n = items.size();
  // Per slot: the event after which its device buffer is free again (its
  // last item's download, or compute when nothing is downloaded).
  std::vector<Backend::Event> slot_free(static_cast<size_t>(slots));
  std::vector<Backend::Event> uploaded(n), computed(n);

  TaskGraph g;
  const auto slot_res = g.resource(options.what + " slots", static_cast<uint64_t>(slots));
  const auto store_res = g.resource("activation store calls", 1);
  TaskGraph::TaskId prev_read = -1, prev_upload = -1, prev_compute = -1, prev_download = -1, prev_write = -1;
  for (size_t i = 0; i < n; ++i) {
    const size_t s = i % static_cast<size_t>(slots);
    ChunkPassItem& item = items[i];
    auto deps = [](std::initializer_list<TaskGraph::TaskId> ids) {
      std::vector<TaskGraph::TaskId> out;
      for (auto id : ids)
        if (id >= 0) out.push_back(id);
      return out;
    };
    const auto read = g.add({"read " + std::to_string(i), "", ""}, [&, i, s] {
      // The slot's previous upload reads its pinned staging until it has run
      // (a write waited for its download already; without one, wait here).
      if (device && i >= static_cast<size_t>(slots)) be.wait_host(uploaded[i - static_cast<size_t>(slots)]);
      items[i].read(slot(s, items[i].floats));
    }, deps({prev_read}), {{store_res, 1}});
    const auto upload = g.add({"upload " + std::to_string(i), "", ""}, [&, i, s] {
      if (!device) return;
      be.wait(Stream::Upload, slot_free[s]);
      be.upload_on(Stream::Upload, dev[s], pinned[s].data(), static_cast<size_t>(items[i].floats));
      uploaded[i] = be.record(Stream::Upload);
    }, deps({read, prev_upload}));
    const auto compute = g.add({"compute " + std::to_string(i), "", ""}, [&, i, s] {
      if (device) {
        be.wait(Stream::Compute, uploaded[i]);
        be.wait(Stream::Compute, slot_free[s]);  // the slot's last download read what compute now overwrites
      }
      items[i].compute(device ? dev[s].data() : host[s].data());
      computed[i] = be.record(Stream::Compute);
      if (!items[i].write) slot_free[s] = computed[i];
    }, deps({upload, prev_compute}));
    TaskGraph::TaskId last = compute;
    if (item.write) {
      const auto download = g.add({"download " + std::to_string(i), "", ""}, [&, i, s] {
        if (!device) return;
        be.wait(Stream::Download, computed[i]);
        be.download_on(Stream::Download, pinned[s].data(), dev[s], static_cast<size_t>(items[i].floats));
        slot_free[s] = be.record(Stream::Download);
        be.wait_host(slot_free[s]);
      }, deps({compute, prev_download}));
      prev_download = download;
      last = g.add({"write " + std::to_string(i), "", ""}, [&, i, s] { items[i].write(slot(s, items[i].floats)); },
                   deps({download, prev_write}), {{store_res, 1}});
      prev_write = last;
    }
    g.hold(read, last, {slot_res, 1});
    prev_read = read;
    prev_upload = upload;
    prev_compute = compute;
  }
  try {
    g.run();
  } catch (...) {
    // Queued copies and ops may still use the slots: let them finish (their
    // own errors are secondary to the one being reported) before unwinding.
    try {
      be.synchronize();
    } catch (...) {
    }
    throw;
  }
  be.synchronize();
}

}  // namespace streamq
