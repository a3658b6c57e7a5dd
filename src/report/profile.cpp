// Trace analysis: parses Chrome trace events into lanes and spans, then
// measures categories, overlap and lanes with interval unions/intersections.
#include "src/report/profile.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "scheduler/trace_categories.h"

namespace streamq {

using nlohmann::json;

bool is_io_category(const std::string& c) {
  return c == "read" || c == "write" || c == "decompress" || c == "compress";
}
bool is_compute_category(const std::string& c) {
  return c == "compute" || c == "quantize" || c == "forward" || c == "stats";
}

namespace {

// ---- interval algebra on [begin, end) microsecond ranges

using Intervals = std::vector<std::pair<double, double>>;  // sorted, disjoint after merge()

Intervals merge(Intervals v) {
  std::sort(v.begin(), v.end());
  Intervals out;
  for (const auto& iv : v) {
    if (iv.second <= iv.first) continue;
    if (!out.empty() && iv.first <= out.back().second) out.back().second = std::max(out.back().second, iv.second);
    else out.push_back(iv);
  }
  return out;
}

double measure(const Intervals& v) {
  double m = 0;
  for (const auto& iv : v) m += iv.second - iv.first;
  return m;
}

Intervals intersect(const Intervals& a, const Intervals& b) {
  Intervals out;
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const double lo = std::max(a[i].first, b[j].first), hi = std::min(a[i].second, b[j].second);
    if (lo < hi) out.emplace_back(lo, hi);
    (a[i].second < b[j].second) ? ++i : ++j;
  }
  return out;
}

template <class Pred>
Intervals spans_where(const std::vector<TraceSpanRecord>& spans, Pred pred) {
  Intervals v;
  for (const auto& s : spans)
    if (pred(s)) v.emplace_back(s.ts_us, s.ts_us + s.dur_us);
  return merge(std::move(v));
}

// Time the spans selected by `pred` run while compute runs on another lane.
template <class Pred>
double hidden_under_compute(const ParsedTrace& t, Pred pred) {
  Intervals hidden;
  for (int lane = 0; lane < static_cast<int>(t.lane_names.size()); ++lane) {
    const Intervals mine = spans_where(t.spans, [&](const TraceSpanRecord& s) { return s.lane == lane && pred(s); });
    if (mine.empty()) continue;
    const Intervals others = spans_where(
        t.spans, [&](const TraceSpanRecord& s) { return s.lane != lane && is_compute_category(s.category); });
    const Intervals h = intersect(mine, others);
    hidden.insert(hidden.end(), h.begin(), h.end());
  }
  return measure(merge(std::move(hidden)));
}

// ---- parsing

std::string event_where(const std::string& source, std::size_t i, const json& e) {
  std::string w = source + ": event " + std::to_string(i);
  if (e.contains("name") && e["name"].is_string()) w += " ('" + e["name"].get<std::string>() + "')";
  return w;
}

double number_field(const json& e, const char* key, const std::string& where, bool required) {
  if (!e.contains(key)) {
    if (required) throw InputError(where + ": missing '" + key + "'");
    return 0;
  }
  if (!e[key].is_number()) throw InputError(where + ": '" + key + "' is " + e[key].dump() + ", expected a number");
  return e[key].get<double>();
}

struct LaneInfo {
  std::string name;
  bool has_spans = false;
  bool has_sort = false;
  double sort = 0;
  std::size_t first_seen = 0;
  json tid;
};

}  // namespace

