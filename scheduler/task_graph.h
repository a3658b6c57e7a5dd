// The task graph: a block's stages (read, decompress, upload, forward, stats,
// factor, sweep, download, compress, write) declared as tasks with their
// dependencies and the resources they use, executed on oneTBB. Order and
// overlap are declared here, in one place, instead of being spread over
// threads: a task starts when its predecessors have finished and every
// resource it needs fits, and the graph never holds more of a resource than
// its capacity.
//
// Resources are counters with a capacity: bytes of a memory pool (host,
// pinned staging, device), or slots of a lane (one copy engine, one compute
// stream, an I/O depth). A task `uses` an amount for its own run; a `hold`
// takes an amount when one task starts and gives it back when a later task
// finishes (a chunk's buffer lives from its read to its last consumer).
//
//   TaskGraph g;
//   auto dev  = g.resource("device pool", gpu_limit_bytes);
//   auto h2d  = g.resource("copy h2d", 1);
//   auto read = g.add({"read chunk 0", trace_cat::kRead}, [&] { ... });
//   auto up   = g.add({"upload chunk 0", trace_cat::kH2D, "copy h2d"}, [&] { ... }, {read}, {{h2d, 1}});
//   auto fwd  = g.add({"forward chunk 0", trace_cat::kForward}, [&] { ... }, {up});
//   g.hold(up, fwd, {dev, chunk_bytes});   // the device copy lives until the forward is done
//   g.run({.trace = trace});
//
// Holds are granted per resource in the order the holding tasks were added
// (first come, first served), so a later chunk can never take the room an
// earlier chunk needs and then wait for it: a pipeline whose chunks release
// in order cannot deadlock on its holds.
//
// Determinism: among tasks ready at the same moment, the one added first
// starts first; results must not depend on the interleaving anyway (tasks
// write disjoint data, reductions happen in a task of their own).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace streamq {

class TraceRecorder;

class TaskGraph {
 public:
  using TaskId = int;
  using ResourceId = int;

  struct Use {
    ResourceId resource = -1;
    uint64_t amount = 0;
  };
  struct TaskInfo {
    std::string name;
    std::string category;  // a trace_cat:: category
    std::string lane;      // trace lane ("" = the worker thread's)
  };
  struct RunOptions {
    TraceRecorder* trace = nullptr;
    int max_parallel = 0;  // tasks running at once; 0 = oneTBB's default concurrency
  };
  struct ResourceStats {
    std::string name;
    uint64_t capacity = 0;
    uint64_t high_water = 0;  // the most ever in use at once during run()
  };

  // A counting resource; capacity 0 is refused (InternalError).
  ResourceId resource(std::string name, uint64_t capacity);

  // A task that runs `fn` after every task in `after` has finished, holding
  // `uses` while it runs. Throws BudgetError at once when a use exceeds its
  // resource's capacity: such a graph could never run, and saying so before
  // anything starts is the point of declaring the graph.
  TaskId add(TaskInfo info, std::function<void()> fn, std::vector<TaskId> after = {},
             std::vector<Use> uses = {});
  // `use` is taken when `from` starts and given back when `until` finishes;
  // `until` must (transitively) depend on `from` (checked by run()).
  void hold(TaskId from, TaskId until, Use use);

  // Runs every task. The first exception a task throws stops new starts; the
  // tasks already running finish, then it is rethrown. When tasks are ready
  // but none can get its resources while nothing runs (held amounts that only
  // later tasks release), throws BudgetError naming the task and resource.
  // A graph runs once.
  void run(const RunOptions& opts);
  void run() { run(RunOptions{}); }

  std::size_t size() const { return tasks_.size(); }
  std::vector<ResourceStats> resource_stats() const;
  // Finish order of the last run, for tests.
  const std::vector<TaskId>& finish_order() const { return finish_order_; }

 private:
  struct Task {
    TaskInfo info;
    std::function<void()> fn;
    std::vector<TaskId> after, successors;
    std::vector<Use> uses;           // for the run only
    std::vector<Use> acquire_holds;  // taken at start, kept
    std::vector<Use> release_holds;  // given back at finish
  };
  struct Resource {
    std::string name;
    uint64_t capacity = 0;
    uint64_t in_use = 0;
    uint64_t high_water = 0;
    std::vector<TaskId> holders;  // tasks acquiring holds on it, in id order
    std::size_t next_holder = 0;  // the first of them not yet started
  };

  void check_use(const Use& u, const std::string& task) const;
  bool depends_on(TaskId later, TaskId earlier) const;

  std::vector<Task> tasks_;
  std::vector<Resource> resources_;
  std::vector<TaskId> finish_order_;
  bool ran_ = false;
};

}  // namespace streamq
