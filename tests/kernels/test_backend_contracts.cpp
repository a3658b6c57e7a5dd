// What every backend promises beyond the numbers of the op table
// (test_backend_ops.cpp), checked on every backend of the build through the
// Backend interface alone: memory (budget, ownership, copies), argument
// errors, empty problems, non-positive-definite input, causality and
// determinism of attention. Compiled into the GPU binaries too
// (tests/gpu/test_backend_ops.cpp).
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "scheduler/trace.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/kernels/backends_under_test.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- memory

TEST(BackendContracts, CopiesRoundTripAndBuffersCountInTheLedger) {
  STREAMQ_SEEDED_RNG(rng);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const uint64_t before = be->memory().in_use();
    const std::vector<double> h = random_normal<double>(rng, 1000);
    {
      Buffer<double> a = be->upload_new(h, "a");
      EXPECT_EQ(a.backend(), be);
      EXPECT_EQ(a.size(), 1000u);
      EXPECT_EQ(be->memory().in_use(), before + 8000);
      EXPECT_GE(be->memory().high_water(), before + 8000);
      Buffer<double> b = be->alloc<double>(1000, "b");
      be->fill_bytes(b.data(), 0, b.bytes());
      be->copy_within(b.data() + 10, a.data() + 500, 100 * sizeof(double));
      std::vector<double> back = be->download_all(b);
      for (int i = 0; i < 1000; ++i)
        ASSERT_EQ(back[i], i >= 10 && i < 110 ? h[i + 490] : 0.0) << "element " << i;
      std::vector<double> part(5);
      be->download(part.data(), a, 5, 995);  // the last five
      be->synchronize();
      EXPECT_EQ(part, std::vector<double>(h.end() - 5, h.end()));
      EXPECT_EQ(be->download_all(a), h);
      Buffer<double> moved = std::move(a);  // moving keeps the memory and its count
      EXPECT_EQ(be->memory().in_use(), before + 16000);
      EXPECT_EQ(be->download_all(moved), h);
    }
    EXPECT_EQ(be->memory().in_use(), before) << "buffers return their bytes";
  }
}

TEST(BackendContracts, CopiesCheckRangeAndOwnership) {
  const std::vector<Backend*> all = backends_under_test();
  const std::unique_ptr<Backend> other = make_cpu_backend();
  for (Backend* be : all) {
    SCOPED_TRACE(be->name());
    Buffer<float> a = be->alloc<float>(10, "a");
    std::vector<float> h(11);
    EXPECT_THROW(be->upload(a, h.data(), 11), InternalError);
    EXPECT_THROW(be->upload(a, h.data(), 2, 9), InternalError);
    EXPECT_THROW(be->download(h.data(), a, 1, 10), InternalError);
    be->upload(a, h.data(), 0, 10);  // empty, at the end: fine
    const Buffer<float> foreign = other->alloc<float>(10, "foreign");
    try {
      be->upload(foreign, h.data(), 1);
      ADD_FAILURE() << "a buffer of another backend was accepted";
    } catch (const InternalError& e) {
      EXPECT_TRUE(contains(e.what(), "belongs to backend cpu")) << e.what();
    }
    be->synchronize();
  }
}

// Pinned host memory: host memory every backend hands out (data() is a host
// pointer), counted in its own ledger and not in the device's; copies to and
// from it on the copy streams, ordered by events and waited for with
// wait_host, give the bytes that pageable copies give.
TEST(BackendContracts, PinnedHostMemoryCountsApartAndCopiesAsynchronously) {
  STREAMQ_SEEDED_RNG(rng);
  using Stream = Backend::Stream;
  const std::vector<float> h = random_normal<float>(rng, 777);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const uint64_t device_before = be->memory().in_use(), pinned_before = be->pinned_memory().in_use();
    {
      PinnedBuffer<float> src = be->alloc_pinned<float>(h.size(), "pinned source");
      PinnedBuffer<float> dst = be->alloc_pinned<float>(h.size(), "pinned destination");
      EXPECT_EQ(src.size(), h.size());
      EXPECT_EQ(be->pinned_memory().in_use(), pinned_before + 2 * h.size() * sizeof(float));
      EXPECT_GE(be->pinned_memory().high_water(), pinned_before + 2 * h.size() * sizeof(float));
      EXPECT_EQ(be->memory().in_use(), device_before) << "pinned memory is host memory, not the device's";
      std::copy(h.begin(), h.end(), src.data());  // written by the host directly
      Buffer<float> d = be->alloc<float>(h.size(), "device copy");
      be->wait(Stream::Upload, be->record(Stream::Compute));  // d exists before the upload
      be->upload_on(Stream::Upload, d, src.data(), h.size());
      be->wait(Stream::Download, be->record(Stream::Upload));
      be->download_on(Stream::Download, dst.data(), d, h.size());
      be->wait_host(be->record(Stream::Download));
      EXPECT_TRUE(std::equal(h.begin(), h.end(), dst.data())) << "the round trip through pinned memory";
      be->synchronize();
    }
    EXPECT_EQ(be->pinned_memory().in_use(), pinned_before) << "pinned buffers return their bytes";
    EXPECT_EQ(be->memory().in_use(), device_before);
  }
}