ParsedTrace parse_trace(const json& trace, const std::string& source) {
  const json* events = nullptr;
  ParsedTrace out;
  if (trace.is_array()) {
    events = &trace;
  } else if (trace.is_object() && trace.contains("traceEvents") && trace["traceEvents"].is_array()) {
    events = &trace["traceEvents"];
    if (trace.contains("otherData") && trace["otherData"].is_object()) out.other = trace["otherData"];
  } else {
    throw InputError(source + ": not a Chrome trace (expected {\"traceEvents\": [...]} or an event array)");
  }

  std::map<std::string, LaneInfo> lanes;  // by pid/tid
  std::map<std::string, std::vector<TraceSpanRecord>> open;  // B events awaiting their E, per lane
  std::vector<std::pair<std::string, TraceSpanRecord>> spans;  // lane key, span
  auto lane_of = [&](const json& e) -> LaneInfo& {
    const json pid = e.value("pid", json(0)), tid = e.value("tid", json(0));
    auto [it, fresh] = lanes.try_emplace(pid.dump() + "/" + tid.dump());
    if (fresh) {
      it->second.first_seen = lanes.size();
      it->second.tid = tid;
    }
    return it->second;
  };
  auto key_of = [](const json& e) {
    return e.value("pid", json(0)).dump() + "/" + e.value("tid", json(0)).dump();
  };

  for (std::size_t i = 0; i < events->size(); ++i) {
    const json& e = (*events)[i];
    if (!e.is_object() || !e.contains("ph") || !e["ph"].is_string())
      throw InputError(event_where(source, i, e) + ": not an event object with a 'ph' string");
    const std::string ph = e["ph"].get<std::string>();
    const std::string where = event_where(source, i, e);
    if (ph == "M") {
      const json args = e.value("args", json::object());
      const std::string what = e.value("name", std::string());
      if (what == "thread_name" && args.contains("name") && args["name"].is_string())
        lane_of(e).name = args["name"].get<std::string>();
      else if (what == "thread_sort_index" && args.contains("sort_index") && args["sort_index"].is_number()) {
        LaneInfo& l = lane_of(e);
        l.has_sort = true;
        l.sort = args["sort_index"].get<double>();
      }
      continue;
    }
    if (ph != "X" && ph != "B" && ph != "E") continue;  // instants, counters, flows: not spans
    TraceSpanRecord s;
    s.ts_us = number_field(e, "ts", where, true);
    s.name = e.value("name", std::string());
    s.category = e.contains("cat") && e["cat"].is_string() ? e["cat"].get<std::string>() : "";
    s.args = e.contains("args") && e["args"].is_object() ? e["args"] : json::object();
    for (const char* k : {"bytes", "flops"})
      if (s.args.contains(k) && !s.args[k].is_number())
        throw InputError(where + ": args." + k + " is " + s.args[k].dump() + ", expected a number");
    lane_of(e).has_spans = true;
    const std::string key = key_of(e);
    if (ph == "X") {
      s.dur_us = number_field(e, "dur", where, false);
      if (s.dur_us < 0) throw InputError(where + ": negative 'dur'");
      spans.emplace_back(key, std::move(s));
    } else if (ph == "B") {
      open[key].push_back(std::move(s));
    } else {
      auto& stack = open[key];
      if (stack.empty()) throw InputError(where + ": 'E' event with no open 'B' on its thread");
      TraceSpanRecord b = std::move(stack.back());
      stack.pop_back();
      if (s.ts_us < b.ts_us) throw InputError(where + ": 'E' event before its 'B'");
      b.dur_us = s.ts_us - b.ts_us;
      b.args.update(s.args);
      spans.emplace_back(key, std::move(b));
    }
    // A 'B' never closed (a run killed mid-span) is dropped: its length is unknown.
  }
  if (spans.empty()) throw InputError(source + ": no spans (complete 'X' or 'B'/'E' events) in the trace");

  // Display order: the viewer's sort index, else numeric tid, else first appearance.
  std::vector<std::pair<std::string, LaneInfo*>> order;
  for (auto& [k, l] : lanes)
    if (l.has_spans || !l.name.empty()) order.emplace_back(k, &l);
  auto rank = [](const LaneInfo& l) { return l.has_sort ? l.sort : l.tid.is_number() ? l.tid.get<double>() : 1e300; };
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    const double ra = rank(*a.second), rb = rank(*b.second);
    return ra != rb ? ra < rb : a.second->first_seen < b.second->first_seen;
  });
  std::map<std::string, int> index;
  for (const auto& [k, l] : order) {
    index[k] = static_cast<int>(out.lane_names.size());
    out.lane_names.push_back(!l->name.empty() ? l->name : "tid " + (l->tid.is_string() ? l->tid.get<std::string>()
                                                                                          : l->tid.dump()));
  }
  double t0 = spans.front().second.ts_us;
  for (const auto& [k, s] : spans) t0 = std::min(t0, s.ts_us);
  for (auto& [k, s] : spans) {
    s.lane = index.at(k);
    s.ts_us -= t0;
    out.spans.push_back(std::move(s));
  }
  std::stable_sort(out.spans.begin(), out.spans.end(), [](const TraceSpanRecord& a, const TraceSpanRecord& b) {
    return a.ts_us != b.ts_us ? a.ts_us < b.ts_us : a.lane < b.lane;
  });
  return out;
}

