// The emulated device: each planted mistake is caught where it is made and
// named (host pointer to a device op, freed buffer, short buffer, host
// source changed before the queued copy ran, premature host read of a
// download, a buffer used by two streams with no event between them), its
// capacity is hard, the first error of queued work is reported at synchronize(), and its results equal
// the CPU backend's bit for bit (it runs the same CPU kernels; the op-test
// table compares every backend with the float64 references).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/emulated/device_memory.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/core/error.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

std::unique_ptr<Backend> device(uint64_t bytes = uint64_t{64} << 20) {
  EmulatedBackendOptions o;
  o.memory_bytes = bytes;
  return make_emulated_backend(o);
}

// Runs f and returns the InternalError's message ("" when none was thrown).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InternalError& e) {
    return e.what();
  }
  return "";
}

void expect_has(const std::string& msg, const std::string& part) {
  EXPECT_NE(msg.find(part), std::string::npos) << "message: \"" << msg << "\" lacks \"" << part << "\"";
}

TEST(EmulatedDevice, AHostPointerPassedToADeviceOpIsNamed) {
  auto be = device();
  std::vector<float> host_x(64, 1.0f), host_w(8, 1.0f);
  Buffer<float> y = be->alloc<float>(64, "y");
  Buffer<float> w = be->upload_new(host_w, "w");
  const std::string msg = error_of([&] { be->rmsnorm(host_x.data(), w.data(), y.data(), 8, 8, 1e-5f); });
  expect_has(msg, "rmsnorm");
  expect_has(msg, "argument x");
  expect_has(msg, "host pointer");
}

TEST(EmulatedDevice, AFreedBufferIsNamed) {
  auto be = device();
  Buffer<float> a = be->alloc<float>(100, "a");
  Buffer<float> b = be->alloc<float>(100, "b");
  float* stale = a.data();
  a.reset();
  const std::string msg = error_of([&] { be->add_inplace(b.data(), stale, 100); });
  expect_has(msg, "add_inplace");
  expect_has(msg, "argument x");
  expect_has(msg, "freed");
}

TEST(EmulatedDevice, AShortBufferIsNamedWithHowFarItRunsOver) {
  auto be = device();
  Buffer<float> gate = be->alloc<float>(20, "gate");
  Buffer<float> up = be->alloc<float>(10, "up");
  Buffer<float> out = be->alloc<float>(20, "out");
  const std::string msg = error_of([&] { be->swiglu(gate.data(), up.data(), out.data(), 20); });
  expect_has(msg, "swiglu");
  expect_has(msg, "argument up");
  expect_has(msg, "40 bytes past the end");
  // An offset into a buffer counts: 10 floats from element 15 of 20 run over too.
  const std::string off = error_of([&] { be->add_inplace(gate.data() + 15, out.data(), 10); });
  expect_has(off, "argument y");
  expect_has(off, "starts 60 bytes in");
  // gemm's extent follows the transpose and the leading dimension.
  Buffer<float> a = be->alloc<float>(4 * 8, "a"), bm = be->alloc<float>(8 * 4, "b"), c = be->alloc<float>(4 * 4, "c");
  EXPECT_EQ(error_of([&] { be->gemm(Trans::N, Trans::N, 4, 4, 8, 1.f, a.data(), 8, bm.data(), 4, 0.f, c.data(), 4); }), "");
  expect_has(error_of([&] { be->gemm(Trans::N, Trans::N, 4, 4, 8, 1.f, a.data(), 9, bm.data(), 4, 0.f, c.data(), 4); }),
             "argument a");
  be->synchronize();
}

