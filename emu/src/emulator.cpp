// SPDX-License-Identifier: GPL-2.0
#include "emulator.h"

#include <cstdlib>

#include "log.h"

namespace hmmgpu {

Emulator::Emulator(const Config& config)
    : config_(config), ram_(config.guest_ram, config.guest_ram_size) {
  log::set_verbose(config.verbose);
  for (uint32_t i = 0; i < config_.gpus; ++i) {
    GpuConfig gpu{.index = i,
                  .vram_size = config_.vram_size,
                  .channels = config_.channels,
                  .vectors = config_.vectors,
                  .socket_path = config_.socket_dir + "/gpu" + std::to_string(i) + ".sock"};
    gpus_.push_back(std::make_unique<Gpu>(std::move(gpu), ram_,
                                          [this](uint64_t rings) { count_doorbells(rings); }));
  }
}

// Fault injection (--crash-after-doorbells): die on the N-th doorbell of any GPU.
void Emulator::count_doorbells(uint64_t rings) {
  const uint64_t total = doorbells_.fetch_add(rings, std::memory_order_relaxed) + rings;
  if (config_.crash_after_doorbells != 0 && total >= config_.crash_after_doorbells) {
    log::warn("--crash-after-doorbells %llu reached, aborting",
              static_cast<unsigned long long>(config_.crash_after_doorbells));
    std::abort();
  }
}

}  // namespace hmmgpu
