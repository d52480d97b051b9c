// SPDX-License-Identifier: GPL-2.0
// The whole hmmgpu-emu process: its configuration, the guest RAM shared by all GPUs, the GPUs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpu.h"
#include "guest_ram.h"

namespace hmmgpu {

struct Config {
  std::string socket_dir;
  std::string guest_ram;
  uint64_t guest_ram_size = 0;
  uint32_t gpus = 2;
  uint64_t vram_size = 256ULL << 20;
  uint32_t channels = 2;
  uint32_t vectors = 8;
  bool verbose = false;
  uint64_t crash_after_doorbells = 0;  // 0: never
};

class Emulator {
 public:
  // Maps the guest RAM and starts every GPU; throws std::system_error on host failures.
  explicit Emulator(const Config& config);

  [[nodiscard]] size_t num_gpus() const { return gpus_.size(); }
  [[nodiscard]] const std::string& socket_path(size_t gpu) const {
    return gpus_.at(gpu)->socket_path();
  }

 private:
  void count_doorbells(uint64_t rings);

  Config config_;
  GuestRam ram_;
  std::atomic<uint64_t> doorbells_{0};
  std::vector<std::unique_ptr<Gpu>> gpus_;  // last: stopped before the RAM is unmapped
};

}  // namespace hmmgpu