json load_trace_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
}

ProfileSummary summarize_trace(const ParsedTrace& t) {
  ProfileSummary s;
  s.spans = static_cast<int64_t>(t.spans.size());
  auto arg = [](const TraceSpanRecord& r, const char* k) { return r.args.contains(k) ? r.args[k].get<double>() : 0.0; };
  const Intervals all = spans_where(t.spans, [](const TraceSpanRecord&) { return true; });
  for (const auto& r : t.spans) s.wall_us = std::max(s.wall_us, r.ts_us + r.dur_us);
  s.idle_us = s.wall_us - measure(all);

  std::map<std::string, CategoryStats> cats;
  for (const auto& r : t.spans) {
    CategoryStats& c = cats[r.category];
    c.category = r.category;
    c.count += 1;
    c.total_us += r.dur_us;
    c.bytes += arg(r, "bytes");
    c.flops += arg(r, "flops");
    if (is_io_category(r.category)) s.io_bytes += arg(r, "bytes");
    if (is_compute_category(r.category)) s.compute_flops += arg(r, "flops");
  }
  for (auto& [name, c] : cats) {
    const std::string cat = name;
    auto in_cat = [&](const TraceSpanRecord& r) { return r.category == cat; };
    c.active_us = measure(spans_where(t.spans, in_cat));
    if (!is_compute_category(cat)) c.hidden_us = hidden_under_compute(t, in_cat);
    s.categories.push_back(c);
  }
  std::stable_sort(s.categories.begin(), s.categories.end(),
                   [](const CategoryStats& a, const CategoryStats& b) { return a.total_us > b.total_us; });

  auto io = [](const TraceSpanRecord& r) { return is_io_category(r.category); };
  s.io_us = measure(spans_where(t.spans, io));
  s.io_hidden_us = hidden_under_compute(t, io);
  if (s.io_us > 0) s.io_hidden_fraction = s.io_hidden_us / s.io_us;
  auto compute = [](const TraceSpanRecord& r) { return is_compute_category(r.category); };
  s.compute_us = measure(spans_where(t.spans, compute));

  {
    std::vector<int> device_lanes;
    for (int lane = 0; lane < static_cast<int>(t.lane_names.size()); ++lane)
      if (t.lane_names[lane].rfind("device", 0) == 0) device_lanes.push_back(lane);
    if (!device_lanes.empty()) {
      s.device_busy_us = measure(spans_where(t.spans, [&](const TraceSpanRecord& r) {
        return std::find(device_lanes.begin(), device_lanes.end(), r.lane) != device_lanes.end();
      }));
      s.device_idle_fraction = s.wall_us > 0 ? 1.0 - s.device_busy_us / s.wall_us : 0.0;
      auto on_device = [&](const TraceSpanRecord& r) {
        return std::find(device_lanes.begin(), device_lanes.end(), r.lane) != device_lanes.end();
      };
      auto is_copy = [](const std::string& c) { return c == trace_cat::kH2D || c == trace_cat::kD2H; };
      const Intervals copies = spans_where(t.spans, [&](const TraceSpanRecord& r) { return on_device(r) && is_copy(r.category); });
      const Intervals device_compute =
          spans_where(t.spans, [&](const TraceSpanRecord& r) { return on_device(r) && !is_copy(r.category); });
      s.device_copy_us = measure(copies);
      s.device_copy_hidden_us = measure(intersect(copies, device_compute));
    }
  }
  for (int lane = 0; lane < static_cast<int>(t.lane_names.size()); ++lane) {
    LaneStats l;
    l.name = t.lane_names[lane];
    for (const auto& r : t.spans) l.spans += r.lane == lane;
    l.busy_us = measure(spans_where(t.spans, [&](const TraceSpanRecord& r) { return r.lane == lane; }));
    if (s.busiest_lane < 0 || l.busy_us > s.lanes[s.busiest_lane].busy_us) s.busiest_lane = lane;
    s.lanes.push_back(std::move(l));
  }

  for (const auto& [key, v] : t.other.items()) {
    if (key.rfind("peak_", 0) != 0) continue;
    if (!v.is_number() || !(v.get<double>() > 0))
      throw InputError("trace otherData: '" + key + "' is " + v.dump() + ", expected a positive number");
    const double peak = v.get<double>();
    if (key == "peak_gflops") {
      s.peaks.push_back({"compute GFLOP/s", s.compute_gflops(), peak});
    } else if (key == "peak_io_gbps") {
      s.peaks.push_back({"I/O GB/s", s.io_gbps(), peak});
    } else if (key.size() > 10 && key.compare(key.size() - 5, 5, "_gbps") == 0) {
      const std::string cat = key.substr(5, key.size() - 10);
      auto it = cats.find(cat);
      if (it != cats.end()) s.peaks.push_back({cat + " GB/s", it->second.gbps(), peak});
    }
  }
  return s;
}

