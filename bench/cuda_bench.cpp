// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-bench-cuda: the CUDA row set of `make bench`, run on a machine with an NVIDIA GPU
// (bench/run --host runs it as phase "cuda" when it was built and a CUDA device is present). It
// measures the first CUDA device through libuvm's CUDA provider (cudaMallocManaged,
// cudaMemPrefetchAsync, CUDA kernels), with the harness and the measurement names of
// hmmgpu-bench, so that bench/report.py reads both alike.
//
//   hmmgpu-bench-cuda [--groups=prefetch,faults,compute,oversub] [--sizes=4,16,64,256]
//                     [--fault-mib=64] [--compute-mib=64] [--oversub=0.125,0.25,0.5] [--reps=5]
//                     [Google Benchmark flags]
//
// Measurements (subject "cuda"):
//   prefetch/cuda/<MiB>M           CPU fill, prefetch to the device (to_device_s), back to the CPU
//                                  (to_system_s), check the data.
//   fault_back/cuda/seq|random/<MiB>M  CPU fill, prefetch to the device, then one read per page
//                                  in address or random order: CPU faults bring it back
//                                  (fault_back_s), check the data.
//   first_touch/stream|reduction/<MiB>M  CPU fill, then the kernel (increment, sum of uint64)
//                                  on memory the device has never had: its faults migrate it
//                                  (kernel_s).
//   prefetch_run/stream|reduction/<MiB>M  CPU fill, prefetch (migrate_s), kernel (kernel_s), the
//                                  kernel again on resident data (resident_kernel_s).
//   oversub/stream/<F>x            increment over a CPU-filled buffer of F times the device's
//                                  *free* memory. F is at most 0.5: this program never asks a
//                                  card for more managed memory than it has free, so it cannot
//                                  oversubscribe a CUDA device (on hmmgpu, hmmgpu-bench does).
// Managed memory per run is at most half the device's free memory (and half the host's available
// memory, where the CPU fills it); larger sizes are left out. Kernels go in pieces of at most
// uvm::max_kernel_bytes.
// Every run checks its data; a failure fails the measurement and makes the program exit 1.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <uvm/uvm.hpp>
#include <vector>

#include "harness.h"

namespace hmmgpu::bench {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

// The measurements' defaults (harness.h has the options). The oversubscription factors are of
// the device's free memory, up to half of it.
Options parse(int argc, char** argv) {
  Options defaults;
  defaults.groups = {"prefetch", "faults", "compute", "oversub"};
  defaults.oversub = {0.125, 0.25, 0.5};
  Options o = parse_options(argc, argv, std::move(defaults), "cuda_bench.cpp");
  if (*std::max_element(o.oversub.begin(), o.oversub.end()) > 0.5) {
    throw std::invalid_argument(
        "--oversub takes fractions of the device's free memory up to 0.5: this program "
        "never asks a CUDA device for more managed memory than it has free");
  }
  return o;
}

std::string size_name(uint64_t bytes) {
  std::ostringstream s;
  s << static_cast<double>(bytes) / static_cast<double>(kMiB) << "M";
  return s.str();
}

// A managed buffer of 64-bit words with a pattern that changes from run to run.
class Buffer {
 public:
  explicit Buffer(uint64_t bytes) : words_(bytes / 8) {}
  void fill(uint64_t seed) {
    for (std::size_t i = 0; i < words_.size(); i++) {
      words_[i] = seed * 0x9e3779b97f4a7c15ULL + i;
    }
  }
  // Throws unless every word is the pattern of `seed` plus `added` (in each 32-bit half when
  // `halves`, as the increment kernel adds).
  void check(uint64_t seed, const char* when, uint32_t added = 0) const {
    for (std::size_t i = 0; i < words_.size(); i++) {
      uint64_t want = seed * 0x9e3779b97f4a7c15ULL + i;
      if (added != 0) {
        const auto lo = static_cast<uint32_t>(want) + added;
        const auto hi = static_cast<uint32_t>(want >> 32U) + added;
        want = (uint64_t{hi} << 32U) | lo;
      }
      if (words_[i] != want) {
        throw std::runtime_error(std::string("wrong data ") + when + " at word " +
                                 std::to_string(i));
      }
    }
  }
  [[nodiscard]] uint64_t sum(uint64_t seed) const {
    uint64_t s = 0;
    for (std::size_t i = 0; i < words_.size(); i++) {
      s += seed * 0x9e3779b97f4a7c15ULL + i;
    }
    return s;
  }
  uvm::managed_vector<uint64_t>& words() { return words_; }
  [[nodiscard]] std::span<uint32_t> u32() {
    return {reinterpret_cast<uint32_t*>(words_.data()), words_.size() * 2};
  }
  [[nodiscard]] std::span<const uint64_t> u64() const { return words_; }

