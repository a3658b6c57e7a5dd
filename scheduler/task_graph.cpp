// TaskGraph execution: a ready set ordered by task id, dispatch under one
// mutex whenever a task finishes, the work itself on a tbb::task_group that
// the calling thread helps execute (it waits inside task_group::wait, so with
// two cores both run tasks).
#include "scheduler/task_graph.h"

#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <set>

#include "scheduler/memory_budget.h"
#include "scheduler/trace.h"
#include "src/core/error.h"

namespace streamq {

TaskGraph::ResourceId TaskGraph::resource(std::string name, uint64_t capacity) {
  if (capacity == 0) throw InternalError("TaskGraph: resource '" + name + "' has capacity 0");
  Resource r;
  r.name = std::move(name);
  r.capacity = capacity;
  resources_.push_back(std::move(r));
  return static_cast<ResourceId>(resources_.size() - 1);
}

void TaskGraph::check_use(const Use& u, const std::string& task) const {
  if (u.resource < 0 || u.resource >= static_cast<ResourceId>(resources_.size())) {
    throw InternalError("TaskGraph: task '" + task + "' uses an unknown resource");
  }
  const Resource& r = resources_[static_cast<std::size_t>(u.resource)];
  if (u.amount > r.capacity) {
    throw BudgetError("task '" + task + "' needs " + format_size(u.amount) + " of " + r.name +
                      ", more than its whole capacity of " + format_size(r.capacity));
  }
}

TaskGraph::TaskId TaskGraph::add(TaskInfo info, std::function<void()> fn, std::vector<TaskId> after,
                                 std::vector<Use> uses) {
  if (ran_) throw InternalError("TaskGraph::add after run");
  const TaskId id = static_cast<TaskId>(tasks_.size());
  std::sort(after.begin(), after.end());
  after.erase(std::unique(after.begin(), after.end()), after.end());
  for (TaskId a : after) {
    // Only earlier tasks can be named, so the graph is acyclic by construction.
    if (a < 0 || a >= id) throw InternalError("TaskGraph: task '" + info.name + "' depends on an unknown task");
  }
  for (const Use& u : uses) check_use(u, info.name);
  for (TaskId a : after) tasks_[static_cast<std::size_t>(a)].successors.push_back(id);
  tasks_.push_back(Task{std::move(info), std::move(fn), std::move(after), {}, std::move(uses), {}, {}});
  return id;
}

void TaskGraph::hold(TaskId from, TaskId until, Use use) {
  const auto n = static_cast<TaskId>(tasks_.size());
  if (from < 0 || from >= n || until < 0 || until >= n) throw InternalError("TaskGraph::hold: unknown task");
  if (until != from && !depends_on(until, from)) {
    throw InternalError("TaskGraph::hold: '" + tasks_[static_cast<std::size_t>(until)].info.name +
                        "' does not depend on '" + tasks_[static_cast<std::size_t>(from)].info.name +
                        "', so the held amount could be given back before it was taken");
  }
  check_use(use, tasks_[static_cast<std::size_t>(from)].info.name);
  tasks_[static_cast<std::size_t>(from)].acquire_holds.push_back(use);
  auto& holders = resources_[static_cast<std::size_t>(use.resource)].holders;
  holders.insert(std::upper_bound(holders.begin(), holders.end(), from), from);
  tasks_[static_cast<std::size_t>(until)].release_holds.push_back(use);
}

bool TaskGraph::depends_on(TaskId later, TaskId earlier) const {
  std::vector<TaskId> stack{later};
  std::vector<bool> seen(tasks_.size(), false);
  while (!stack.empty()) {
    const TaskId t = stack.back();
    stack.pop_back();
    for (TaskId a : tasks_[static_cast<std::size_t>(t)].after) {
      if (a == earlier) return true;
      if (!seen[static_cast<std::size_t>(a)]) {
        seen[static_cast<std::size_t>(a)] = true;
        stack.push_back(a);
      }
    }
  }
  return false;
}

std::vector<TaskGraph::ResourceStats> TaskGraph::resource_stats() const {
  std::vector<ResourceStats> out;
  for (const Resource& r : resources_) out.push_back({r.name, r.capacity, r.high_water});
  return out;
}

void TaskGraph::run(const RunOptions& opts) {
  if (ran_) throw InternalError("TaskGraph::run: a graph runs once");
  ran_ = true;
  const int n = static_cast<int>(tasks_.size());
  const int max_parallel =
      opts.max_parallel > 0 ? opts.max_parallel : std::max(1, tbb::this_task_arena::max_concurrency());

  std::mutex mu;
  std::vector<int> pending(tasks_.size());
  std::set<TaskId> ready;  // ordered: the earliest-added ready task starts first
  for (int t = 0; t < n; ++t) {
    pending[static_cast<std::size_t>(t)] = static_cast<int>(tasks_[static_cast<std::size_t>(t)].after.size());
    if (pending[static_cast<std::size_t>(t)] == 0) ready.insert(t);
  }
  int running = 0, finished = 0;
  std::exception_ptr error;
  tbb::task_group group;

  for (Resource& r : resources_) {
    r.holders.erase(std::unique(r.holders.begin(), r.holders.end()), r.holders.end());
  }
  // A hold is granted only to the first holder of its resource not yet
  // started (first come, first served: see the header).
  auto holds_in_turn = [&](TaskId id, const Task& t) {
    for (const Use& u : t.acquire_holds) {
      const Resource& r = resources_[static_cast<std::size_t>(u.resource)];
      if (r.next_holder >= r.holders.size() || r.holders[r.next_holder] != id) return false;
    }
    return true;
  };
  auto fits = [&](const Task& t) {
    // Amounts of one resource named twice by a task add up.
    std::vector<uint64_t> need(resources_.size(), 0);
    for (const Use& u : t.uses) need[static_cast<std::size_t>(u.resource)] += u.amount;
    for (const Use& u : t.acquire_holds) need[static_cast<std::size_t>(u.resource)] += u.amount;
    for (std::size_t r = 0; r < resources_.size(); ++r) {
      if (need[r] > resources_[r].capacity - resources_[r].in_use) return false;
    }
    return true;
  };
  auto take = [&](const std::vector<Use>& uses) {
    for (const Use& u : uses) {
      Resource& r = resources_[static_cast<std::size_t>(u.resource)];
      r.in_use += u.amount;
      r.high_water = std::max(r.high_water, r.in_use);
    }
  };
  auto give = [&](const std::vector<Use>& uses) {
    for (const Use& u : uses) resources_[static_cast<std::size_t>(u.resource)].in_use -= u.amount;
  };

  // Called with mu held: start what can start; when nothing runs and nothing
  // can start although tasks remain, the graph is stuck on its resources.
  std::function<void()> dispatch_locked;
  dispatch_locked = [&] {
    for (auto it = ready.begin(); it != ready.end() && running < max_parallel && !error;) {
      const TaskId id = *it;
      Task& t = tasks_[static_cast<std::size_t>(id)];
      if (!holds_in_turn(id, t) || !fits(t)) {
        ++it;
        continue;
      }
      take(t.uses);
      take(t.acquire_holds);
      for (const Use& u : t.acquire_holds) {
        Resource& r = resources_[static_cast<std::size_t>(u.resource)];
        if (r.next_holder < r.holders.size() && r.holders[r.next_holder] == id) ++r.next_holder;
      }
      ++running;
      it = ready.erase(it);
      group.run([&, id] {
        Task& task = tasks_[static_cast<std::size_t>(id)];
        std::exception_ptr failed;
        try {
          const int lane = (opts.trace && !task.info.lane.empty()) ? opts.trace->lane(task.info.lane) : -1;
          TraceSpan span(opts.trace, task.info.name, task.info.category, lane);
          if (task.fn) task.fn();
        } catch (...) {
          failed = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(mu);
        give(task.uses);
        give(task.release_holds);
        --running;
        ++finished;
        finish_order_.push_back(id);
        if (failed && !error) error = failed;
        for (TaskId s : task.successors) {
          if (--pending[static_cast<std::size_t>(s)] == 0) ready.insert(s);
        }
        if (!error) dispatch_locked();
      });
    }
    if (!error && running == 0 && finished < n) {
      std::string what = "the task graph cannot proceed";
      if (!ready.empty()) {
        const Task& t = tasks_[static_cast<std::size_t>(*ready.begin())];
        what = "task '" + t.info.name + "' cannot get its resources:";
        std::vector<uint64_t> need(resources_.size(), 0);
        for (const Use& u : t.uses) need[static_cast<std::size_t>(u.resource)] += u.amount;
        for (const Use& u : t.acquire_holds) need[static_cast<std::size_t>(u.resource)] += u.amount;
        for (std::size_t r = 0; r < resources_.size(); ++r) {
          if (need[r] > resources_[r].capacity - resources_[r].in_use) {
            what += " it needs " + format_size(need[r]) + " of " + resources_[r].name + ", " +
                    format_size(resources_[r].in_use) + " of " + format_size(resources_[r].capacity) +
                    " are held by tasks whose releasing task has not run";
          }
        }
      }
      error = std::make_exception_ptr(BudgetError(what));
    }
  };

  {
    std::lock_guard<std::mutex> lock(mu);
    dispatch_locked();
  }
  group.wait();
  if (error) std::rethrow_exception(error);
}

}  // namespace streamq