TEST(EmulatedDevice, ChangingTheHostSourceBeforeTheCopyRanIsAnError) {
  auto be = device();
  PinnedBuffer<float> host = be->alloc_pinned<float>(1000, "host source");  // pinned: the copy is asynchronous
  std::fill(host.begin(), host.end(), 1.0f);
  Buffer<float> dst = be->alloc<float>(1000, "dst");
  emulated_set_paused(*be, true);  // the copy stays queued
  be->upload(dst, host.data(), host.size());
  host[500] = 2.0f;  // too early: the copy has not run
  emulated_set_paused(*be, false);
  try {
    be->synchronize();
    FAIL() << "no error";
  } catch (const InternalError& e) {
    expect_has(e.what(), "copy_from_host");
    expect_has(e.what(), "changed");
  }
  // Reported once, and work queued behind the failed copy was skipped; then
  // the device is usable again.
  EXPECT_NO_THROW(be->synchronize());
  std::vector<float> fresh(1000, 4.0f);
  be->upload(dst, fresh.data(), fresh.size());
  EXPECT_EQ(be->download_all(dst)[500], 4.0f);
}

TEST(EmulatedDevice, ADownloadReadsAsNaNUntilSynchronize) {
  auto be = device();
  std::vector<float> host(256, 3.0f);
  Buffer<float> d = be->upload_new(host, "d");
  PinnedBuffer<float> back = be->alloc_pinned<float>(256, "download destination");
  std::fill(back.begin(), back.end(), 0.0f);
  emulated_set_paused(*be, true);
  be->download(back.data(), d, back.size());
  for (float v : back) ASSERT_TRUE(std::isnan(v)) << "a premature read must not see plausible values";
  emulated_set_paused(*be, false);
  be->synchronize();
  for (float v : back) ASSERT_EQ(v, 3.0f);
}

// The difference pinned host memory makes, as on CUDA: a copy between the
// device and pinned memory returns before it has run (here: while the device
// is paused, which would hang a synchronous copy), so the host must keep its
// hands off until the event; one from or to pageable memory returns once it
// has run, so the host may reuse its source and read its destination at
// once. Deterministic: the pinned half runs while nothing can execute.
TEST(EmulatedDevice, APinnedCopyReturnsBeforeItRunsAPageableOneAfter) {
  auto be = device();
  using Stream = Backend::Stream;
  Buffer<float> d = be->alloc<float>(256, "d");
  be->wait(Stream::Upload, be->record(Stream::Compute));
  PinnedBuffer<float> src = be->alloc_pinned<float>(256, "pinned source"),
                      dst = be->alloc_pinned<float>(256, "pinned destination");
  std::fill(src.begin(), src.end(), 5.0f);
  emulated_set_paused(*be, true);
  be->upload_on(Stream::Upload, d, src.data(), 256);  // returns: nothing has run
  be->wait(Stream::Download, be->record(Stream::Upload));
  be->download_on(Stream::Download, dst.data(), d, 256);  // returns too
  const Backend::Event downloaded = be->record(Stream::Download);
  for (float v : dst) ASSERT_TRUE(std::isnan(v)) << "the pinned download has not run";
  emulated_set_paused(*be, false);
  be->wait_host(downloaded);
  for (float v : dst) ASSERT_EQ(v, 5.0f);

  // Pageable: the host may change the source right after the call (the copy
  // ran: no "source changed" error), and the download's bytes are there at
  // once, no wait.
  std::vector<float> pageable(256, 7.0f);
  be->upload_on(Stream::Upload, d, pageable.data(), 256);
  std::fill(pageable.begin(), pageable.end(), -1.0f);
  be->wait(Stream::Download, be->record(Stream::Upload));
  std::vector<float> back(256, 0.0f);
  be->download_on(Stream::Download, back.data(), d, 256);
  for (float v : back) ASSERT_EQ(v, 7.0f) << "a pageable download returns once it has run";
  EXPECT_NO_THROW(be->synchronize());
  // The pageable upload's completion teaches other streams nothing (on CUDA
  // its DMA may still run after the call returns): compute still needs the event.
  be->upload_on(Stream::Upload, d, pageable.data(), 256);
  Buffer<float> y = be->alloc<float>(256, "y");
  EXPECT_NE(error_of([&] { be->add_inplace(y.data(), d.data(), 256); }), "");
  be->synchronize();
}

// ---- stream order: each cross-stream use of a buffer without an event between
// the two is refused when the second is queued, naming the op, the argument,
// the buffer and both streams.
using Stream = Backend::Stream;

void expect_has_all(const std::string& msg, std::initializer_list<const char*> parts) {
  for (const char* part : parts) expect_has(msg, part);
}

