// SPDX-License-Identifier: GPL-2.0
// One emulated hmmgpu device: its BAR2 shared memory, VRAM, ivshmem server socket and the engine
// threads that execute its queues (SPEC sections 2-6).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
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

class Gpu;
// The GPU with DEVICE_INDEX `index` in this process, or nullptr (SPEC 4.4, AP_PEER). The GPUs it
// returns stay alive, with their VRAM mapped, until every GPU's threads have stopped.
using PeerLookup = std::function<const Gpu*(uint32_t index)>;

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
  Gpu(GpuConfig config, const GuestRam& ram, DoorbellHook on_doorbell, PeerLookup peers = {});
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;
  Gpu(Gpu&&) = delete;
  Gpu& operator=(Gpu&&) = delete;
  // Stops and joins every thread, closes the client and removes the socket.
  ~Gpu();
  // Stops and joins every thread (idempotent); the VRAM stays mapped until destruction.
  void stop();

  [[nodiscard]] const std::string& socket_path() const { return config_.socket_path; }
  [[nodiscard]] uint32_t num_queues() const { return 1 + config_.channels; }
  [[nodiscard]] uint32_t index() const { return config_.index; }

  // Host pointer to VRAM bytes [offset, offset + len), or nullptr when the range is empty or not
  // inside VRAM. The mapping never changes, so peers use it without any lock.
  [[nodiscard]] std::byte* vram_at(uint64_t offset, uint64_t len) const;

  // Host-side fault injection (SPEC 8.1); thread-safe.
  void inject_fail_copies(uint64_t count);
  void inject_fail_vram(uint64_t start, uint64_t end);
  void clear_faults();
  void set_hung(bool hung);
  [[nodiscard]] bool hung() const { return hung_.load(std::memory_order_acquire); }
  // True when a fail-vram range of this GPU intersects VRAM bytes [offset, offset + len), which
  // vram_at() has accepted.
  [[nodiscard]] bool vram_fault(uint64_t offset, uint64_t len) const;

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
  enum class Step { kMore, kIdle, kHung };
  // Runs the queue until it is empty; false when it stopped because the GPU is hung.
  bool run_queue(uint32_t queue);
  Step step_queue(uint32_t queue);
  [[nodiscard]] Descriptor read_descriptor(uint32_t slot_off) const;
  [[nodiscard]] regs::DescStatus execute(uint32_t queue, uint32_t slot_off, const Descriptor& desc);
  [[nodiscard]] regs::DescStatus execute_write64(uint32_t queue, const Descriptor& desc) const;

  // Copy engine (SPEC 4.4). One side of a copy as named by the aperture word.
  struct CopySide {
    uint32_t aperture = 0;
    const Gpu* vram = nullptr;  // whose VRAM (AP_VRAM, or a valid AP_PEER)
    bool bad_peer = false;      // AP_PEER naming no other device
  };
  [[nodiscard]] regs::DescStatus decode_apertures(uint64_t word, CopySide& src,
                                                  CopySide& dst) const;
  [[nodiscard]] regs::DescStatus decode_copy(const Descriptor& desc, CopySide& src,
                                             CopySide& dst) const;
  [[nodiscard]] regs::DescStatus copy_block(const CopySide& src, uint64_t src_addr,
                                            const CopySide& dst, uint64_t dst_addr, uint64_t len);
  [[nodiscard]] bool consume_fail_copies();
  [[nodiscard]] regs::DescStatus execute_copy(const Descriptor& desc);
  [[nodiscard]] regs::DescStatus execute_copy_list(uint32_t slot_off, const Descriptor& desc);
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
  PeerLookup peers_;

  // Fault injection. fault_mutex_ is a leaf lock: nothing else is acquired while holding it, so
  // engines of two GPUs checking each other's ranges cannot deadlock.
  std::atomic<uint64_t> fail_copies_{0};
  std::atomic<bool> has_vram_faults_{false};
  mutable std::mutex fault_mutex_;
  std::vector<std::pair<uint64_t, uint64_t>> vram_faults_;  // [start, end), guarded by it
  std::atomic<bool> hung_{false};

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