TEST(BackendContracts, CpuPoolHonoursItsLimit) {
  CpuBackendOptions opt;
  opt.memory_limit = 1000;
  const std::unique_ptr<Backend> be = make_cpu_backend(opt);
  Buffer<double> a = be->alloc<double>(100, "a");  // 800 bytes
  try {
    be->alloc<float>(51, "Hessian chunk");  // 204 more: over by 4
    FAIL() << "granted past the limit";
  } catch (const BudgetError& e) {
    for (const char* part : {"CPU backend memory pool", "Hessian chunk", "204 bytes", "1000 bytes"})
      EXPECT_TRUE(contains(e.what(), part)) << part << " missing from: " << e.what();
  }
  EXPECT_EQ(be->memory().in_use(), 800u);
  a.reset();
  Buffer<float> b = be->alloc<float>(250, "exactly the limit");
  EXPECT_EQ(be->memory().high_water(), 1000u);
  // The memory is the host's: ops take it directly.
  EXPECT_TRUE(be->host_addressable());
  b.data()[249] = 1.0f;
}

// ---- tracing: a device records what it runs on a lane of its own

TEST(BackendContracts, ADeviceTracesItsOpsAndCopiesInStreamOrder) {
  STREAMQ_SEEDED_RNG(rng);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    TraceRecorder trace;
    be->set_trace(&trace);
    const std::vector<float> a = random_normal<float>(rng, 64 * 32), b = random_normal<float>(rng, 32 * 16);
    Buffer<float> da = be->upload_new(a, "a"), db = be->upload_new(b, "b");
    Buffer<float> dc = be->alloc<float>(64 * 16, "c");
    be->gemm(Trans::N, Trans::N, 64, 16, 32, 1.0f, da.data(), 32, db.data(), 16, 0.0f, dc.data(), 16);
    std::vector<float> c(64 * 16);
    be->download(c.data(), dc, c.size());
    be->synchronize();
    const double t1 = trace.now_us();
    be->set_trace(nullptr);
    be->add_inplace(dc.data(), dc.data(), 4);  // not traced any more
    be->synchronize();

    const nlohmann::json j = trace.to_json();
    std::map<int, std::string> lanes;
    for (const auto& e : j["traceEvents"])
      if (e["ph"] == "M" && e["name"] == "thread_name") lanes[e["tid"].get<int>()] = e["args"]["name"];
    std::vector<nlohmann::json> device;
    for (const auto& e : j["traceEvents"])
      if (e["ph"] == "X" && lanes[e["tid"].get<int>()].rfind("device", 0) == 0) device.push_back(e);
    if (be->host_addressable()) {
      // The CPU backend runs ops inside its caller's spans and records nothing.
      EXPECT_TRUE(device.empty()) << j.dump();
      continue;
    }
    ASSERT_EQ(device.size(), 4u) << j.dump();
    const char* names[] = {"copy_from_host", "copy_from_host", "gemm", "copy_to_host"};
    const char* cats[] = {trace_cat::kH2D, trace_cat::kH2D, trace_cat::kCompute, trace_cat::kD2H};
    const uint64_t bytes[] = {a.size() * 4, b.size() * 4, 0, c.size() * 4};
    // Spans of one stream follow each other; a device's are anchored to the
    // host clock never late (kernels/cuda/stream_trace.h), so the last ends
    // before synchronize() returned. 2 us: CUDA event times are float
    // milliseconds (~0.5 us resolution near the origin).
    const double slack_us = 2;
    double prev_end = 0;
    for (int i = 0; i < 4; ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(device[i]["name"], names[i]);
      EXPECT_EQ(device[i]["cat"], cats[i]);
      EXPECT_EQ(device[i]["tid"], device[0]["tid"]) << "one stream, one lane";
      if (bytes[i] > 0) {
        EXPECT_EQ(device[i]["args"]["bytes"].get<uint64_t>(), bytes[i]);
      }
      const double ts = device[i]["ts"].get<double>(), dur = device[i]["dur"].get<double>();
      EXPECT_GE(dur, 0);
      EXPECT_GE(ts, prev_end - slack_us) << "stream order: each starts after the previous ended";
      prev_end = ts + dur;
    }
    EXPECT_LE(prev_end, t1 + slack_us) << "the last ended before synchronize() returned";
  }
}

