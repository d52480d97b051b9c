// SPDX-License-Identifier: GPL-2.0
//
// multi_gpu: one buffer handed between two devices.
//
// A managed array of counters is filled on the CPU, then:
//   1. device A prefetches it and adds 1;
//   2. it is prefetched to device B, which adds 2: between peers
//      (device::can_access_peer()) the copy engine moves the pages from A's
//      VRAM straight into B's, with no bounce through system memory;
//   3. device A adds 4 without a prefetch: it faults on pages that are in
//      B's VRAM, and the driver moves them straight back (or, if it finds
//      them bouncing, maps them where they lie, in B's VRAM);
//   4. the CPU verifies every element.
// The streams of the two devices are ordered with uvm::event. After each
// hand-over the sample checks, for peers, that the pages came across
// directly (peer_to_device_pages) and that no page went to system memory
// (to_system_pages) on the way.
//
// It needs two devices that run kernels; with fewer it says so and exits
// with status 77 (skipped).
#include <cstdio>
#include <string>
#include <uvm/uvm.hpp>

#include "common.hpp"

namespace {

constexpr const char* kUsage =
    "usage: multi_gpu [ELEMENTS]\n"
    "Hands ELEMENTS 32-bit counters (default 1M; K, M suffixes) between two hmmgpu\n"
    "devices that run kernels, peer to peer where they are peers, and verifies them.\n"
    "Exit status: 0 verified, 1 wrong (or pages bounced through system memory between\n"
    "peers) or error, 2 usage, 77 skipped: fewer than two such devices.\n";

// The counters of both devices, read together.
struct reading {
  uvm::device_counters a;
  uvm::device_counters b;
};

reading read(const uvm::device& a, const uvm::device& b) { return {a.counters(), b.counters()}; }

// Prints how a hand-over from `from` to `to` went and checks it: true
// unless `to` reaches `from` as a peer and the pages did not come across
// directly.
bool handed_over(const char* step, const uvm::device& from, const uvm::device& to,
                 const uvm::device_counters& from_delta, const uvm::device_counters& to_delta,
                 std::size_t pages) {
  const std::string src = uvm::to_string(uvm::location(from));
  const std::uint64_t direct = to_delta.peer_to_device_pages + to_delta.remote_mapped_pages;
  const std::uint64_t bounced = from_delta.to_system_pages + to_delta.to_system_pages;
  std::printf(
      "%s: %llu pages came VRAM to VRAM from %s, %llu were mapped in %s's VRAM, %llu "
      "went through system memory\n",
      step, static_cast<unsigned long long>(to_delta.peer_to_device_pages), src.c_str(),
      static_cast<unsigned long long>(to_delta.remote_mapped_pages), src.c_str(),
      static_cast<unsigned long long>(bounced));
  if (!to.can_access_peer(from) || !to.properties().reports("peer_to_device_pages")) {
    return true;  // nothing to check (or nothing to check it with)
  }
  if (direct < pages || bounced != 0) {
    std::printf("multi_gpu: FAILED: all %zu pages should have come across directly\n", pages);
    return false;
  }
  return true;
}

int multi_gpu(std::span<char* const> args) {
  const std::size_t n = samples::size_arg(args, 0, std::size_t{1} << 20);
  auto devices = samples::open_compute_devices(2);
  uvm::device& a = devices[0];
  // B: a peer of A if there is one, else the next device.
  std::size_t b_index = 1;
  for (std::size_t i = 1; i < devices.size(); i++) {
    if (devices[i].can_access_peer(a)) {
      b_index = i;
      break;
    }
  }
  uvm::device& b = devices[b_index];
  const bool peers = b.can_access_peer(a) && a.can_access_peer(b);
  const std::string name_a = uvm::to_string(uvm::location(a));
  const std::string name_b = uvm::to_string(uvm::location(b));
  std::printf("multi_gpu: %zu counters (%s) between %s and %s, %s\n", n,
              samples::bytes(n * sizeof(std::uint32_t)).c_str(), name_a.c_str(), name_b.c_str(),
              peers ? "peers: VRAM to VRAM" : "not peers: through system memory");

  uvm::managed_vector<std::uint32_t> v(n);
  for (std::size_t i = 0; i < n; i++) {
    v[i] = static_cast<std::uint32_t>(i);
  }
  const std::size_t pages = uvm::memory_range(v).page_count();
  uvm::stream on_a(a);
  uvm::stream on_b(b);
  uvm::event done_a;
  uvm::event done_b;
  bool ok = true;
  const reading start = read(a, b);

  // 1. A: prefetch, add 1.
  uvm::prefetch(v, a, on_a);
  uvm::increment(v, 1, on_a);
  done_a.record(on_a);
  on_a.synchronize();  // (only to read the counters between the steps)
  const reading r1 = read(a, b);
  std::printf("1. %s: prefetched from system memory and added 1\n", name_a.c_str());

  // 2. B, after A's work: prefetch (peer to peer), add 2.
  on_b.wait(done_a);
  uvm::prefetch(v, b, on_b);
  uvm::increment(v, 2, on_b);
  done_b.record(on_b);
  on_b.synchronize();
  const reading r2 = read(a, b);
  ok = handed_over(("2. " + name_b + ": prefetched and added 2").c_str(), a, b, r2.a - r1.a,
                   r2.b - r1.b, pages) &&
       ok;

  // 3. A, after B's work, without a prefetch: A's faults bring the pages.
  on_a.wait(done_b);
  uvm::increment(v, 4, on_a);
  on_a.synchronize();
  const reading r3 = read(a, b);
  ok = handed_over(("3. " + name_a + ": faulted and added 4").c_str(), b, a, r3.b - r2.b,
                   r3.a - r2.a, pages) &&
       ok;

  // 4. The CPU verifies: i + 1 + 2 + 4.
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; i++) {
    if (v[i] != static_cast<std::uint32_t>(i + 7) && wrong++ < 5) {
      std::printf("v[%zu] = %u, expected %zu\n", i, v[i], i + 7);
    }
  }
  const reading end = read(a, b);
  samples::print_counters(a, end.a - start.a);
  samples::print_counters(b, end.b - start.b);
  if (wrong != 0) {
    std::printf("multi_gpu: FAILED, %zu of %zu counters wrong\n", wrong, n);
    return samples::kExitWrong;
  }
  if (!ok) {
    return samples::kExitWrong;
  }
  std::printf("multi_gpu: verified %zu counters handed between two devices\n", n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return samples::run("multi_gpu", kUsage, argc, argv, multi_gpu); }
