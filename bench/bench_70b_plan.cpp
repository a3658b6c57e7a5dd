// The 70B block on paper (issue 13): the device plan of a Llama-3-70B block
// for 128 x 2048 calibration tokens under a device limit (what
// src/pipeline/device_plan.h predicts, the figure `streamq quantize` prints),
// and a projection of the 80-block job on an H100 and an RTX 6000 Ada from
// stated device rates, with the arithmetic shown: FLOPs of each stage as
// this code runs it today (partial forwards per sub-layer group; the factor
// and compensation matrices on the device, float64 or float32 as
// --factor-precision says), and as the device path is meant to run it (group
// outputs reused, TF32 tensor cores, stages overlapped). A projection, not a
// measurement: bench/gpu_check.sh measures on a GPU.
//
//   build/bench_70b_plan [--tokens-seqs 128] [--seqlen 2048] [--limit-gib 44] [--method gptaq-cae|gptq]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "src/methods/compensation.h"
#include "src/model/architecture.h"
#include "src/model/config.h"
#include "src/pipeline/device_plan.h"
#include "src/pipeline/synth.h"

using namespace streamq;

namespace {

struct DeviceRates {
  const char* name;
  double f32_tflops;    // CUDA cores, dense
  double tf32_tflops;   // tensor cores, dense (what cuBLAS uses for float GEMM when allowed)
  double f64_tflops;    // dense float64
  double pcie_gbs;      // host<->device, effective
  double nvme_gbs;      // the host's NVMe, read
};

// Public spec sheets (dense rates); PCIe as commonly measured for pinned
// copies; a PCIe 4.0 NVMe.
constexpr DeviceRates kDevices[] = {
    {"H100 SXM 80GB", 67.0, 494.7, 67.0, 50.0, 7.0},
    {"RTX 6000 Ada 48GB", 91.1, 182.0, 1.42, 25.0, 7.0},
};

double tflop(double flops) { return flops / 1e12; }

}  // namespace