// Double buffering, as the pipeline runs chunks: uploads on the upload
// stream, compute waiting for each, downloads waiting for compute, a slot
// reused only after its download. Same bytes as everything on the compute
// stream; on a device the copies are on lanes of their own.
TEST(BackendContracts, CopyStreamsOrderedByEventsGiveTheComputeStreamsResult) {
  STREAMQ_SEEDED_RNG(rng);
  using Stream = Backend::Stream;
  const int chunks = 5, slots = 2, m = 48, k = 32, n = 16;
  std::vector<std::vector<float>> x(chunks);
  for (auto& c : x) c = random_normal<float>(rng, m * k);
  const std::vector<float> w = random_normal<float>(rng, k * n);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    Buffer<float> dw = be->upload_new(w, "w");
    // Reference: one stream.
    std::vector<std::vector<float>> want(chunks, std::vector<float>(m * n));
    {
      Buffer<float> dx = be->alloc<float>(m * k, "x"), dy = be->alloc<float>(m * n, "y");
      for (int c = 0; c < chunks; ++c) {
        be->upload(dx, x[c].data(), x[c].size());
        be->gemm(Trans::N, Trans::N, m, n, k, 1.0f, dx.data(), k, dw.data(), n, 0.0f, dy.data(), n);
        be->download(want[c].data(), dy, want[c].size());
        be->synchronize();
      }
    }
    TraceRecorder trace;
    be->set_trace(&trace);
    std::vector<Buffer<float>> dx, dy;
    std::vector<Backend::Event> slot_free(slots);  // the slot's last download
    for (int i = 0; i < slots; ++i) {
      dx.push_back(be->alloc<float>(m * k, "x slot " + std::to_string(i)));
      dy.push_back(be->alloc<float>(m * n, "y slot " + std::to_string(i)));
    }
    be->wait(Stream::Upload, be->record(Stream::Compute));  // the slots exist before the first upload
    std::vector<std::vector<float>> got(chunks, std::vector<float>(m * n));
    std::vector<Backend::Event> done(chunks);
    for (int c = 0; c < chunks; ++c) {
      const int i = c % slots;
      be->wait(Stream::Upload, slot_free[i]);
      be->upload_on(Stream::Upload, dx[i], x[c].data(), x[c].size());
      be->wait(Stream::Compute, be->record(Stream::Upload));
      be->wait(Stream::Compute, slot_free[i]);  // dy[i]'s last download
      be->gemm(Trans::N, Trans::N, m, n, k, 1.0f, dx[i].data(), k, dw.data(), n, 0.0f, dy[i].data(), n);
      be->wait(Stream::Download, be->record(Stream::Compute));
      be->download_on(Stream::Download, got[c].data(), dy[i], got[c].size());
      done[c] = slot_free[i] = be->record(Stream::Download);
    }
    for (int c = 0; c < chunks; ++c) {
      be->wait_host(done[c]);
      EXPECT_EQ(got[c], want[c]) << "chunk " << c;
    }
    be->synchronize();
    be->set_trace(nullptr);
    std::set<std::string> lanes;
    const nlohmann::json j = trace.to_json();
    for (const auto& e : j["traceEvents"])
      if (e["ph"] == "M" && e["name"] == "thread_name") lanes.insert(e["args"]["name"].get<std::string>());
    if (be->host_addressable()) continue;  // one queue: nothing of its own to trace
    EXPECT_TRUE(lanes.count("device (" + be->name() + ", compute stream)")) << j.dump();
    EXPECT_TRUE(lanes.count("device (" + be->name() + ", upload stream)")) << j.dump();
    EXPECT_TRUE(lanes.count("device (" + be->name() + ", download stream)")) << j.dump();
  }
}

