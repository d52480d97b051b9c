// SPDX-License-Identifier: GPL-2.0
// One emulated hmmgpu device: its BAR2 shared memory, VRAM, ivshmem server socket and the engine
// threads that execute its queues (SPEC sections 2-6).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "guest_ram.h"
#include "os.h"
#include "regs.h"

namespace hmmgpu {

struct GpuConfig {
  uint32_t index = 0;
  uint64_t vram_size = 0;
  uint32_t channels = 0;
  uint32_t vectors = 0;
  std::string socket_path;
};

// Called by an engine with the number of doorbell rings it has just consumed.
using DoorbellHook = std::function<void(uint64_t rings)>;

// Typed atomic access to fields of the shared memory. Offsets come from regs.h or from ring slot
// arithmetic, never directly from the guest.
class SharedPage {
 public:
  SharedPage() = default;
  SharedPage(std::byte* base, size_t size) : base_(base), size_(size) {}

  [[nodiscard]] uint32_t load32(uint32_t off, std::memory_order order) const;
  void store32(uint32_t off, uint32_t value, std::memory_order order) const;
  [[nodiscard]] uint64_t load64(uint32_t off, std::memory_order order) const;
  void store64(uint32_t off, uint64_t value, std::memory_order order) const;
  [[nodiscard]] std::byte* at(uint32_t off) const { return base_ + off; }

 private:
  template <typename T>
  [[nodiscard]] std::atomic_ref<T> field(uint32_t off) const;

  std::byte* base_ = nullptr;
  size_t size_ = 0;
};

// A descriptor as copied out of its ring slot (the guest may rewrite the slot meanwhile).
struct Descriptor {
  uint16_t opcode = 0;
  uint16_t flags = 0;
  uint64_t seqno = 0;
  std::array<uint64_t, regs::kDescArgs> args{};
};

class Gpu {
 public:
  // Creates the shared memory, VRAM and listening socket and starts the threads. Throws
  // std::system_error on host failures.
  Gpu(GpuConfig config, const GuestRam& ram, DoorbellHook on_doorbell);
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;
  Gpu(Gpu&&) = delete;
  Gpu& operator=(Gpu&&) = delete;
  // Stops and joins every thread, closes the client and removes the socket.
  ~Gpu();

  [[nodiscard]] const std::string& socket_path() const { return config_.socket_path; }
  [[nodiscard]] uint32_t num_queues() const { return 1 + config_.channels; }

 private:
  struct QueueState {
    uint32_t tail = 0;
    uint32_t errors = 0;
  };

  void init_identification();
  void reset_locked(bool clear_control);
  void halt_locked(regs::FatalError error);

  // Server thread: accepts one client at a time, detects its disconnect, beats the heart.
  void server_loop();
  void accept_client();
  void send_handshake(int fd);
  void disconnect_client();

  // Engine threads: queue q waits on doorbell vector q.
  void engine_loop(uint32_t queue);
  void handle_control();
  void run_queue(uint32_t queue);
  bool step_queue(uint32_t queue);
  [[nodiscard]] Descriptor read_descriptor(uint32_t slot_off) const;
  [[nodiscard]] regs::DescStatus execute(uint32_t queue, const Descriptor& desc) const;
  [[nodiscard]] regs::DescStatus execute_write64(uint32_t queue, const Descriptor& desc) const;
  void complete(uint32_t queue, uint32_t slot_off, const Descriptor& desc, regs::DescStatus status);
  void raise_irq_locked(uint32_t vector) const;

  GpuConfig config_;
  const GuestRam& ram_;
  DoorbellHook on_doorbell_;
  UniqueFd shm_fd_;
  Mapping shm_;
  SharedPage page_;
  UniqueFd vram_fd_;
  Mapping vram_;
  UniqueFd stop_fd_;
  std::vector<UniqueFd> doorbell_fds_;
  UniqueFd listen_fd_;
  UniqueFd client_fd_;  // server thread only

  // Shared: an engine executing one descriptor. Exclusive: reset, control requests, swapping the
  // client's interrupt eventfds. Guards everything below.
  mutable std::shared_mutex exec_mutex_;
  std::vector<UniqueFd> irq_fds_;
  std::vector<QueueState> queues_;
  uint32_t control_ack_ = 0;
  std::atomic<bool> halted_{false};

  std::vector<std::jthread> threads_;  // last: joined before anything above is destroyed
};

}  // namespace hmmgpu
