// Benchmark of the compressed activation store: write and read throughput on
// both I/O paths against the disk's sequential bandwidth measured in the same
// run (plain O_DIRECT pwrite/pread of zeros in 4 MiB blocks), and compression
// ratio and speed per zstd level, with and without byte shuffle, on real
// stories260K block inputs and on synthetic gaussian data.
//
// usage: bench_store [--dir DIR] [--gib N] [--threads T] [--data DIR]
//   --dir      where files go (default: a fresh directory under /tmp)
//   --data     the repository's data/ folder (default: data, i.e. run from the root)
//   --gib      GiB of float32 input for the throughput runs (default 1)
//   --threads  concurrent put()/get() callers in the throughput runs (default:
//              1, then one per hardware thread)
// The compression tables run on /dev/shm when it exists, so that their
// MB/s columns are the codec's speed, not the disk's.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/core/sysinfo.h"
#include "io/store/compressed_store.h"
#include "kernels/backend.h"
#include "src/model/model.h"
#include "src/pipeline/tokens.h"

using namespace streamq;

namespace {

constexpr double kGB = 1e9;

struct Args {
  std::string dir;
  double gib = 1.0;
  int threads = 0;
  std::string data = "data";
};

// Sequential O_DIRECT write (then fsync) and read of `bytes` zeros in 4 MiB
// blocks: what the device gives with no compression and no store around it.
void disk_baseline(const std::string& dir, uint64_t bytes, double* write_gbs, double* read_gbs) {
  const size_t block = 4 << 20;
  void* buf = std::aligned_alloc(4096, block);
  std::memset(buf, 0, block);
  const std::string path = dir + "/baseline.bin";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  Stopwatch tw;
  for (uint64_t off = 0; off < bytes; off += block)
    if (::pwrite(fd, buf, block, static_cast<off_t>(off)) != static_cast<ssize_t>(block)) std::perror("pwrite");
  ::fsync(fd);
  *write_gbs = bytes / tw.seconds() / kGB;
  Stopwatch tr;
  for (uint64_t off = 0; off < bytes; off += block)
    if (::pread(fd, buf, block, static_cast<off_t>(off)) != static_cast<ssize_t>(block)) std::perror("pread");
  *read_gbs = bytes / tr.seconds() / kGB;
  ::close(fd);
  ::unlink(path.c_str());
  std::free(buf);
}

std::vector<float> gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

// Each boundary's FP-flow input of stories260K on the whole calibration
// slice (32 windows of 256 tokens), as chunks of 8 sequences.
std::vector<std::vector<std::vector<float>>> stories_activations(const std::string& data, int64_t* hidden) {
  Model model(data + "/stories260K");
  const ModelConfig& cfg = model.config();
  *hidden = cfg.hidden;
  const int64_t seqlen = 256, nseq = 32, per_chunk = 8;
  const auto stream =
      read_token_file(data + "/tokens/tinystories_calib_tokens.bin", TokensDType::U16, cfg.vocab);
  auto be = make_cpu_backend();
  const RopeTable rope = model.rope_table(seqlen);
  std::vector<float> x(static_cast<size_t>(nseq * seqlen * cfg.hidden));
  model.embed(stream.data(), nseq * seqlen, x.data());
  std::vector<std::vector<std::vector<float>>> boundaries;
  auto keep = [&] {
    auto& chunks = boundaries.emplace_back();
    const size_t step = static_cast<size_t>(per_chunk * seqlen * cfg.hidden);
    for (size_t off = 0; off < x.size(); off += step) chunks.emplace_back(x.begin() + off, x.begin() + off + step);
  };
  keep();
  for (int64_t b = 0; b < cfg.layers; ++b) {
    const BlockWeights w = model.load_block(b);
    block_forward(*be, cfg, w, rope, x.data(), nseq, seqlen);
    keep();
  }
  return boundaries;
}

struct RatioRun {
  StoreStats stats;
  double write_s = 0, read_s = 0;
};

// Stores every chunk (boundary = block), flushes, reads all back.
RatioRun store_run(const std::string& dir, const std::vector<std::vector<std::vector<float>>>& boundaries,
                   DType storage, int level, bool shuffle, std::vector<StoreStats>* per_block = nullptr) {
  CompressedStoreOptions o;
  o.dir = dir;
  o.storage = storage;
  o.zstd_level = level;
  o.shuffle = shuffle;
  auto s = open_compressed_store(o);
  RatioRun r;
  Stopwatch tw;
  for (size_t b = 0; b < boundaries.size(); ++b)
    for (size_t c = 0; c < boundaries[b].size(); ++c)
      s->put(static_cast<int64_t>(b), Flow::Fp, static_cast<int64_t>(c), boundaries[b][c].data(),
             static_cast<int64_t>(boundaries[b][c].size()));
  s->flush();
  r.write_s = tw.seconds();
  std::vector<float> out;
  Stopwatch tr;
  for (size_t b = 0; b < boundaries.size(); ++b)
    for (size_t c = 0; c < boundaries[b].size(); ++c) s->get(static_cast<int64_t>(b), Flow::Fp, static_cast<int64_t>(c), &out);
  r.read_s = tr.seconds();
  r.stats = s->stats();
  if (per_block)
    for (size_t b = 0; b < boundaries.size(); ++b) per_block->push_back(s->stats(static_cast<int64_t>(b)));
  return r;
}

void ratio_table(const std::string& title, const std::string& dir,
                 const std::vector<std::vector<std::vector<float>>>& data) {
  std::printf("\n### Compression: %s\n\n", title.c_str());
  std::printf("| storage | zstd level | shuffle | ratio (raw/zstd) | write MB/s (raw) | read MB/s (raw) |\n");
  std::printf("| --- | ---: | --- | ---: | ---: | ---: |\n");
  for (DType st : {DType::BF16, DType::F32})
    for (int level : {-1, 1, 3, 5, 9})
      for (bool shuffle : {false, true}) {
        if (st == DType::F32 && level != 1 && level != 3) continue;
        const RatioRun r = store_run(dir, data, st, level, shuffle);
        std::printf("| %s | %d | %s | %.3f | %.0f | %.0f |\n", dtype_name(st), level, shuffle ? "yes" : "no",
                    r.stats.ratio(), r.stats.raw_bytes / r.write_s / 1e6, r.stats.raw_bytes / r.read_s / 1e6);
        std::fflush(stdout);
      }
}

// Writes `total` float32 bytes as chunks of 64 MiB through `threads`
// callers, flushes, reads them all back.
void throughput(const std::string& dir, IoPath io, const std::vector<float>& chunk, uint64_t total, int threads,
                double disk_w, double disk_r) {
  CompressedStoreOptions o;
  o.dir = dir;
  o.io = io;
  std::unique_ptr<CompressedStore> s;
  try {
    s = open_compressed_store(o);
  } catch (const std::exception& e) {
    std::printf("| %s | unavailable: %s |\n", to_string(io), e.what());
    return;
  }
  const int64_t nchunks = static_cast<int64_t>(total / (chunk.size() * sizeof(float)));
  auto run = [&](auto&& body) {
    std::atomic<int64_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        std::vector<float> out;
        for (int64_t c; (c = next++) < nchunks;) body(c, out);
      });
    for (auto& th : pool) th.join();
  };
  Stopwatch tw;
  run([&](int64_t c, std::vector<float>&) {
    s->put(0, Flow::Fp, c, chunk.data(), static_cast<int64_t>(chunk.size()));
  });
  s->flush();
  const double ws = tw.seconds();
  Stopwatch tr;
  run([&](int64_t c, std::vector<float>& out) { s->get(0, Flow::Fp, c, &out); });
  const double rs = tr.seconds();
  const StoreStats st = s->stats();
  std::printf("| %s | %d | write | %.2f | %.2f | %.2f | %.0f%% |\n", s->io_description().c_str(), threads,
              st.input_bytes / ws / kGB, st.raw_bytes / ws / kGB, st.file_bytes / ws / kGB,
              100.0 * st.file_bytes / ws / kGB / disk_w);
  std::printf("| %s | %d | read | %.2f | %.2f | %.2f | %.0f%% |\n", s->io_description().c_str(), threads,
              st.input_bytes / rs / kGB, st.raw_bytes / rs / kGB, st.file_bytes / rs / kGB,
              100.0 * st.file_bytes / rs / kGB / disk_r);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--dir") a.dir = argv[i + 1];
    else if (k == "--gib") a.gib = std::atof(argv[i + 1]);
    else if (k == "--threads") a.threads = std::atoi(argv[i + 1]);
    else if (k == "--data") a.data = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: bench_store [--dir DIR] [--gib N] [--threads T] [--data DIR]\n");
      return 2;
    }
  }
  bool own_dir = false;
  if (a.dir.empty()) {
    std::string templ = (std::filesystem::temp_directory_path() / "streamq-bench-store-XXXXXX").string();
    if (!mkdtemp(templ.data())) return 1;
    a.dir = templ;
    own_dir = true;
  }
  const uint64_t total = static_cast<uint64_t>(a.gib * (1ull << 30));
  CompressedStoreOptions defaults;

  double disk_w = 0, disk_r = 0;
  disk_baseline(a.dir, total, &disk_w, &disk_r);
  std::printf("## Activation store (bench_store --gib %.2f, dir %s)\n\n", a.gib, a.dir.c_str());
  std::printf("Disk baseline, O_DIRECT 4 MiB blocks of zeros: write+fsync %.2f GB/s, read %.2f GB/s\n\n", disk_w,
              disk_r);

  std::printf("### Throughput: gaussian float32 in 64 MiB chunks, stored %s, zstd %d, shuffle %s\n\n",
              dtype_name(defaults.storage), defaults.zstd_level, defaults.shuffle ? "on" : "off");
  std::printf("| I/O | threads | op | GB/s float32 | GB/s %s | GB/s on disk | disk vs baseline |\n",
              dtype_name(defaults.storage));
  std::printf("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
  const std::vector<float> chunk = gaussian(16u << 20, 1);
  std::vector<int> thread_counts = {a.threads};
  if (a.threads == 0) {
    thread_counts = {1};
    if (std::thread::hardware_concurrency() > 1) thread_counts.push_back(static_cast<int>(std::thread::hardware_concurrency()));
  }
  for (int t : thread_counts)
    for (IoPath io : {IoPath::Uring, IoPath::Posix}) throughput(a.dir + "/tp", io, chunk, total, t, disk_w, disk_r);

  std::string ratio_dir = a.dir + "/ratio";
  if (std::filesystem::is_directory("/dev/shm")) {
    std::string templ = "/dev/shm/streamq-bench-ratio-XXXXXX";
    if (mkdtemp(templ.data())) ratio_dir = templ;
  }
  std::printf("\nCompression tables: files under %s; MB/s are of storage-dtype bytes through put()+flush() and get().\n",
              ratio_dir.c_str());

  int64_t hidden = 0;
  const auto stories = stories_activations(a.data, &hidden);
  ratio_table("stories260K block inputs (6 boundaries x 32 x 256 tokens x hidden " + std::to_string(hidden) + ")",
              ratio_dir, stories);
  std::vector<StoreStats> per_block;
  store_run(ratio_dir, stories, defaults.storage, defaults.zstd_level, defaults.shuffle, &per_block);
  std::printf("\nPer block boundary (defaults):");
  for (size_t b = 0; b < per_block.size(); ++b) std::printf(" %zu: %.3f", b, per_block[b].ratio());
  std::printf("\n");

  const std::vector<std::vector<std::vector<float>>> synth = {{gaussian(8u << 20, 2), gaussian(8u << 20, 3)}};
  ratio_table("synthetic gaussian N(0,1), 2 x 8 Mi values", ratio_dir, synth);

  std::filesystem::remove_all(ratio_dir);
  if (own_dir) std::filesystem::remove_all(a.dir);
  return 0;
}