ProfileSummary analyze_trace(const json& trace, const std::string& source) {
  return summarize_trace(parse_trace(trace, source));
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Seconds with enough digits for both millisecond test traces and hour-long runs.
std::string secs(double us) { return fmt(us < 1e6 ? "%.6f" : "%.3f", us / 1e6); }
std::string pct(double part, double whole) { return whole > 0 ? fmt("%.1f%%", 100.0 * part / whole) : "-"; }

std::string pad(std::string s, std::size_t w, bool left = false) {
  if (s.size() >= w) return s + " ";
  return left ? s + std::string(w - s.size(), ' ') : std::string(w - s.size(), ' ') + s;
}

}  // namespace

std::string format_summary(const ProfileSummary& s) {
  std::string o;
  o += "trace: " + std::to_string(s.spans) + " spans on " + std::to_string(s.lanes.size()) + " lanes, wall " +
       secs(s.wall_us) + " s, all lanes idle " + secs(s.idle_us) + " s\n";
  o += pad("category", 12, true) + pad("spans", 8) + pad("total s", 13) + pad("active s", 13) + pad("hidden", 8) +
       pad("GB", 10) + pad("GB/s", 9) + pad("GFLOP", 11) + pad("GFLOP/s", 10) + "\n";
  for (const auto& c : s.categories) {
    const bool compute = is_compute_category(c.category);
    o += pad(c.category.empty() ? "(none)" : c.category, 12, true) + pad(std::to_string(c.count), 8) +
         pad(secs(c.total_us), 13) + pad(secs(c.active_us), 13) + pad(compute ? "" : pct(c.hidden_us, c.active_us), 8) +
         pad(c.bytes > 0 ? fmt("%.3f", c.bytes / 1e9) : "", 10) + pad(c.bytes > 0 ? fmt("%.2f", c.gbps()) : "", 9) +
         pad(c.flops > 0 ? fmt("%.2f", c.flops / 1e9) : "", 11) + pad(c.flops > 0 ? fmt("%.2f", c.gflops()) : "", 10) +
         "\n";
  }
  o += "I/O (read, write, decompress, compress): active " + secs(s.io_us) + " s, hidden under compute " +
       secs(s.io_hidden_us) + " s (" +
       (s.io_hidden_fraction < 0 ? std::string("no I/O") : pct(s.io_hidden_us, s.io_us)) + ")";
  if (s.io_bytes > 0) o += ", " + fmt("%.2f", s.io_gbps()) + " GB/s";
  o += "\ncompute (compute, quantize, forward, stats): active " + secs(s.compute_us) + " s (" +
       pct(s.compute_us, s.wall_us) + " of wall)";
  if (s.compute_flops > 0) o += ", " + fmt("%.2f", s.compute_gflops()) + " GFLOP/s";
  if (s.device_busy_us >= 0)
    o += "\ndevice: busy " + secs(s.device_busy_us) + " s (" + pct(s.device_busy_us, s.wall_us) +
         " of wall), idle " + pct(s.wall_us - s.device_busy_us, s.wall_us) +
         " (waiting for data or for the host's stages)";
  if (s.device_copy_us >= 0)
    o += "\ndevice copies (h2d, d2h): " + secs(s.device_copy_us) + " s, overlapping device compute " +
         secs(s.device_copy_hidden_us) + " s (" + pct(s.device_copy_hidden_us, s.device_copy_us) + ")";
  o += "\nlanes (busy = union of the lane's spans):\n";
  std::size_t w = 8;
  for (const auto& l : s.lanes) w = std::max(w, l.name.size() + 2);
  for (const auto& l : s.lanes)
    o += "  " + pad(l.name, w, true) + pad(std::to_string(l.spans), 8) + " spans  busy " + secs(l.busy_us) + " s (" +
         pct(l.busy_us, s.wall_us) + ")\n";
  if (s.busiest_lane >= 0) {
    const LaneStats& b = s.lanes[s.busiest_lane];
    o += "critical path (busiest lane; the trace has no dependencies): " + b.name + ", busy " + secs(b.busy_us) +
         " s of " + secs(s.wall_us) + " s wall, idle " + secs(s.wall_us - b.busy_us) + " s\n";
  }
  for (const auto& p : s.peaks)
    o += "peak " + p.what + ": achieved " + fmt("%.2f", p.achieved) + " of " + fmt("%.2f", p.peak) + " (" +
         pct(p.achieved, p.peak) + ")\n";
  return o;
}

