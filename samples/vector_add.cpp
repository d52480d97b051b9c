// SPDX-License-Identifier: GPL-2.0
//
// vector_add: c = a + b on an hmmgpu or CUDA device, with Unified Memory.
//
// The "hello world" of the library, in four steps:
//   1. allocate a, b and c as managed memory and fill a and b on the CPU;
//   2. prefetch them to the device: its copy engine moves the pages into
//      VRAM up front, in large copies (the first kernel of a process still
//      faults once per page group, only to map what is already there);
//   3. run on the device: c = b (copy_bytes), then c = 1 * a + c (axpy);
//   4. verify on the CPU: reading c faults its pages back to system memory.
// Then it prints what the device counted meanwhile: migrations each way,
// faults, copy-engine time.
//
// Any memory works with a device under HMM (malloc, std::vector); managed
// memory only makes each array a page-aligned mapping of its own.
#include <cstdio>
#include <uvm/uvm.hpp>

#include "common.hpp"

namespace {

constexpr const char* kUsage =
    "usage: vector_add [ELEMENTS]\n"
    "Adds two vectors of ELEMENTS floats (default 256K; K, M suffixes) on the first\n"
    "device that runs kernels (hmmgpu, else CUDA), verifies the sum on the CPU and\n"
    "prints the device's counters. Exit status: 0 verified, 1 wrong or error, 2 usage,\n"
    "77 no device.\n";

int vector_add(std::span<char* const> args) {
  // At most 2^24: every integer up to it is exact as a float.
  const std::size_t n = samples::size_arg(args, 0, std::size_t{256} << 10);
  if (n > (std::size_t{1} << 24)) {
    throw samples::usage_error("at most 16M elements");
  }
  auto devices = samples::open_compute_devices();
  uvm::device& gpu = devices.front();
  uvm::stream s(gpu);
  std::printf("vector_add: %zu floats (%s per vector) on %s (%s)\n", n,
              samples::bytes(n * sizeof(float)).c_str(), uvm::to_string(uvm::location(gpu)).c_str(),
              gpu.properties().name.c_str());

  // 1. Managed arrays, filled on the CPU: their pages are in system memory.
  uvm::managed_vector<float> a(n);
  uvm::managed_vector<float> b(n);
  uvm::managed_vector<float> c(n);
  for (std::size_t i = 0; i < n; i++) {
    a[i] = static_cast<float>(i);
    b[i] = static_cast<float>(2 * (n - i));
  }
  const uvm::device_counters before = gpu.counters();

  // 2. Prefetch: asynchronous, in stream order before the kernels.
  uvm::event start;
  uvm::event stop;
  start.record(s);
  auto moved_a = uvm::prefetch(a, gpu, s);
  auto moved_b = uvm::prefetch(b, gpu, s);
  auto moved_c = uvm::prefetch(c, gpu, s);

  // 3. The kernels: c = b, then c = 1 * a + c.
  uvm::copy_bytes(c, b, s);
  uvm::axpy(1.0F, a, c, s);
  stop.record(s);
  s.synchronize();  // throws if anything above failed
  std::printf("prefetched %zu pages to the device; prefetch and kernels took %.3f ms\n",
              moved_a.get().migrated + moved_b.get().migrated + moved_c.get().migrated,
              samples::ms(uvm::elapsed_time(start, stop)));

  // 4. Verify on the CPU. The first read of each page of c faults, and the
  // driver brings it back with its neighbours (fault-around).
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; i++) {
    const auto expect = static_cast<float>(i + 2 * (n - i));
    if (c[i] != expect && wrong++ < 5) {
      std::printf("c[%zu] = %g, expected %g\n", i, static_cast<double>(c[i]),
                  static_cast<double>(expect));
    }
  }
  samples::print_counters(gpu, gpu.counters() - before);
  if (wrong != 0) {
    std::printf("vector_add: FAILED, %zu of %zu elements wrong\n", wrong, n);
    return samples::kExitWrong;
  }
  std::printf("vector_add: verified %zu elements\n", n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return samples::run("vector_add", kUsage, argc, argv, vector_add);
}