int main(int argc, char** argv) {
  int64_t seqs = 128, seqlen = 2048;
  double limit_gib = 44;
  std::string method = "gptaq-cae";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokens-seqs") seqs = std::atoll(argv[i + 1]);
    else if (a == "--seqlen") seqlen = std::atoll(argv[i + 1]);
    else if (a == "--limit-gib") limit_gib = std::atof(argv[i + 1]);
    else if (a == "--method") method = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--tokens-seqs N] [--seqlen L] [--limit-gib G] [--method gptaq-cae|gptq]\n",
                   argv[0]);
      return 2;
    }
  }
  const bool gptaq = method == "gptaq-cae";
  const SynthSpec spec = synth_preset("llama3-70b");
  ModelConfig c;
  c.hidden = spec.hidden;
  c.intermediate = spec.intermediate;
  c.layers = spec.layers;
  c.heads = spec.heads;
  c.kv_heads = spec.kv_heads;
  c.head_dim = spec.head_dim > 0 ? spec.head_dim : spec.hidden / spec.heads;
  c.vocab = spec.vocab;

  DevicePlanInput in;
  in.model = c;
  in.seqlen = seqlen;
  in.max_seqs_per_chunk = seqs;
  in.fp_flow = gptaq;
  in.sweep_on_device = true;
  in.p1 = gptaq;
  in.p2 = gptaq;
  in.group = 128;
  in.linear_concurrency = 1;
  in.limit = static_cast<uint64_t>(limit_gib * (1ull << 30));
  for (const int bytes : {8, 4}) {
    in.factor_bytes_per_element = bytes;
    std::printf("# the factor on the device in %s: %s\n", bytes == 8 ? "float64" : "float32",
                device_factor_fits(in) ? "fits beside the weights" : "does not fit (it would run on the host)");
  }
  in.factor_bytes_per_element = 4;  // the device plan below: --factor-precision f32
  in.factor_on_device = device_factor_fits(in);
  std::printf("# Llama-3-70B block (hidden %lld, intermediate %lld, %lld heads, %lld kv heads), %s w4 g128,\n"
              "# %lld x %lld calibration tokens, --gpu-mem-limit %.0f GiB, float32 sweep on the device\n\n",
              (long long)c.hidden, (long long)c.intermediate, (long long)c.heads, (long long)c.kv_heads,
              gptaq ? "GPTAQ+CAE" : "GPTQ", (long long)seqs, (long long)seqlen, limit_gib);
  try {
    const DevicePlan plan = plan_device_memory(in);
    std::printf("%s\n", plan.describe().c_str());
  } catch (const std::exception& e) {
    std::printf("device plan: %s\n\n", e.what());
  }

  // ---- FLOPs and bytes of one block, as the code runs it today.
  const double t = static_cast<double>(seqs * seqlen), d = c.hidden, in_ = c.intermediate;
  const double qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  const double flows = gptaq ? 2 : 1;
  const double qkv = 2 * t * d * (qd + 2 * kvd), attn = 2 * t * seqlen * qd,  // causal: QK^T and PV halved
      o = 2 * t * qd * d, gateup = 2 * t * d * 2 * in_, down = 2 * t * in_ * d;
  const double full = qkv + attn + o + gateup + down;
  // collect_stats re-runs the block up to each group: qkv..o..gate/up.
  const double partial = 0 + (qkv + attn) + (qkv + attn + o) + (qkv + attn + o + gateup);
  const double forwards_today = flows * (partial + full);
  const double forwards_reused = flows * 2 * full;  // issue 16: each group's outputs computed once, plus propagate
  const std::vector<double> widths = {d, qd, d, in_};  // inputs of qkv, o, gate/up, down
  double gram = 0, factor = 0, comp = 0;
  for (const double n : widths) {
    gram += (gptaq ? 2 : 1) * 2 * t * n * n;           // X^T X (+ dX^T X)
    factor += n * n * n;                                 // inverse_upper_factor: three n^3/3 stages
    // P1 and P2 on the device: the triangular products (compensation.h), as blocked.
    if (gptaq) comp += 2 * compensation_flops_blocked(static_cast<int64_t>(n), compensation_panels(static_cast<int64_t>(n)));
  }
  double sweep = 0;
  for (const LinearDesc& l : block_linears(c))
    sweep += (gptaq ? 3 : 1) * 2.0 * l.out * static_cast<double>(l.in) * l.in;  // W updates (+ P1, P2 terms)
  const double act_bytes = t * d * 4;  // one flow's boundary, float32
  const double pcie_bytes = flows * act_bytes * (4 + 1 + 1)  // stats passes, propagate up, next boundary down
                            + 2 * 4.0 * 0.855e9;             // original and quantized block, float32
  const double nvme_bytes = flows * act_bytes * 5;            // every pass reads the boundary (disk placement)

  std::printf("per block: forwards %.1f TFLOP today (%.1f with group outputs reused), Gram products %.1f TFLOP,\n"
              "  factor %.2f TFLOP + compensation matrices %.2f TFLOP (on the device, f64 or f32), sweep %.2f TFLOP,\n"
              "  PCIe %.1f GB, NVMe reads %.1f GB (disk placement)\n\n",
              tflop(forwards_today), tflop(forwards_reused), tflop(gram), tflop(factor), tflop(comp), tflop(sweep),
              pcie_bytes / 1e9, nvme_bytes / 1e9);
  std::printf("| device | forwards+Gram (f32 cores) | same on TF32 tensor cores | factor+P f64 on device | "
              "factor+P f32 on device | sweep f32 | PCIe | NVMe | 80 blocks today, f64 factor | "
              "80 blocks today, f32 factor | 80 blocks, TF32 + reuse + overlap, f32 factor |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const DeviceRates& r : kDevices) {
    const double fw32 = (forwards_today + gram) / (r.f32_tflops * 1e12);
    const double fw_tc = (forwards_reused + gram) / (r.tf32_tflops * 1e12);
    const double fac64 = (factor + comp) / (r.f64_tflops * 1e12);
    const double fac32 = (factor + comp) / (r.f32_tflops * 1e12);
    const double sw = sweep / (r.f32_tflops * 1e12);
    const double pcie = pcie_bytes / (r.pcie_gbs * 1e9), nvme = nvme_bytes / (r.nvme_gbs * 1e9);
    // Today: stages in sequence per block (one in-order device queue), I/O
    // behind compute only where the store's read-ahead overlaps it.
    const double today64 = fw32 + fac64 + sw + pcie + std::max(0.0, nvme - fw32);
    const double today32 = fw32 + fac32 + sw + pcie + std::max(0.0, nvme - fw32);
    // The goal's shape: compute-bound stages overlapped with copies and I/O.
    const double goal = std::max({fw_tc + fac32 + sw, pcie, nvme});
    std::printf("| %s | %.1f s | %.1f s | %.2f s | %.2f s | %.2f s | %.1f s | %.1f s | %.0f min | %.0f min | %.1f min |\n",
                r.name, fw32, fw_tc, fac64, fac32, sw, pcie, nvme, 80 * today64 / 60, 80 * today32 / 60,
                80 * goal / 60);
  }
  std::printf("\nRates: H100 SXM f32 67, TF32 dense 495, f64 67 TFLOPS, PCIe 5 ~50 GB/s; RTX 6000 Ada f32 91, "
              "TF32 dense 182, f64 1.4 TFLOPS, PCIe 4 ~25 GB/s; NVMe 7 GB/s.\n"
              "A projection from stated rates at 100%% of peak, not a measurement.\n");
  return 0;
}