json summary_to_json(const ProfileSummary& s) {
  json cats = json::array(), lanes = json::array(), peaks = json::array();
  for (const auto& c : s.categories)
    cats.push_back({{"category", c.category}, {"spans", c.count}, {"total_seconds", c.total_us / 1e6},
                    {"active_seconds", c.active_us / 1e6}, {"hidden_seconds", c.hidden_us / 1e6},
                    {"bytes", c.bytes}, {"flops", c.flops}, {"gbps", c.gbps()}, {"gflops", c.gflops()}});
  for (const auto& l : s.lanes)
    lanes.push_back({{"name", l.name}, {"spans", l.spans}, {"busy_seconds", l.busy_us / 1e6}});
  for (const auto& p : s.peaks) peaks.push_back({{"what", p.what}, {"achieved", p.achieved}, {"peak", p.peak}});
  return {{"spans", s.spans},
          {"wall_seconds", s.wall_us / 1e6},
          {"idle_seconds", s.idle_us / 1e6},
          {"io_seconds", s.io_us / 1e6},
          {"io_hidden_seconds", s.io_hidden_us / 1e6},
          {"io_hidden_fraction", s.io_hidden_fraction < 0 ? json(nullptr) : json(s.io_hidden_fraction)},
          {"io_bytes", s.io_bytes},
          {"io_gbps", s.io_gbps()},
          {"compute_seconds", s.compute_us / 1e6},
          {"compute_flops", s.compute_flops},
          {"compute_gflops", s.compute_gflops()},
          {"busiest_lane", s.busiest_lane >= 0 ? json(s.lanes[s.busiest_lane].name) : json(nullptr)},
          {"categories", cats},
          {"lanes", lanes},
          {"device_busy_seconds", s.device_busy_us < 0 ? json(nullptr) : json(s.device_busy_us / 1e6)},
          {"device_idle_fraction", s.device_idle_fraction < 0 ? json(nullptr) : json(s.device_idle_fraction)},
          {"device_copy_seconds", s.device_copy_us < 0 ? json(nullptr) : json(s.device_copy_us / 1e6)},
          {"device_copy_hidden_seconds", s.device_copy_hidden_us < 0 ? json(nullptr) : json(s.device_copy_hidden_us / 1e6)},
          {"peaks", peaks}};
}

}  // namespace streamq
