// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-bench-copy-engine: the emulator's raw copy throughput on the host alone, without a VM or
// a driver, with 1, 2 and 4 copy channels (emu/SPEC.md 4.4). A fake QEMU (emu/tests/fake_qemu.h)
// drives one emulated GPU through the real ivshmem protocol: each run moves 64 MiB with 16
// OP_COPY_LIST descriptors of 4 MiB, dealt round-robin to the channels, and waits for every
// channel's completion interrupt. Blocks are 4 KiB pages scattered over system memory (what a
// migration copies) or 2 MiB blocks. Every run's destination is checked against its source.
//
//   hmmgpu-bench-copy-engine [--reps=5] [Google Benchmark flags]

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_qemu.h"
#include "harness.h"

namespace hmmgpu::bench {
namespace {

using regs::copy::aperture_word;
using regs::copy::kApSysmem;
using regs::copy::kApVram;

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 512 * kMiB;  // below 2816 MiB: file offset = guest address
constexpr uint64_t kVram = 128 * kMiB;
constexpr uint64_t kRunBytes = 64 * kMiB;
constexpr uint64_t kJobs = 16;                 // descriptors per run
constexpr uint64_t kSysBase = 256 * kMiB;      // the run's system memory
constexpr uint64_t kListBase = 16 * kMiB;      // the descriptors' lists
constexpr uint64_t kListStride = 64ULL << 10;  // per list: up to 4096 entries of 16 bytes
constexpr uint32_t kChannels = 4;
constexpr uint32_t kVectors = 2 + kChannels;  // the queues and the fault vector

// One emulated GPU with kChannels channels and its fake QEMU, with the guest RAM mapped here too.
class Rig {
 public:
  Rig() {
    const std::string shm = "/dev/shm";
    rig_.emplace(test::TestRig::Options{.ram_size = kRamSize,
                                        .gpus = 1,
                                        .vram_size = kVram,
                                        .channels = kChannels,
                                        .vectors = kVectors,
                                        .compute = 0,
                                        .parent_dir = ::access(shm.c_str(), W_OK) == 0 ? shm : ""});
    qemu_ = test::FakeQemu::connect(rig_->emu().socket_path(0), kVectors);
    ram_ = Mapping(rig_->ram_fd(), kRamSize);
  }

  [[nodiscard]] test::FakeQemu& qemu() { return *qemu_; }
  [[nodiscard]] std::byte* ram(uint64_t addr) const { return ram_.data() + addr; }
  [[nodiscard]] std::byte* vram(uint64_t offset, uint64_t len) {
    return rig_->emu().gpu(0).vram_at(offset, len);
  }
  [[nodiscard]] uint64_t next_seqno() { return ++seqno_; }

 private:
  std::optional<test::TestRig> rig_;
  std::unique_ptr<test::FakeQemu> qemu_;
  Mapping ram_;
  uint64_t seqno_ = 0;
};

Rig& rig() {
  static Rig instance;
  return instance;
}

// One configuration: direction, block size, channels. The system side of block i is block
// perm[i] of the system memory region, the VRAM side is block i.
class CopyRun {
 public:
  CopyRun(bool to_vram, uint64_t block, uint32_t channels)
      : to_vram_(to_vram), block_(block), channels_(channels), perm_(kRunBytes / block) {
    std::iota(perm_.begin(), perm_.end(), 0U);
    std::mt19937_64 rng(42);  // NOLINT(cert-msc32-c,cert-msc51-cpp): the same order every run
    std::shuffle(perm_.begin(), perm_.end(), rng);
  }

