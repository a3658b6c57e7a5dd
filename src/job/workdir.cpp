// The resumable job directory: lock, manifest, block-file checksums.
#include "src/job/workdir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>

#include "src/core/error.h"
#include "src/core/kill_point.h"
#include "io/file/file_hash.h"
#include "io/file/file_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

// How long a held workdir lock is waited for before the job is refused as
// running elsewhere (see Workdir::Workdir).
constexpr int kLockWaitMs = 5000;

constexpr const char* kFormat = "streamq-workdir";
constexpr int kVersion = 1;

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// "key: old -> new" for each leaf that differs, at most a few.
std::string json_diff(const nlohmann::json& stored, const nlohmann::json& now) {
  const nlohmann::json a = stored.flatten(), b = now.flatten();
  std::set<std::string> keys;
  for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
  for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
  std::ostringstream s;
  int shown = 0, differing = 0;
  for (const auto& k : keys) {
    const bool in_a = a.contains(k), in_b = b.contains(k);
    if (in_a && in_b && a[k] == b[k]) continue;
    ++differing;
    if (shown == 4) continue;
    s << (shown++ ? "; " : "") << k.substr(1) << ": " << (in_a ? a[k].dump() : "(none)") << " -> "
      << (in_b ? b[k].dump() : "(none)");
  }
  if (differing > shown) s << "; and " << differing - shown << " more";
  return s.str();
}

// Reads, with its type, every field of a manifest that Workdir's methods read
// later, so that a damaged manifest fails when it is opened, as unreadable,
// rather than with a bare JSON error from whichever later call meets the field.
void check_manifest_fields(const nlohmann::json& m) {
  (void)JobLayout::from_json(m.at("layout"));
  (void)m.at("completed_blocks").get<int64_t>();
  (void)m.at("boundary_ready").get<bool>();
  (void)m.at("finished").get<bool>();
  (void)m.at("job_id").get<std::string>();
  (void)m.at("seconds").get<double>();
  (void)m.at("block_reports").get<std::vector<nlohmann::json>>();
  for (const char* list : {"block_files", "boundary_files"}) {  // boundary_files: absent in older manifests
    if (!m.contains(list) && std::string(list) == "boundary_files") continue;
    if (!m.at(list).is_array()) throw InputError(std::string(list) + " is not an array");
    for (const auto& f : m.at(list)) {
      (void)f.at("file").get<std::string>();
      (void)f.at("bytes").get<uint64_t>();
      (void)f.at("xxh64").get<std::string>();
    }
  }
  for (const char* part : {"model", "calibration", "method"}) (void)m.at("identity").at(part);
}

std::string random_job_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                     static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return hex64(v);
}

}  // namespace

// Model files are identified by name, size and xxh64 of their first 4 MiB
// (the safetensors header and the first tensors) and last 1 MiB: reading a
// 140 GB model in full on every resume would cost minutes, and any other
// model differs in those bytes.
nlohmann::json model_files_identity(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && (e.path().extension() == ".safetensors" || name == "config.json" ||
                                name == "model.safetensors.index.json"))
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  nlohmann::json files = nlohmann::json::array();
  for (const auto& n : names) {
    const std::string path = dir + "/" + n;
    files.push_back({{"name", n}, {"bytes", fs::file_size(path)}, {"xxh64_ends", hex64(xxh64_file_ends(path, 4 << 20, 1 << 20))}});
  }
  return {{"files", files}};
}

nlohmann::json JobIdentity::to_json() const {
  return {{"model", model}, {"method", method}, {"calibration", calibration}, {"output", output}};
}

nlohmann::json JobLayout::to_json() const {
  return {{"layers", layers}, {"nsamples", nsamples}, {"seqlen", seqlen}, {"seqs_per_chunk", seqs_per_chunk},
          {"nchunks", nchunks}};
}

JobLayout JobLayout::from_json(const nlohmann::json& j) {
  JobLayout l;
  l.layers = j.at("layers").get<int64_t>();
  l.nsamples = j.at("nsamples").get<int64_t>();
  l.seqlen = j.at("seqlen").get<int64_t>();
  l.seqs_per_chunk = j.at("seqs_per_chunk").get<int64_t>();
  l.nchunks = j.at("nchunks").get<int64_t>();
  return l;
}