 private:
  uvm::managed_vector<uint64_t> words_;
};

uint64_t next_seed() {
  static uint64_t seed = 1;
  return ++seed;
}

// increment(x, 1) in kernels of at most uvm::max_kernel_bytes, waited for.
void increment_all(std::span<uint32_t> x, uvm::stream& s) {
  const std::size_t piece = uvm::max_kernel_bytes / sizeof(uint32_t);
  for (std::size_t i = 0; i < x.size(); i += piece) {
    uvm::increment(x.subspan(i, std::min(piece, x.size() - i)), 1, s);
  }
  s.synchronize();
}

// The uint64 sum of x in kernels of at most uvm::max_kernel_bytes.
uint64_t sum_all(std::span<const uint64_t> x, uvm::stream& s) {
  const std::size_t piece = uvm::max_kernel_bytes / sizeof(uint64_t);
  std::vector<std::future<uint64_t>> parts;
  for (std::size_t i = 0; i < x.size(); i += piece) {
    parts.push_back(uvm::sum(x.subspan(i, std::min(piece, x.size() - i)), s));
  }
  uint64_t total = 0;
  for (auto& p : parts) {
    total += p.get();
  }
  return total;
}

// Bytes of memory the host has available.
uint64_t host_available() {
  return static_cast<uint64_t>(::sysconf(_SC_AVPHYS_PAGES)) *
         static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

class Suite {
 public:
  Suite(Options o, uvm::device dev) : o_(std::move(o)), dev_(std::move(dev)), s_(dev_) {}

  void register_all() {
    if (group("prefetch")) {
      for (const double mib : o_.sizes_mib) {
        if (fits(bytes_of(mib))) {
          register_prefetch(bytes_of(mib));
        }
      }
    }
    if (group("faults") && fits(bytes_of(o_.fault_mib))) {
      for (const bool random : {false, true}) {
        register_fault_back(random, bytes_of(o_.fault_mib));
      }
    }
    if (group("compute") && fits(bytes_of(o_.compute_mib))) {
      for (const char* kernel : {"stream", "reduction"}) {
        register_compute(kernel, bytes_of(o_.compute_mib), false);
        register_compute(kernel, bytes_of(o_.compute_mib), true);
      }
    }
    if (group("oversub")) {
      for (const double f : o_.oversub) {
        register_oversub(f);
      }
    }
  }

  void describe() const {
    const uvm::device_properties& p = dev_.properties();
    std::ostringstream d;
    d << p.name << ", " << uvm::to_string(uvm::location(dev_)) << ", sm_" << p.compute_capability
      << ", " << (p.vram_total >> 20U) << " MiB, CUDA driver " << p.driver.major << "."
      << p.driver.minor << (p.pageable_memory_access ? ", pageable memory access" : "");
    benchmark::AddCustomContext("hmmgpu_cuda", d.str());
    benchmark::AddCustomContext("hmmgpu_cuda_vram", std::to_string(p.vram_total));
    benchmark::AddCustomContext("hmmgpu_cuda_free", std::to_string(dev_.memory().free));
  }

 private:
  [[nodiscard]] bool group(const char* g) const { return o_.groups.count(g) != 0; }
  // Whole pages of at least one, from MiB.
  static uint64_t bytes_of(double mib) {
    const uint64_t page = uvm::page_size();
    const auto bytes = static_cast<uint64_t>(mib * static_cast<double>(kMiB));
    return std::max<uint64_t>(page, bytes / page * page);
  }
  // At most half the device's free memory (never more managed memory than it has free), and
  // half the host's available memory.
  [[nodiscard]] bool fits(uint64_t bytes) const {
    return bytes <= dev_.memory().free / 2 && bytes <= host_available() / 2;
  }

  void register_prefetch(uint64_t bytes) {
    register_measurement("prefetch/cuda/" + size_name(bytes), bytes, [=, this](Sample& s) {
      Buffer buf(bytes);
      const uint64_t seed = next_seed();
      buf.fill(seed);
      s.phase("to_device", [&] { expect_moved(uvm::prefetch(buf.words(), dev_)); });
      s.phase("to_system", [&] { expect_moved(uvm::prefetch(buf.words(), uvm::cpu)); });
      buf.check(seed, "after the round trip");
    });
  }

  void register_fault_back(bool random, uint64_t bytes) {
    const std::string name =
        std::string("fault_back/cuda/") + (random ? "random/" : "seq/") + size_name(bytes);
    register_measurement(name, bytes, [=, this](Sample& s) {
      Buffer buf(bytes);
      const uint64_t seed = next_seed();
      buf.fill(seed);
      expect_moved(uvm::prefetch(buf.words(), dev_));
      const std::size_t stride = uvm::page_size() / 8;
      std::vector<std::size_t> pages(buf.words().size() / stride);
      std::iota(pages.begin(), pages.end(), 0);
      if (random) {
        std::shuffle(pages.begin(), pages.end(), std::mt19937_64(seed));
      }
      volatile uint64_t sink = 0;
      s.phase("fault_back", [&] {
        for (std::size_t p : pages) {
          sink = sink + buf.words()[p * stride];
        }
      });
      s.set("pages", static_cast<double>(pages.size()));
      buf.check(seed, "after the faults");
    });
  }

  void register_compute(const std::string& kernel, uint64_t bytes, bool prefetch_first) {
    const std::string name = std::string(prefetch_first ? "prefetch_run/" : "first_touch/") +
                             kernel + "/" + size_name(bytes);
    register_measurement(name, bytes, [=, this](Sample& s) {
      Buffer buf(bytes);
      const uint64_t seed = next_seed();
      buf.fill(seed);
      const bool stream = kernel == "stream";
      auto run = [&] {
        if (stream) {
          increment_all(buf.u32(), s_);
        } else if (sum_all(buf.u64(), s_) != buf.sum(seed)) {
          throw std::runtime_error("wrong sum");
        }
      };
      if (prefetch_first) {
        s.phase("migrate", [&] { expect_moved(uvm::prefetch(buf.words(), dev_)); });
      }
      s.phase("kernel", run);
      uint32_t added = stream ? 1 : 0;
      if (prefetch_first) {
        s.phase("resident_kernel", run, false);
        added += stream ? 1 : 0;
      }
      (void)uvm::prefetch(buf.words(), uvm::cpu);
      buf.check(seed, "after the kernel", added);
    });
  }

  void register_oversub(double factor) {
    const auto bytes =
        bytes_of(factor * static_cast<double>(dev_.memory().free) / static_cast<double>(kMiB));
    if (!fits(bytes)) {
      return;
    }
    std::ostringstream name;
    name << "oversub/stream/" << factor << "x";
    register_measurement(name.str(), bytes, [=, this](Sample& s) {
      Buffer buf(bytes);
      const uint64_t seed = next_seed();
      buf.fill(seed);
      s.phase("kernel", [&] { increment_all(buf.u32(), s_); });
      (void)uvm::prefetch(buf.words(), uvm::cpu);
      buf.check(seed, "after the kernel", 1);
    });
  }

  static void expect_moved(const uvm::prefetch_result& r) {
    if (r.failed() != 0) {
      throw std::runtime_error(std::to_string(r.failed()) + " pages did not move");
    }
  }

  Options o_;
  uvm::device dev_;
  uvm::stream s_;
};

}  // namespace
}  // namespace hmmgpu::bench

int main(int argc, char** argv) {
  using namespace hmmgpu::bench;
  std::optional<Suite> suite;  // lives while the benchmarks run
  return run_benchmarks("hmmgpu-bench-cuda", argc, argv, 5, /*one_run=*/true,
                        [&](int n, char** args) {
                          Options options = parse(n, args);
                          const uvm::provider_info cuda = uvm::provider_status(uvm::provider::cuda);
                          if (cuda.devices == 0) {
                            throw std::runtime_error(cuda.reason);
                          }
                          suite.emplace(std::move(options), uvm::device(uvm::provider::cuda, 0));
                          suite->register_all();
                          suite->describe();
                        });
}
