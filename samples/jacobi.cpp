// SPDX-License-Identifier: GPL-2.0
//
// jacobi: heat diffusion on a 2-D grid by weighted Jacobi sweeps, with the
// CPU and the device taking turns on the same managed arrays.
//
// The grid is N x N temperatures; the top edge is held at 100 degrees, the
// other edges at 0, the inside starts at 0. Each sweep has two phases:
//
//   CPU     avg = the mean of each inside point's four neighbours in u (a
//           stencil the device has no kernel for); reading u faults its
//           pages back from the VRAM, writing avg populates it on the CPU;
//   device  d = avg - u          copy_bytes, then axpy with a = -1
//           u = u + omega * d    axpy
//           heat = sum(d)        sum: the heat the sweep added, which goes
//                                to 0 as the grid converges
//           the device faults on avg and u, and takes them to its VRAM.
//
// So pages cross between the CPU and the device twice per sweep. After a
// few quick round trips the driver notices that the pages of u and avg
// bounce (thrashing_events) and maps them where they lie for a while
// instead of moving them (remote_mapped_pages): the counters printed every
// few sweeps show it.
//
// The result is verified exactly: the same sweeps on ordinary vectors on
// the CPU, with the device's arithmetic (binary32 per operation, sums in
// binary64 in ascending order, see uvm/kernels.hpp), must give the same
// bits. (Built with -ffp-contract=off, so the CPU does not fuse a multiply
// and an add that the device rounds separately.)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <uvm/uvm.hpp>
#include <vector>

#include "common.hpp"

namespace {

constexpr const char* kUsage =
    "usage: jacobi [N [SWEEPS]]\n"
    "Runs SWEEPS (default 40) weighted Jacobi sweeps of heat diffusion on an N x N\n"
    "grid (default 128) with the stencil on the CPU and the update and its sum on\n"
    "the first hmmgpu device that runs kernels, and checks the result bit for bit\n"
    "against the same computation on the CPU alone.\n"
    "Exit status: 0 verified, 1 wrong or error, 2 usage, 77 no device.\n";

constexpr float kOmega = 2.0F / 3.0F;  // the damping of weighted Jacobi
constexpr float kHot = 100.0F;         // the top edge

// The initial grid: the top row hot, everything else 0.
void initialize(std::span<float> u, std::size_t n) {
  std::fill(u.begin(), u.end(), 0.0F);
  std::fill(u.begin(), u.begin() + static_cast<std::ptrdiff_t>(n), kHot);
}

// The CPU phase: avg = the mean of the four neighbours of each inside
// point (the edges of avg keep their values).
void stencil(std::span<const float> u, std::span<float> avg, std::size_t n) {
  for (std::size_t i = 1; i + 1 < n; i++) {
    for (std::size_t j = 1; j + 1 < n; j++) {
      const std::size_t k = i * n + j;
      avg[k] = 0.25F * ((u[k - n] + u[k + n]) + (u[k - 1] + u[k + 1]));
    }
  }
}

// The device phase as the CPU computes it, for the reference.
double update_on_cpu(std::span<const float> avg, std::span<float> u, std::span<float> d) {
  double heat = 0;
  for (std::size_t k = 0; k < u.size(); k++) {
    d[k] = -1.0F * u[k] + avg[k];
    u[k] = kOmega * d[k] + u[k];
    heat += static_cast<double>(d[k]);
  }
  return heat;
}

int jacobi(std::span<char* const> args) {
  const std::size_t n = samples::size_arg(args, 0, 128, 3);
  const std::size_t sweeps = samples::size_arg(args, 1, 40);
  if (n > 4096) {
    throw samples::usage_error("N is at most 4096");
  }
  auto devices = samples::open_compute_devices();
  uvm::device& gpu = devices.front();
  uvm::stream s(gpu);
  std::printf(
      "jacobi: %zu x %zu grid (%s per array), %zu sweeps, stencil on the CPU, update "
      "on %s\n",
      n, n, samples::bytes(n * n * sizeof(float)).c_str(), sweeps,
      uvm::to_string(uvm::location(gpu)).c_str());

  // Managed arrays for the CPU and the device; ordinary ones for the reference.
  uvm::managed_vector<float> u(n * n);
  uvm::managed_vector<float> avg(n * n);
  uvm::managed_vector<float> d(n * n);
  std::vector<float> ref_u(n * n);
  std::vector<float> ref_avg(n * n);
  std::vector<float> ref_d(n * n);
  initialize(u, n);
  initialize(avg, n);
  initialize(ref_u, n);
  initialize(ref_avg, n);

  const uvm::device_counters start = gpu.counters();
  uvm::device_counters last = start;
  for (std::size_t sweep = 1; sweep <= sweeps; sweep++) {
    // CPU phase.
    stencil(u, avg, n);
    // Device phase: d = avg - u; u += omega * d; heat = sum(d).
    uvm::copy_bytes(d, avg, s);
    uvm::axpy(-1.0F, u, d, s);
    uvm::axpy(kOmega, d, u, s);
    std::future<double> heat = uvm::sum(d, s);
    s.synchronize();

    // The reference, on the CPU alone.
    stencil(ref_u, ref_avg, n);
    const double ref_heat = update_on_cpu(ref_avg, ref_u, ref_d);
    const double got = heat.get();
    if (got != ref_heat) {
      std::printf("jacobi: FAILED: sweep %zu added %.9g heat on the device, %.9g on the CPU\n",
                  sweep, got, ref_heat);
      return samples::kExitWrong;
    }
    if ((sweep % 10 == 0 || sweep == 1 || sweep == sweeps) && samples::has_counters(gpu)) {
      const uvm::device_counters now = gpu.counters();
      const uvm::device_counters moved = now - last;
      last = now;
      std::printf(
          "sweep %3zu: heat added %10.4f  pages to device %5llu, to CPU %5llu, mapped "
          "remotely %5llu, thrashing %llu\n",
          sweep, got, static_cast<unsigned long long>(moved.to_device_pages),
          static_cast<unsigned long long>(moved.to_system_pages),
          static_cast<unsigned long long>(moved.remote_mapped_pages),
          static_cast<unsigned long long>(moved.thrashing_events));
    }
  }

  // The final grid must be the reference's, bit for bit.
  const bool same = std::memcmp(u.data(), ref_u.data(), n * n * sizeof(float)) == 0;
  samples::print_counters(gpu, gpu.counters() - start);
  if (!same) {
    std::printf("jacobi: FAILED: the grid differs from the CPU's\n");
    return samples::kExitWrong;
  }
  double total = 0;
  for (const float t : u) {
    total += static_cast<double>(t);
  }
  std::printf("jacobi: verified; mean temperature %.4f degrees\n",
              total / static_cast<double>(n * n));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return samples::run("jacobi", kUsage, argc, argv, jacobi); }