Workdir::Workdir(std::string dir, bool restart, bool durable) : dir_(std::move(dir)), durable_(durable) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  make_dirs(dir_);
  const std::string lock = dir_ + "/lock";
  lock_.reset(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock_) throw InputError("--workdir " + dir_ + ": cannot create " + lock);
  // A killed job's lock outlives it briefly: the kernel closes a process's
  // files after its io_uring instance is torn down, which it does in the
  // background after the exit. So a lock held at first is waited for a few
  // seconds (polling: flock has no timeout) before it is reported as a
  // running job.
  bool locked = ::flock(lock_.get(), LOCK_EX | LOCK_NB) == 0;
  for (int i = 0; !locked && i < kLockWaitMs / 50; ++i) {
    ::usleep(50 * 1000);
    locked = ::flock(lock_.get(), LOCK_EX | LOCK_NB) == 0;
  }
  if (!locked) {
    throw InputError("--workdir " + dir_ + ": another streamq process is running this job (" + lock +
                     " is locked); wait for it or stop it");
  }
  const std::string manifest = dir_ + "/manifest.json";
  if (restart) {
    std::error_code ec;
    try {
      discarded_job_id_ = nlohmann::json::parse(read_file(manifest)).value("job_id", "");
    } catch (const std::exception&) {
      // No readable manifest: nothing staged under a known name.
    }
    fs::remove(manifest, ec);
    fs::remove_all(blocks_dir(), ec);
    fs::remove_all(acts_dir(), ec);
    if (durable_) fsync_dir(dir_);
  } else if (fs::exists(manifest)) {
    try {
      manifest_ = nlohmann::json::parse(read_file(manifest));
      if (manifest_.value("format", "") != kFormat || manifest_.value("version", 0) != kVersion)
        throw InputError("not a version " + std::to_string(kVersion) + " streamq workdir manifest");
      check_manifest_fields(manifest_);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(manifest + ": unreadable manifest (" + e.what() + "); pass --restart to discard the job");
    } catch (const InputError& e) {
      throw InputError(manifest + ": " + e.what() + "; pass --restart to discard the job");
    }
  }
  make_dirs(blocks_dir());
  make_dirs(acts_dir());
  if (has_job()) remove_strays();
}

namespace {

// Removes and returns an identity's output.blas_kernels ("" when absent:
// workdirs of older versions name none, and resume under any).
std::string take_blas_kernels(nlohmann::json& identity) {
  if (!identity.contains("output") || !identity.at("output").contains("blas_kernels")) return "";
  std::string k = identity.at("output").at("blas_kernels").get<std::string>();
  identity.at("output").erase("blas_kernels");
  return k;
}

}  // namespace

void Workdir::check_identity(const JobIdentity& id) const {
  nlohmann::json now = id.to_json(), stored = manifest_.at("identity");
  // The BLAS kernels last: the one difference the environment fixes, not worth
  // naming for a job that must restart anyway.
  const std::string was_blas = take_blas_kernels(stored), now_blas = take_blas_kernels(now);
  for (const char* part : {"model", "calibration", "method", "output"}) {
    if (!stored.contains(part) || stored.at(part) == now.at(part)) continue;  // workdirs of older versions have no "output"
    throw InputError("--workdir " + dir_ + " holds a job with a different " + part + " (" +
                     json_diff(stored.at(part), now.at(part)) +
                     "); pass --restart to discard it, or use another --workdir");
  }
  if (!was_blas.empty() && was_blas != now_blas)
    throw InputError("--workdir " + dir_ + " holds a job run with OpenBLAS's " + was_blas + " kernels, this process runs " +
                     now_blas + "'s (they round differently); run with OPENBLAS_CORETYPE=" + was_blas +
                     " to resume it with the same bytes, or pass --restart");
}

void Workdir::verify_block_files() const {
  nlohmann::json files = manifest_.at("block_files");
  for (const auto& f : manifest_.value("boundary_files", nlohmann::json::array())) files.push_back(f);
  for (const auto& f : files) {
    const std::string path = dir_ + "/" + f.at("file").get<std::string>();
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) throw InputError("--workdir " + dir_ + ": " + path + " is missing; pass --restart to start over");
    if (size != f.at("bytes").get<uint64_t>() || hex64(xxh64_file(path)) != f.at("xxh64").get<std::string>())
      throw InputError("--workdir " + dir_ + ": " + path +
                       " does not match its checksum in the manifest (damaged or replaced); pass --restart to start over");
  }
}

void Workdir::begin(const JobIdentity& id, const JobLayout& layout) {
  manifest_ = {{"format", kFormat},
               {"version", kVersion},
               {"streamq_version", STREAMQ_VERSION},
               {"job_id", random_job_id()},
               {"identity", id.to_json()},
               {"info", id.info},
               {"layout", layout.to_json()},
               {"completed_blocks", 0},
               {"boundary_ready", false},
               {"block_files", nlohmann::json::array()},
               {"block_reports", nlohmann::json::array()},
               {"seconds", 0.0},
               {"started", now_iso()},
               {"finished", false}};
  write_manifest();
}

JobLayout Workdir::layout() const { return JobLayout::from_json(manifest_.at("layout")); }
int64_t Workdir::completed_blocks() const { return manifest_.at("completed_blocks").get<int64_t>(); }
bool Workdir::boundary_ready() const { return manifest_.at("boundary_ready").get<bool>(); }
bool Workdir::finished() const { return manifest_.at("finished").get<bool>(); }
std::string Workdir::job_id() const { return manifest_.at("job_id").get<std::string>(); }

std::vector<nlohmann::json> Workdir::block_reports() const {
  return manifest_.at("block_reports").get<std::vector<nlohmann::json>>();
}