  void operator()(Sample& s) {
    Rig& r = rig();
    write_lists(r);
    fill_source(r, ++seed_);
    const uint64_t per_job = perm_.size() / kJobs;
    const uint64_t apertures =
        to_vram_ ? aperture_word(kApSysmem, kApVram) : aperture_word(kApVram, kApSysmem);
    std::vector<std::vector<test::Desc>> queues(channels_);
    for (uint64_t job = 0; job < kJobs; ++job) {
      queues[job % channels_].push_back(test::copy_list(
          r.next_seqno(), kListBase + job * kListStride, per_job, block_, apertures));
    }
    std::vector<uint32_t> heads(channels_);
    s.phase("copy", [&] {
      for (uint32_t c = 0; c < channels_; ++c) {
        queues[c].back().flags = regs::kFlagIrq;
        heads[c] = r.qemu().submit(1 + c, queues[c]);
      }
      for (uint32_t c = 0; c < channels_; ++c) {
        if (!r.qemu().wait_irq(1 + c)) {
          throw std::runtime_error("no completion interrupt on channel " + std::to_string(c + 1));
        }
      }
    });
    for (uint32_t c = 0; c < channels_; ++c) {
      for (uint32_t i = heads[c] - queues[c].size(); i != heads[c]; ++i) {
        if (r.qemu().desc_status(1 + c, i) != 0) {
          throw std::runtime_error("copy failed with status " +
                                   std::to_string(r.qemu().desc_status(1 + c, i)));
        }
      }
    }
    check_destination(r, seed_);
  }

 private:
  [[nodiscard]] std::byte* sys_block(Rig& r, uint64_t i) const {
    return r.ram(kSysBase + perm_[i] * block_);
  }
  [[nodiscard]] std::byte* vram_block(Rig& r, uint64_t i) const {
    return r.vram(i * block_, block_);
  }

  void write_lists(Rig& r) const {
    const uint64_t per_job = perm_.size() / kJobs;
    for (uint64_t i = 0; i < perm_.size(); ++i) {
      const uint64_t sys = kSysBase + perm_[i] * block_;
      const uint64_t vram = i * block_;
      const std::array<uint64_t, 2> entry = {to_vram_ ? sys : vram, to_vram_ ? vram : sys};
      std::memcpy(r.ram(kListBase + (i / per_job) * kListStride + (i % per_job) * 16), entry.data(),
                  16);
    }
  }

  // Each block starts with its index and the run's seed, the rest is a pattern of both.
  void fill_source(Rig& r, uint64_t seed) const {
    for (uint64_t i = 0; i < perm_.size(); ++i) {
      auto* words = reinterpret_cast<uint64_t*>(to_vram_ ? sys_block(r, i) : vram_block(r, i));
      for (uint64_t w = 0; w < block_ / 8; ++w) {
        words[w] = (seed << 32U) ^ (i * 0x9e3779b97f4a7c15ULL) ^ w;
      }
    }
  }

  void check_destination(Rig& r, uint64_t seed) const {
    for (uint64_t i = 0; i < perm_.size(); ++i) {
      const auto* words =
          reinterpret_cast<const uint64_t*>(to_vram_ ? vram_block(r, i) : sys_block(r, i));
      for (uint64_t w = 0; w < block_ / 8; ++w) {
        if (words[w] != ((seed << 32U) ^ (i * 0x9e3779b97f4a7c15ULL) ^ w)) {
          throw std::runtime_error("data wrong in block " + std::to_string(i) + " word " +
                                   std::to_string(w));
        }
      }
    }
  }

  bool to_vram_;
  uint64_t block_;
  uint32_t channels_;
  std::vector<uint32_t> perm_;
  uint64_t seed_ = 0;
};

void register_all() {
  for (const bool to_vram : {true, false}) {
    for (const uint64_t block : {uint64_t{4096}, 2 * kMiB}) {
      for (const uint32_t channels : {1U, 2U, 4U}) {
        const std::string name = std::string("copy_engine/host/") +
                                 (to_vram ? "to_vram/" : "to_sysmem/") +
                                 (block == 4096 ? "4K/" : "2M/") + std::to_string(channels) + "ch";
        register_measurement(name, kRunBytes, CopyRun(to_vram, block, channels));
      }
    }
  }
}

}  // namespace
}  // namespace hmmgpu::bench

int main(int argc, char** argv) {
  using namespace hmmgpu::bench;
  return run_benchmarks("hmmgpu-bench-copy-engine", argc, argv, 5, /*one_run=*/false,
                        [](int n, char** /*args*/) {
                          if (n > 1) {
                            throw std::invalid_argument(
                                "usage: hmmgpu-bench-copy-engine [--reps=N] [Google Benchmark "
                                "flags]");
                          }
                          register_all();
                        });
}
