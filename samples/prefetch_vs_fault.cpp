// SPDX-License-Identifier: GPL-2.0
//
// prefetch_vs_fault: the same computation with and without prefetch hints.
//
// y = 2 * x + y and the sum of y on the device, then the CPU reads y back,
// twice, each time on fresh arrays that start in system memory:
//
//   on demand   the kernels touch x and y where they lie: the device faults,
//               and the driver moves the pages it faulted on to VRAM (with
//               neighbours its prefetcher picks); the CPU's reads fault the
//               pages of y back, a few at a time (fault-around).
//   prefetched  uvm::prefetch() moves x and y to VRAM before the kernels, in
//               large copies and without a fault, and y back to system
//               memory before the CPU reads it.
//
// Each phase is timed (the device phase with uvm::event, the CPU phase with
// a clock), the results are verified, and the counters of both runs are
// printed side by side.
#include <chrono>
#include <cstdio>
#include <uvm/uvm.hpp>

#include "common.hpp"

namespace {

constexpr const char* kUsage =
    "usage: prefetch_vs_fault [ELEMENTS]\n"
    "Runs y = 2x + y and sum(y) on the first hmmgpu device that runs kernels, on\n"
    "ELEMENTS floats (default 1M; K, M suffixes), once on demand and once with\n"
    "prefetches, and prints the time of each phase and the counters of each run.\n"
    "Exit status: 0 verified, 1 wrong or error, 2 usage, 77 no device.\n";

struct outcome {
  std::chrono::nanoseconds device_phase{};  // to the device and compute
  std::chrono::nanoseconds cpu_phase{};     // back to the CPU and verify
  uvm::device_counters moved;               // what the device counted
  bool verified = false;
};

outcome compute(uvm::device& gpu, std::size_t n, bool prefetch) {
  uvm::stream s(gpu);
  uvm::managed_vector<float> x(n);
  uvm::managed_vector<float> y(n);
  double expect = 0;
  for (std::size_t i = 0; i < n; i++) {
    x[i] = static_cast<float>(i % 1000) / 2;  // exact in binary32, and so is 2x + y
    y[i] = 1.0F;
    expect += 2 * static_cast<double>(x[i]) + 1;
  }
  outcome out;
  const uvm::device_counters before = gpu.counters();

  // Device phase: to the device, compute.
  uvm::event start;
  uvm::event stop;
  start.record(s);
  if (prefetch) {
    uvm::prefetch(x, gpu, s);
    uvm::prefetch(y, gpu, s);
  }
  uvm::axpy(2.0F, x, y, s);
  auto total = uvm::sum(y, s);
  stop.record(s);
  s.synchronize();
  out.device_phase = uvm::elapsed_time(start, stop);

  // CPU phase: back to the CPU, verify.
  const auto t0 = std::chrono::steady_clock::now();
  if (prefetch) {
    uvm::prefetch(y, uvm::cpu);  // synchronous form
  }
  bool ok = total.get() == expect;
  for (std::size_t i = 0; i < n; i++) {  // reads y only: x stays on the device
    ok = ok && y[i] == static_cast<float>(i % 1000) + 1.0F;
  }
  out.cpu_phase = std::chrono::steady_clock::now() - t0;
  out.moved = gpu.counters() - before;
  out.verified = ok;
  return out;
}

void row(const char* what, std::uint64_t a, std::uint64_t b) {
  std::printf("  %-22s %14llu %14llu\n", what, static_cast<unsigned long long>(a),
              static_cast<unsigned long long>(b));
}

int prefetch_vs_fault(std::span<char* const> args) {
  const std::size_t n = samples::size_arg(args, 0, std::size_t{1} << 20);
  auto devices = samples::open_compute_devices();
  uvm::device& gpu = devices.front();
  std::printf("prefetch_vs_fault: y = 2x + y and sum(y) on %zu floats (%s per array) on %s\n", n,
              samples::bytes(n * sizeof(float)).c_str(),
              uvm::to_string(uvm::location(gpu)).c_str());

  const outcome demand = compute(gpu, n, false);
  const outcome hinted = compute(gpu, n, true);

  std::printf("  %-22s %14s %14s\n", "", "on demand", "prefetched");
  std::printf("  %-22s %11.3f ms %11.3f ms\n", "device phase", samples::ms(demand.device_phase),
              samples::ms(hinted.device_phase));
  std::printf("  %-22s %11.3f ms %11.3f ms\n", "CPU phase", samples::ms(demand.cpu_phase),
              samples::ms(hinted.cpu_phase));
  const uvm::device_counters& d = demand.moved;
  const uvm::device_counters& h = hinted.moved;
  if (!samples::has_counters(gpu)) {
    std::printf("  (%s reports no counters)\n", uvm::to_string(uvm::location(gpu)).c_str());
  } else {
    row("to_device_pages", d.to_device_pages, h.to_device_pages);
    row("device_faults", d.device_faults, h.device_faults);
    row("fault_batches", d.fault_batches, h.fault_batches);
    row("prefetched_pages", d.prefetched_pages, h.prefetched_pages);
    row("to_system_pages", d.to_system_pages, h.to_system_pages);
    row("cpu_faults", d.cpu_faults, h.cpu_faults);
    row("fault_around_pages", d.fault_around_pages, h.fault_around_pages);
    row("copy_batches", d.copy_batches, h.copy_batches);
    std::printf("  %-22s %11.3f ms %11.3f ms\n", "copy engine busy",
                samples::ms(samples::copy_engine_time(d)),
                samples::ms(samples::copy_engine_time(h)));
  }

  if (!demand.verified || !hinted.verified) {
    std::printf("prefetch_vs_fault: FAILED: wrong result %s\n",
                demand.verified ? "with prefetching" : "on demand");
    return samples::kExitWrong;
  }
  std::printf("prefetch_vs_fault: verified both runs; prefetching was %.2fx as fast overall\n",
              samples::ms(demand.device_phase + demand.cpu_phase) /
                  samples::ms(hinted.device_phase + hinted.cpu_phase));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return samples::run("prefetch_vs_fault", kUsage, argc, argv, prefetch_vs_fault);
}