void Workdir::boundary_written(const std::vector<std::string>& files) {
  nlohmann::json list = nlohmann::json::array();
  for (const std::string& f : files) {
    nlohmann::json e = {{"file", f}};
    if (durable_) {
      e["bytes"] = fs::file_size(dir_ + "/" + f);
      e["xxh64"] = hex64(xxh64_file(dir_ + "/" + f));
    }
    list.push_back(e);
  }
  manifest_["boundary_files"] = list;
  manifest_["boundary_ready"] = true;
  write_manifest();
}

void Workdir::commit_block(int64_t b, const nlohmann::json& block_report, double seconds) {
  if (b != completed_blocks())
    throw InternalError("workdir " + dir_ + ": block " + std::to_string(b) + " committed after " +
                        std::to_string(completed_blocks()) + " blocks");
  nlohmann::json file = {{"block", b}, {"file", "blocks/" + block_base(b) + ".safetensors"}};
  if (durable_) {
    const std::string path = block_path(b);
    file["bytes"] = fs::file_size(path);
    file["xxh64"] = hex64(xxh64_file(path));
  }
  manifest_["block_files"].push_back(file);
  manifest_["block_reports"].push_back(block_report);
  manifest_["completed_blocks"] = b + 1;
  manifest_["boundary_ready"] = true;
  manifest_["seconds"] = manifest_["seconds"].get<double>() + seconds;
  write_manifest();
}

void Workdir::mark_finished(const std::string& out) {
  manifest_["finished"] = true;
  manifest_["output"] = out;
  write_manifest();
}

std::string Workdir::block_base(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "block-%05lld", static_cast<long long>(b));
  return buf;
}

void Workdir::write_manifest() {
  manifest_["updated"] = now_iso();
  if (!durable_) return;
  atomic_write_file(dir_ + "/manifest.json", manifest_.dump(1) + "\n", [] { kill_point(KillPoint::Manifest); });
  kill_point(KillPoint::ManifestDone);
}

void Workdir::remove_strays() const {
  std::set<std::string> keep;
  for (const auto& f : manifest_.at("block_files")) keep.insert(fs::path(f.at("file").get<std::string>()).filename());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(blocks_dir(), ec))
    if (!keep.count(e.path().filename().string())) fs::remove_all(e.path(), ec);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    // Temporaries of a killed manifest write, or of a killed SafetensorsWriter
    // of a first-boundary file (a rotated job's ends: rewritten whole).
    if (name.rfind("manifest.json.tmp.", 0) == 0 || name.find(".safetensors.tmp.") != std::string::npos)
      fs::remove(e.path(), ec);
  }
}

nlohmann::json Workdir::read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  if (!fs::exists(path)) throw InputError("--workdir " + dir + ": no job here (no manifest.json)");
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": unreadable manifest (" + e.what() + ")");
  }
}

std::string describe_workdir(const std::string& dir) {
  const nlohmann::json m = Workdir::read_manifest(dir);
  std::ostringstream s;
  try {
    const JobLayout l = JobLayout::from_json(m.at("layout"));
    const int64_t done = m.at("completed_blocks").get<int64_t>();
    const double seconds = m.value("seconds", 0.0);
    const nlohmann::json info = m.value("info", nlohmann::json::object());
    s << "workdir:     " << dir << "\n";
    s << "job:         " << m.value("job_id", "?") << " (streamq " << m.value("streamq_version", "?") << ")\n";
    s << "model:       " << info.value("model_dir", "?") << "\n";
    s << "method:      " << info.value("method", "?") << "\n";
    s << "calibration: " << info.value("calibration", "?") << ", " << l.nsamples << " x " << l.seqlen
      << " tokens, " << l.nchunks << " chunks of " << l.seqs_per_chunk << " sequences\n";
    char buf[160];
    std::snprintf(buf, sizeof buf, "progress:    %lld/%lld blocks (%.0f%%)", static_cast<long long>(done),
                  static_cast<long long>(l.layers), l.layers ? 100.0 * done / l.layers : 0.0);
    s << buf;
    if (done > 0 && done < l.layers) {
      std::snprintf(buf, sizeof buf, ", %.1f s per block, about %.0f s of work left", seconds / done,
                    seconds / done * (l.layers - done));
      s << buf;
    }
    s << "\n";
    std::string state = "running or interrupted: rerun the same quantize command to resume";
    if (m.value("finished", false)) state = "finished: output at " + m.value("output", std::string("?"));
    else if (done == 0 && !m.value("boundary_ready", false)) state = "starting: no block done yet";
    s << "state:       " << state << "\n";
    s << "updated:     " << m.value("updated", "?") << " (started " << m.value("started", "?") << ")\n";
  } catch (const nlohmann::json::exception& e) {
    throw InputError(dir + "/manifest.json: unreadable manifest (" + e.what() + ")");
  }
  return s.str();
}

}  // namespace streamq
