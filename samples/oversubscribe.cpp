// SPDX-License-Identifier: GPL-2.0
//
// oversubscribe: stream through a working set larger than the device's VRAM.
//
// The working set (by default twice the VRAM) is one managed array of
// 32-bit counters. Each pass launches an `increment` kernel on every chunk
// of it in turn. The device faults on each chunk; the driver moves the
// chunk into VRAM, and once the VRAM is full it first evicts the least
// recently used 2 MiB chunks back to system memory. So the whole array is
// processed although it never fits, at the price of moving it in and out
// once per pass. The sample reports the throughput and the evictions,
// shows where the pages ended up, and verifies every counter on the CPU.
#include <algorithm>
#include <cstdio>
#include <uvm/uvm.hpp>

#include "common.hpp"

namespace {

constexpr const char* kUsage =
    "usage: oversubscribe [WORKING_SET [PASSES]]\n"
    "Streams `increment` kernels PASSES times (default 2) through WORKING_SET bytes\n"
    "(default twice the VRAM of the first hmmgpu device that runs kernels; K, M, G\n"
    "suffixes), then reports throughput and evictions and verifies on the CPU.\n"
    "Exit status: 0 verified, 1 wrong, no eviction while oversubscribed, or error;\n"
    "2 usage, 77 no device.\n";

constexpr std::size_t kChunkAlign = std::size_t{2} << 20;  // the driver's VRAM chunk

int oversubscribe(std::span<char* const> args) {
  auto devices = samples::open_compute_devices();
  uvm::device& gpu = devices.front();
  const std::uint64_t vram = gpu.properties().vram_total;
  const std::size_t bytes = samples::size_arg(args, 0, 2 * vram, sizeof(std::uint32_t));
  const std::size_t passes = samples::size_arg(args, 1, 2);
  if (gpu.properties().provider() == uvm::provider::cuda && bytes > gpu.memory().free / 2) {
    // Managed memory beyond the card's free memory is not asked of a CUDA device.
    throw samples::skip(uvm::to_string(uvm::location(gpu)) + " has " +
                        samples::bytes(gpu.memory().free) + " free: a working set of " +
                        samples::bytes(bytes) +
                        " would ask it for more than half of it; give a smaller WORKING_SET");
  }
  const std::size_t n = bytes / sizeof(std::uint32_t);
  // Kernels on an eighth of the VRAM at a time, whole 2 MiB chunks.
  const std::size_t chunk =
      std::max(kChunkAlign, (vram / 8) / kChunkAlign * kChunkAlign) / sizeof(std::uint32_t);
  std::printf(
      "oversubscribe: %s working set on %s with %s of VRAM (%.1fx), %zu passes in "
      "kernels of %s\n",
      samples::bytes(n * sizeof(std::uint32_t)).c_str(), uvm::to_string(uvm::location(gpu)).c_str(),
      samples::bytes(vram).c_str(), static_cast<double>(bytes) / static_cast<double>(vram), passes,
      samples::bytes(chunk * sizeof(std::uint32_t)).c_str());

  uvm::managed_vector<std::uint32_t> data(n);  // zeros, written by the CPU
  uvm::stream s(gpu);
  const uvm::device_counters before = gpu.counters();
  uvm::event start;
  uvm::event stop;
  start.record(s);
  for (std::size_t pass = 0; pass < passes; pass++) {
    for (std::size_t i = 0; i < n; i += chunk) {
      uvm::increment(std::span(data).subspan(i, std::min(chunk, n - i)), 1, s);
    }
  }
  stop.record(s);
  s.synchronize();
  const auto elapsed = uvm::elapsed_time(start, stop);
  const uvm::device_counters moved = gpu.counters() - before;

  const double seconds = samples::ms(elapsed) / 1e3;
  const auto processed = static_cast<double>(passes * n * sizeof(std::uint32_t));
  std::printf(
      "processed %s in %.3f s: %.1f MiB/s; evicted %llu chunks (%s) back to system "
      "memory\n",
      samples::bytes(passes * n * sizeof(std::uint32_t)).c_str(), seconds,
      processed / seconds / (1 << 20), static_cast<unsigned long long>(moved.evicted_chunks),
      samples::bytes(moved.evicted_bytes).c_str());
  // Where the pages are now: the VRAM holds the most recently used part.
  const uvm::memory_range range(data);
  const std::size_t page = range.pages().size() / range.page_count();
  const uvm::residency_summary where = uvm::summarize(uvm::residency(range, gpu));
  std::printf("now: %s in the device's VRAM, %s in system memory\n",
              samples::bytes(where.at(gpu) * page).c_str(),
              samples::bytes(where.cpu * page).c_str());
  samples::print_counters(gpu, moved);

  // Verify on the CPU: every counter was incremented once per pass.
  const auto expect = static_cast<std::uint32_t>(passes);
  const auto wrong = std::count_if(data.begin(), data.end(), [&](auto v) { return v != expect; });
  if (wrong != 0) {
    std::printf("oversubscribe: FAILED, %td of %zu counters are not %u\n", wrong, n, expect);
    return samples::kExitWrong;
  }
  if (bytes > vram && moved.evicted_chunks == 0) {
    std::printf(
        "oversubscribe: FAILED, the working set exceeds the VRAM but nothing was evicted\n");
    return samples::kExitWrong;
  }
  std::printf("oversubscribe: verified %zu counters\n", n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return samples::run("oversubscribe", kUsage, argc, argv, oversubscribe);
}