// ---- argument errors and empty problems: the same on every backend

TEST(BackendContracts, GemmZeroSizesAndBadArguments) {
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const GuardedBuffer<float> c(*be, 6);  // NaN: beta == 0 must clear without reading
    be->gemm(Trans::N, Trans::N, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.0f, c.get(), 3);
    for (float x : c.download("k=0, beta=0")) EXPECT_EQ(x, 0.0f);
    const std::vector<double> c0 = {1, -2, 3, -4, 5, -6};
    const GuardedBuffer<double> cd(*be, c0);
    be->gemm(Trans::N, Trans::N, 2, 3, 0, 1.0, nullptr, 1, nullptr, 3, -0.5, cd.get(), 3);
    const std::vector<double> scaled = cd.download("k=0, beta=-0.5");
    for (size_t i = 0; i < c0.size(); ++i) EXPECT_EQ(scaled[i], -0.5 * c0[i]);
    be->gemm(Trans::N, Trans::N, 0, 3, 2, 1.0f, nullptr, 2, nullptr, 3, 0.0f, nullptr, 3);  // m == 0: nothing
    // lda = 2 < k = 3, and a negative size: rejected before touching memory.
    EXPECT_THROW(be->gemm(Trans::N, Trans::N, 2, 3, 3, 1.0f, nullptr, 2, nullptr, 3, 0.0f, c.get(), 3),
                 InternalError);
    EXPECT_THROW(be->gemm(Trans::T, Trans::N, -1, 3, 3, 1.0, nullptr, 3, nullptr, 3, 0.0, cd.get(), 3),
                 InternalError);
    EXPECT_THROW(be->gram_bf16_accumulate(nullptr, -1, 3, c.get(), 0.0f), InternalError);
    be->synchronize();
  }
}

TEST(BackendContracts, GramChunksAccumulateToOneCall) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 96, tokens = 600, split = 250;
  std::vector<uint16_t> bits(static_cast<size_t>(n * tokens));
  std::normal_distribution<float> normal;
  for (auto& b : bits) b = f32_to_bf16(normal(rng));
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const GuardedBuffer<uint16_t> x(*be, bits);
    const GuardedBuffer<float> whole(*be, n * n), chunked(*be, n * n);
    be->gram_bf16_accumulate(x.get(), n, tokens, whole.get(), 0.0f);
    be->gram_bf16_accumulate(x.get(), n, split, chunked.get(), 0.0f);
    be->gram_bf16_accumulate(x.get() + split * n, n, tokens - split, chunked.get(), 1.0f);
    const std::vector<float> a = whole.download("one call"), b = chunked.download("chunks");
    // The same sums grouped differently: float rounding of a 600-term sum.
    EXPECT_LE(relative_error(b, widen(a)), double(tokens + 2) * kF32Eps);
  }
}

TEST(BackendContracts, NotPositiveDefiniteReturnsFalseAndTheBackendStaysUsable) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 33;
  const std::vector<double> good = random_spd(rng, n);
  std::vector<double> negative = good;  // eigenvalues in [-9, -5]
  for (int64_t i = 0; i < n; ++i) negative[i * n + i] -= 10.0;
  std::vector<double> indefinite = good;  // one eigenvalue below zero, found late in the sweep
  indefinite[(n - 1) * n + (n - 1)] -= 100.0;
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    for (const auto* h : {&negative, &indefinite}) {
      const GuardedBuffer<double> a(*be, *h), b(*be, *h);
      EXPECT_FALSE(be->cholesky_lower(a.get(), n));
      EXPECT_FALSE(be->inverse_upper_factor(b.get(), n));
      a.download("failed cholesky_lower");  // guards only
      b.download("failed inverse_upper_factor");
    }
    const GuardedBuffer<double> a(*be, good), b(*be, good);  // a failure leaves no state behind
    EXPECT_TRUE(be->cholesky_lower(a.get(), n));
    EXPECT_TRUE(be->inverse_upper_factor(b.get(), n));
    be->synchronize();
  }
}