TEST(EmulatedDevice, AComputeOpReadingAnUploadItDidNotWaitForIsNamed) {
  auto be = device();
  const std::vector<float> x(64, 1.0f);
  Buffer<float> chunk = be->alloc<float>(64, "activation chunk"), y = be->alloc<float>(64, "y");
  be->upload_on(Stream::Upload, chunk, x.data(), x.size());
  const std::string msg = error_of([&] { be->add_inplace(y.data(), chunk.data(), 64); });
  expect_has_all(msg, {"add_inplace on the compute stream", "argument x", "'activation chunk'", "upload stream"});
  // With the event waited for it is queued, and reads what was uploaded.
  be->fill_bytes(y.data(), 0, y.bytes());
  be->wait(Stream::Compute, be->record(Stream::Upload));
  be->add_inplace(y.data(), chunk.data(), 64);
  EXPECT_EQ(be->download_all(y), x);
}

TEST(EmulatedDevice, ADownloadOfComputeOutputWithoutItsEventIsNamed) {
  auto be = device();
  Buffer<float> y = be->alloc<float>(64, "forward output");
  be->fill_bytes(y.data(), 0, y.bytes());
  std::vector<float> host(64);
  const std::string msg = error_of([&] { be->download_on(Stream::Download, host.data(), y, 64); });
  expect_has_all(msg, {"copy_to_host on the download stream", "argument src", "'forward output'", "compute stream"});
  be->synchronize();
}

TEST(EmulatedDevice, AnUploadOverwritingABufferComputeMayStillReadIsNamed) {
  auto be = device();
  const std::vector<float> x(64, 2.0f);
  Buffer<float> slot = be->upload_new(x, "chunk slot 0"), y = be->alloc<float>(64, "y");
  be->add_inplace(y.data(), slot.data(), 64);  // compute reads the slot
  const std::string msg = error_of([&] { be->upload_on(Stream::Upload, slot, x.data(), x.size()); });
  expect_has_all(msg, {"copy_from_host on the upload stream", "'chunk slot 0'", "compute stream"});
  be->synchronize();
}

TEST(EmulatedDevice, OrderThroughAChainOfEventsOrTheHostIsKnown) {
  // Double buffering's cycle: upload -> compute (waits the upload) ->
  // download (waits compute) -> the next upload into the slot waits only for
  // the download, which came after compute: ordered through the chain.
  auto be = device();
  const std::vector<float> x(64, 3.0f);
  std::vector<float> out(64);
  Buffer<float> slot = be->alloc<float>(64, "slot");
  for (int round = 0; round < 3; ++round) {
    be->upload_on(Stream::Upload, slot, x.data(), x.size());
    be->wait(Stream::Compute, be->record(Stream::Upload));
    be->add_inplace(slot.data(), slot.data(), 64);
    be->wait(Stream::Download, be->record(Stream::Compute));
    be->download_on(Stream::Download, out.data(), slot, 64);
    const Backend::Event done = be->record(Stream::Download);
    be->wait(Stream::Upload, done);
    be->wait_host(done);
    EXPECT_EQ(out, std::vector<float>(64, 6.0f)) << "round " << round;
  }
  // What the host saw pass orders later work on every stream.
  be->synchronize();
  be->upload_on(Stream::Upload, slot, x.data(), x.size());
  be->wait_host(be->record(Stream::Upload));
  be->add_inplace(slot.data(), slot.data(), 64);
  EXPECT_EQ(be->download_all(slot), std::vector<float>(64, 6.0f));
}

