// TraceRecorder and TraceSpan: spans collected under a mutex, lanes mapped to
// small Chrome-trace tids, written as one JSON document at the end of a run.
#include "scheduler/trace.h"

#include <unistd.h>

#include "src/core/error.h"
#include "io/file/file_util.h"

namespace streamq {

using nlohmann::json;

TraceRecorder::TraceRecorder() : t0_(std::chrono::steady_clock::now()), pid_(static_cast<int>(::getpid())) {
  std::lock_guard<std::mutex> lock(mu_);
  thread_lanes_[std::this_thread::get_id()] = new_lane_locked("main", true);
}

double TraceRecorder::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0_).count();
}

int TraceRecorder::new_lane_locked(std::string name, bool is_thread) {
  lane_names_.push_back(std::move(name));
  lane_is_thread_.push_back(is_thread);
  return static_cast<int>(lane_names_.size()) - 1;
}

int TraceRecorder::thread_lane_locked() {
  const auto id = std::this_thread::get_id();
  auto it = thread_lanes_.find(id);
  if (it != thread_lanes_.end()) return it->second;
  const int l = new_lane_locked("worker " + std::to_string(++workers_), true);
  thread_lanes_.emplace(id, l);
  return l;
}

int TraceRecorder::thread_lane() {
  std::lock_guard<std::mutex> lock(mu_);
  return thread_lane_locked();
}

void TraceRecorder::name_thread(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  lane_names_[static_cast<std::size_t>(thread_lane_locked())] = name;
}

int TraceRecorder::lane(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = named_lanes_.find(name);
  if (it != named_lanes_.end()) return it->second;
  const int l = new_lane_locked(name, false);
  named_lanes_.emplace(name, l);
  return l;
}

bool TraceRecorder::has_lane(int lane) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lane >= 0 && lane < static_cast<int>(lane_names_.size());
}

void TraceRecorder::complete(std::string_view name, std::string_view category, double start_us, double dur_us,
                             int lane, json args) {
  Event e{std::string(name), std::string(category), start_us, dur_us < 0 ? 0 : dur_us, lane, std::move(args)};
  std::lock_guard<std::mutex> lock(mu_);
  if (e.lane < 0) e.lane = thread_lane_locked();
  if (e.lane >= static_cast<int>(lane_names_.size()))
    throw InternalError("TraceRecorder: span '" + e.name + "' names lane " + std::to_string(e.lane) +
                        ", which was never created");
  events_.push_back(std::move(e));
}

void TraceRecorder::set_other(const std::string& key, json value) {
  std::lock_guard<std::mutex> lock(mu_);
  other_[key] = std::move(value);
}

std::size_t TraceRecorder::event_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

json TraceRecorder::to_json() const {
  std::lock_guard<std::mutex> lock(mu_);
  json events = json::array();
  events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", pid_}, {"tid", 0},
                    {"args", {{"name", "streamq"}}}});
  // Chrome tids are 1-based here (tid 0 reads as "the process" in some viewers);
  // threads sort before virtual lanes so the timeline reads workers, then I/O.
  for (std::size_t l = 0; l < lane_names_.size(); ++l) {
    const int tid = static_cast<int>(l) + 1;
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid_}, {"tid", tid},
                      {"args", {{"name", lane_names_[l]}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", pid_}, {"tid", tid},
                      {"args", {{"sort_index", lane_is_thread_[l] ? tid : 10000 + tid}}}});
  }
  for (const Event& e : events_) {
    json j = {{"ph", "X"}, {"name", e.name}, {"cat", e.category}, {"ts", e.ts_us}, {"dur", e.dur_us},
              {"pid", pid_}, {"tid", e.lane + 1}};
    if (!e.args.is_null() && !e.args.empty()) j["args"] = e.args;
    events.push_back(std::move(j));
  }
  json other = other_;
  other["tool"] = "streamq";
  other["clock"] = "steady, microseconds since the recorder started";
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}, {"otherData", std::move(other)}};
}

void TraceRecorder::write(const std::string& path) const {
  // Span names may hold bytes from files (tensor names); never fail on them.
  atomic_write_file(path, to_json().dump(-1, ' ', false, json::error_handler_t::replace));
}

TraceSpan::TraceSpan(TraceRecorder* rec, std::string_view name, std::string_view category, int lane)
    : rec_(rec) {
  if (!rec_) return;
  name_ = name;
  category_ = category;
  if (lane >= 0 && !rec_->has_lane(lane))
    throw InternalError("TraceSpan '" + std::string(name) + "': lane " + std::to_string(lane) + " was never created");
  lane_ = lane >= 0 ? lane : rec_->thread_lane();
  args_ = json::object();
  start_us_ = rec_->now_us();
}

TraceSpan::~TraceSpan() {
  // A span lost to an allocation failure must not terminate the job it traces.
  try {
    end();
  } catch (...) {
  }
}

void TraceSpan::end() {
  if (!rec_) return;
  TraceRecorder* rec = rec_;
  rec_ = nullptr;
  rec->complete(name_, category_, start_us_, rec->now_us() - start_us_, lane_, std::move(args_));
}

}  // namespace streamq