TEST(BackendContracts, NanInputAndSingularFactorThrow) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 7;
  std::vector<double> h = random_spd(rng, n);
  h[3 * n + 1] = h[1 * n + 3] = std::numeric_limits<double>::quiet_NaN();  // an error, not "not PD"
  std::vector<double> l = to_double(exact_cholesky_lower(to_exact(random_spd(rng, n)), n));
  l[4 * n + 4] = 0.0;  // singular
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const GuardedBuffer<double> a(*be, h), b(*be, h), c(*be, l);
    EXPECT_THROW(be->cholesky_lower(a.get(), n), InternalError);
    EXPECT_THROW(be->inverse_upper_factor(b.get(), n), InternalError);
    try {
      be->invert_lower_triangular(c.get(), n);
      be->synchronize();
      ADD_FAILURE() << "a singular factor was inverted";
    } catch (const InternalError& e) {
      EXPECT_TRUE(contains(e.what(), "diagonal element 4")) << e.what();
    }
    EXPECT_TRUE(be->cholesky_lower(nullptr, 0));  // size zero: a no-op that succeeds
    EXPECT_TRUE(be->inverse_upper_factor(static_cast<double*>(nullptr), 0));
    EXPECT_TRUE(be->inverse_upper_factor(static_cast<float*>(nullptr), 0));
    be->invert_lower_triangular(nullptr, 0);
    EXPECT_THROW(be->cholesky_lower(nullptr, -1), InternalError);
    // The SVD of a matrix holding a NaN is an error naming its shape; of an
    // empty one, a no-op.
    const GuardedBuffer<double> d(*be, h), s(*be, static_cast<size_t>(n)), u(*be, static_cast<size_t>(n * n)),
        vt(*be, static_cast<size_t>(n * n));
    try {
      be->svd(d.get(), n, n, s.get(), u.get(), vt.get());
      ADD_FAILURE() << "the SVD of a matrix with a NaN returned";
    } catch (const InternalError& e) {
      EXPECT_TRUE(contains(e.what(), "7x7")) << e.what();
      EXPECT_TRUE(contains(e.what(), "NaN")) << e.what();
    }
    be->svd(nullptr, 0, 3, nullptr, nullptr, nullptr);
    be->synchronize();
  }
}

TEST(BackendContracts, RopeAndElementwiseRejectBadShapes) {
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const std::vector<float> table(4 * 2, 0.5f);
    const GuardedBuffer<float> t(*be, table), x(*be, 64);
    const RopeTable rt{4, 2, t.get(), t.get()};
    EXPECT_THROW(be->rope(x.get(), 1, 4, 1, 5, rt), InternalError);  // odd head_dim
    EXPECT_THROW(be->rope(x.get(), 1, 5, 1, 4, rt), InternalError);  // seqlen > max_pos
    EXPECT_THROW(be->rope(x.get(), 1, 4, 1, 6, rt), InternalError);  // head_dim != 2 half
    EXPECT_THROW(be->rope(x.get(), 1, 4, 1, 4, RopeTable{4, 2, nullptr, nullptr}), InternalError);
    be->add_inplace(nullptr, nullptr, 0);
    EXPECT_THROW(be->add_inplace(nullptr, nullptr, -1), InternalError);
    EXPECT_THROW(be->add_bias(nullptr, nullptr, 2, -1), InternalError);
    be->synchronize();
  }
}

// ---- attention beyond its numbers

TEST(BackendContracts, AttentionRejectsWhatItCannotDoAndSkipsEmptyProblems) {
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const GuardedBuffer<float> buf(*be, 4 * 6 * 64);
    float* p = buf.get();
    EXPECT_THROW(be->attention(p, p, p, p, 1, 4, 6, 4, 2), InternalError);  // heads not a multiple of kv
    EXPECT_THROW(be->attention(p, p, p, p, 1, 4, 2, 0, 64), InternalError);
    be->attention(nullptr, nullptr, nullptr, nullptr, 0, 4, 2, 1, 64);
    be->attention(nullptr, nullptr, nullptr, nullptr, 1, 0, 2, 1, 64);
    be->synchronize();
  }
}

// A shape a backend cannot do (the CUDA kernel's register accumulators end
// at head_dim 128) is refused with an InternalError, never computed wrong.
TEST(BackendContracts, AttentionHeadDim256IsRightOrRefused) {
  STREAMQ_SEEDED_RNG(rng);
  AttentionOpCase c({1, 7, 2, 2, 256});
  c.prepare(rng);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    try {
      const Outcome o = c.run(*be);
      EXPECT_TRUE(o.defect.empty()) << o.defect;
      EXPECT_LE(o.error, c.tolerance().max_error) << c.tolerance().reason;
    } catch (const InternalError& e) {
      std::printf("[backend-ops] %s refuses attention head_dim 256: %s\n", be->name().c_str(), e.what());
    }
    if (be->name() == "cpu") {
      EXPECT_NO_THROW(c.run(*be)) << "the CPU backend is the fallback";
    }
  }
}

