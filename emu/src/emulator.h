// SPDX-License-Identifier: GPL-2.0
// The whole hmmgpu-emu process: its configuration, the guest RAM shared by all GPUs, the GPUs,
// and the fault-injection control file (SPEC 8.1).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "gpu.h"
#include "guest_ram.h"
#include "os.h"

namespace hmmgpu {

struct Config {
  std::string socket_dir;
  std::string guest_ram;
  uint64_t guest_ram_size = 0;
  uint32_t gpus = 2;
  uint64_t vram_size = 256ULL << 20;
  uint32_t channels = 2;
  uint32_t compute = 2;    // compute queues per GPU (SPEC 4.7)
  uint32_t contexts = 64;  // MMU contexts per GPU (SPEC 4.5)
  uint32_t vectors = 8;
  bool verbose = false;
  uint64_t crash_after_doorbells = 0;  // 0: never
  std::string control_file;            // --control; empty: none
  bool copy_floor = false;             // --copy-floor (SPEC 8.2)
};

// Exit status of the process after the control command `exit` (SPEC 8.1).
inline constexpr int kExitControl = 3;

class Emulator {
 public:
  // Maps the guest RAM, starts every GPU and, with a control file, its polling thread (creating
  // the file when missing); throws std::system_error on host failures.
  explicit Emulator(const Config& config);
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;
  Emulator(Emulator&&) = delete;
  Emulator& operator=(Emulator&&) = delete;
  // Stops the control thread, then every GPU's threads, before any GPU (and its VRAM, which peers
  // copy from) is destroyed.
  ~Emulator();

  [[nodiscard]] size_t num_gpus() const { return gpus_.size(); }
  [[nodiscard]] const std::string& socket_path(size_t gpu) const {
    return gpus_.at(gpu)->socket_path();
  }
  // The GPU itself, for tests' seams (Gpu::set_wave_hook).
  [[nodiscard]] Gpu& gpu(size_t index) { return *gpus_.at(index); }

 private:
  void count_doorbells(uint64_t rings);
  [[nodiscard]] const Gpu* find_gpu(uint32_t index) const;
  void stop_gpus();

  // The control file: polled by control_thread_, which alone uses the control_* members.
  void control_loop(const std::stop_token& stop);
  void poll_control();
  void execute_control(const std::string& line);
  void write_ack() const;

  Config config_;
  GuestRam ram_;
  std::atomic<uint64_t> doorbells_{0};
  // DEVICE_INDEX -> GPU, published once that GPU is fully constructed (peer copies may start as
  // soon as the first GPU listens). Outlives gpus_.
  std::vector<std::atomic<const Gpu*>> peers_;
  std::vector<std::unique_ptr<Gpu>> gpus_;  // stopped before the RAM is unmapped

  UniqueFd control_fd_;
  uint64_t control_offset_ = 0;  // bytes of the file consumed
  std::string control_partial_;  // a line still waiting for its newline
  uint64_t control_lines_ = 0;   // lines processed (and acknowledged)
  std::jthread control_thread_;  // last: stopped first
};

}  // namespace hmmgpu