TEST(EmulatedDevice, AStreamWaitingForASlowUploadSeesItsData) {
  // A throttled copy engine (1 MB/s: the 256 KiB upload takes ~0.26 s)
  // makes an unenforced wait visible: compute would read zeros.
  EmulatedBackendOptions o;
  o.memory_bytes = 16 << 20;
  o.pcie_gbps = 0.001;
  auto be = make_emulated_backend(o);
  const std::vector<float> x(65536, 1.5f);
  Buffer<float> chunk = be->alloc<float>(x.size(), "chunk"), y = be->alloc<float>(x.size(), "y");
  be->fill_bytes(chunk.data(), 0, chunk.bytes());
  be->fill_bytes(y.data(), 0, y.bytes());
  be->wait(Stream::Upload, be->record(Stream::Compute));  // the upload comes after the fill
  be->upload_on(Stream::Upload, chunk, x.data(), x.size());
  be->wait(Stream::Compute, be->record(Stream::Upload));
  be->add_inplace(y.data(), chunk.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(be->download_all(y), x);
}

TEST(EmulatedDevice, CapacityIsHardAndTheHighWaterMarkIsKept) {
  auto be = device(1 << 20);
  Buffer<float> a = be->alloc<float>(200000, "activations chunk");  // 800000 bytes
  try {
    Buffer<float> b = be->alloc<float>(100000, "weights of q_proj");
    FAIL() << "no error";
  } catch (const BudgetError& e) {
    expect_has(e.what(), "weights of q_proj");
    expect_has(e.what(), "--gpu-mem-limit");
  }
  a.reset();
  Buffer<float> c = be->alloc<float>(250000, "c");
  EXPECT_EQ(be->memory().high_water(), 1000000u);
  EXPECT_LE(be->memory().high_water(), be->memory().limit());
  EXPECT_THROW(make_emulated_backend(EmulatedBackendOptions{}), InputError) << "no memory size given";
}

TEST(EmulatedDevice, DeviceMemoryNeverReusesAnAddress) {
  EmulatedDeviceMemory mem(1 << 20);
  void* a = mem.allocate(4096, "test block");
  mem.free(a);
  void* b = mem.allocate(4096, "test block");
  EXPECT_NE(a, b);
  expect_has(error_of([&] { mem.check(a, 4, "op", "arg"); }), "freed");
  EXPECT_EQ(error_of([&] { mem.check(b, 4096, "op", "arg"); }), "");
  EXPECT_THROW(mem.free(a), InternalError) << "double free";
  int on_stack = 0;
  expect_has(error_of([&] { mem.check(&on_stack, 4, "op", "arg"); }), "host pointer");
  mem.free(b);
  EXPECT_EQ(mem.in_use(), 0u);
  EXPECT_EQ(mem.high_water(), 4096u);
}

// Same CPU kernels behind the checks: the results equal the CPU backend's bit
// for bit, through uploads and downloads.
TEST(EmulatedDevice, ResultsEqualTheCpuBackendBitForBit) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  auto cpu = make_cpu_backend();
  auto emu = device();
  const int64_t nseq = 2, seqlen = 7, nheads = 4, nkv = 2, hd = 8, tokens = nseq * seqlen;
  auto randv = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  const auto q = randv(static_cast<size_t>(tokens * nheads * hd)), k = randv(static_cast<size_t>(tokens * nkv * hd)),
             v = randv(static_cast<size_t>(tokens * nkv * hd)), w = randv(static_cast<size_t>(hd * nheads));
  auto run = [&](Backend& be) {
    Buffer<float> dq = be.upload_new(q, "q"), dk = be.upload_new(k, "k"), dv = be.upload_new(v, "v"),
                  dw = be.upload_new(w, "w");
    Buffer<float> out = be.alloc<float>(q.size(), "out"), normed = be.alloc<float>(q.size(), "normed");
    be.attention(dq.data(), dk.data(), dv.data(), out.data(), nseq, seqlen, nheads, nkv, hd);
    be.rmsnorm(out.data(), dw.data(), normed.data(), tokens, nheads * hd, 1e-5f);
    be.swiglu(normed.data(), dq.data(), out.data(), static_cast<int64_t>(q.size()));
    Buffer<float> c = be.alloc<float>(static_cast<size_t>(tokens * tokens), "c");
    be.gemm(Trans::N, Trans::T, tokens, tokens, nheads * hd, 1.0f, out.data(), nheads * hd, normed.data(), nheads * hd,
            0.0f, c.data(), tokens);
    return be.download_all(c);
  };
  const auto want = run(*cpu), got = run(*emu);
  ASSERT_EQ(want.size(), got.size());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace streamq