std::vector<float> run_attention(Backend& be, const AttentionInputs& in, const AttentionCase& c) {
  const GuardedBuffer<float> q(be, in.q), k(be, in.k), v(be, in.v), out(be, in.q.size());
  be.attention(q.get(), k.get(), v.get(), out.get(), c.nseq, c.seqlen, c.nheads, c.nkv, c.hd);
  return out.download("attention out");
}

TEST(BackendContracts, AttentionIsCausalAndSequencesAreIndependent) {
  STREAMQ_SEEDED_RNG(rng);
  const AttentionCase c{2, 150, 4, 2, 16};
  const int64_t cut = 70, qw = c.nheads * c.hd, kw = c.nkv * c.hd, seq_elems = c.seqlen * qw;
  const AttentionInputs in(rng, c);
  AttentionInputs changed = in;  // k and v of sequence 0's tokens after `cut`
  for (int64_t t = cut + 1; t < c.seqlen; ++t)
    for (int64_t i = 0; i < kw; ++i) {
      changed.k[t * kw + i] += 1.0f;
      changed.v[t * kw + i] -= 2.0f;
    }
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const std::vector<float> before = run_attention(*be, in, c), after = run_attention(*be, changed, c);
    EXPECT_TRUE(std::equal(before.begin(), before.begin() + (cut + 1) * qw, after.begin()))
        << "tokens <= cut must not see later keys";
    EXPECT_FALSE(std::equal(before.begin() + (cut + 1) * qw, before.begin() + seq_elems,
                            after.begin() + (cut + 1) * qw))
        << "tokens after cut must see their own changed keys";
    EXPECT_TRUE(std::equal(before.begin() + seq_elems, before.end(), after.begin() + seq_elems))
        << "sequence 1 must not see sequence 0";
  }
}

TEST(BackendContracts, AttentionKeepsALaterNonFiniteTokenOutOfEarlierRows) {
  STREAMQ_SEEDED_RNG(rng);
  const AttentionCase c{2, 70, 4, 2, 64};
  AttentionInputs in(rng, c);
  // The last token of sequence 0 gets an infinite key and a NaN value: only
  // that row may turn non-finite; sequence 1 is untouched.
  const int64_t kw = c.nkv * c.hd, qw = c.nheads * c.hd, last = c.seqlen - 1;
  for (int64_t i = 0; i < kw; ++i) {
    in.k[last * kw + i] = std::numeric_limits<float>::infinity();
    in.v[last * kw + i] = std::numeric_limits<float>::quiet_NaN();
  }
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    const std::vector<float> got = run_attention(*be, in, c);
    for (int64_t row = 0; row < c.nseq * c.seqlen; ++row)
      for (int64_t i = 0; i < qw; ++i) {
        if (row == last)
          ASSERT_TRUE(std::isnan(got[row * qw + i])) << "row " << row << " col " << i;
        else
          ASSERT_TRUE(std::isfinite(got[row * qw + i])) << "row " << row << " col " << i << " saw a later token";
      }
  }
}

TEST(BackendContracts, AttentionIsBitIdenticalAcrossRunsAndThreadCounts) {
  STREAMQ_SEEDED_RNG(rng);
  const AttentionCase c{2, 300, 8, 2, 64};
  const AttentionInputs in(rng, c);
  for (Backend* be : backends_under_test()) {
    SCOPED_TRACE(be->name());
    std::vector<float> one, two;
    tbb::task_arena(1).execute([&] { one = run_attention(*be, in, c); });
    tbb::task_arena(2).execute([&] { two = run_attention(*be, in, c); });
    const std::vector<float> many = run_attention(*be, in, c);
    EXPECT_TRUE(bitwise_equal(one, two));
    EXPECT_TRUE(bitwise_equal(one, many));
  }
}

TEST(BackendContracts, UnsupportedOpsSayWhichBackendAndOp) {
  for (Backend* be : backends_under_test())
    for (Op op : kAllOps)
      if (!be->supports(op)) std::printf("[backend-ops] %s does not support %s\n", be->name().c_str(), op_name(op));
  EXPECT_EQ(make_cpu_backend()->name(), "cpu");
}

}  // namespace
}  // namespace streamq::test
