// SPDX-License-Identifier: GPL-2.0
// Test side of the ivshmem protocol: a client that behaves like QEMU's ivshmem-doorbell device
// and a guest driver poking the register page, without a VM.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "emulator.h"
#include "gpu.h"
#include "os.h"
#include "regs.h"

namespace hmmgpu::test {

inline constexpr int kWaitMs = 2000;  // upper bound of every wait; tests never hang

struct Msg {
  int64_t value = 0;
  UniqueFd fd;
};

// One descriptor as the driver writes it.
struct Desc {
  uint16_t opcode = regs::kOpNop;
  uint16_t flags = 0;
  uint64_t seqno = 0;
  std::array<uint64_t, regs::kDescArgs> args{};
};

Desc nop(uint64_t seqno, uint16_t flags = 0);
Desc write64(uint64_t seqno, uint64_t addr, uint64_t value);
// SPEC 4.4: OP_COPY of `len` bytes, and OP_COPY_LIST of `count` entries at guest address `list`.
Desc copy(uint64_t seqno, uint64_t src, uint64_t dst, uint64_t len, uint64_t apertures,
          uint16_t flags = 0);
Desc copy_list(uint64_t seqno, uint64_t list, uint64_t count, uint64_t block, uint64_t apertures,
               uint16_t flags = 0);
// SPEC 4.5-4.8: the MMU opcodes of queue 0, and OP_LAUNCH of the compute queues.
Desc ctx_bind(uint64_t seqno, uint64_t context, uint64_t root);
Desc tlb_invalidate(uint64_t seqno, uint64_t context, uint64_t va, uint64_t len);
Desc fault_replay(uint64_t seqno);
Desc fault_cancel(uint64_t seqno, uint64_t context, uint64_t va, uint64_t mode);
Desc launch(uint64_t seqno, uint32_t context, uint32_t kernel, uint64_t count, uint64_t va0,
            uint64_t va1 = 0, uint64_t scalar = 0, uint16_t flags = 0);

class FakeQemu {
 public:
  // Connects to `socket_path` and runs the handshake, checking SPEC section 2.1 to the letter for
  // `vectors` vectors. Throws std::runtime_error on any deviation.
  static std::unique_ptr<FakeQemu> connect(const std::string& socket_path, uint32_t vectors);
  // Connects without reading anything (to test a refused client).
  static UniqueFd connect_raw(const std::string& socket_path);
  // Receives one message; throws on EOF, error or after `timeout_ms`.
  static Msg recv_msg(int sock, int timeout_ms = kWaitMs);
  // True when the peer closes `sock` within `timeout_ms` without sending anything.
  static bool closed_without_data(int sock, int timeout_ms = kWaitMs);

  [[nodiscard]] uint32_t reg32(uint32_t off) const;
  [[nodiscard]] uint64_t reg64(uint32_t off) const;
  void set_reg32(uint32_t off, uint32_t value) const;
  void set_reg64(uint32_t off, uint64_t value) const;
  [[nodiscard]] uint32_t qreg32(uint32_t queue, uint32_t field) const;
  [[nodiscard]] uint64_t fence(uint32_t queue) const;
  [[nodiscard]] size_t shm_size() const { return shm_.size(); }
  [[nodiscard]] int64_t peer_id() const { return peer_id_; }
  [[nodiscard]] int socket() const { return sock_.get(); }

  // Rings doorbell vector v (what QEMU does when the guest writes BAR0 Doorbell).
  void ring(uint32_t vector) const;
  // Waits for MSI-X vector v and consumes it; false after `timeout_ms`.
  [[nodiscard]] bool wait_irq(uint32_t vector, int timeout_ms = kWaitMs) const;
  // Writes descriptors at HEAD, publishes them (release store of HEAD) and rings the doorbell.
  // Returns the new HEAD.
  uint32_t submit(uint32_t queue, const std::vector<Desc>& descs);
  void write_desc(uint32_t queue, uint32_t index, const Desc& desc) const;
  // Status field of descriptor `index` (free-running) of `queue`.
  [[nodiscard]] uint32_t desc_status(uint32_t queue, uint32_t index) const;
  // Argument `arg` of descriptor `index` of `queue` as it is now in the ring (ARG5 write-back).
  [[nodiscard]] uint64_t desc_arg(uint32_t queue, uint32_t index, uint32_t arg) const;
  // Polls until TAIL reaches `tail`; false after `timeout_ms`.
  [[nodiscard]] bool wait_tail(uint32_t queue, uint32_t tail, int timeout_ms = kWaitMs) const;
  // Polls until a 32-bit register equals `value`; false after `timeout_ms`.
  [[nodiscard]] bool wait_reg32(uint32_t off, uint32_t value, int timeout_ms = kWaitMs) const;
  // HEAD as this client last published it.
  [[nodiscard]] uint32_t head(uint32_t queue) const { return heads_.at(queue); }
  // A control request (SPEC section 3.3); true when acknowledged in time.
  [[nodiscard]] bool control(uint32_t bits);

 private:
  FakeQemu() = default;

  UniqueFd sock_;
  int64_t peer_id_ = -1;
  UniqueFd shm_fd_;
  Mapping shm_;
  SharedPage page_;
  std::vector<UniqueFd> doorbells_;
  std::vector<UniqueFd> irqs_;
  std::vector<uint32_t> heads_;
  uint32_t control_seq_ = 0;
};

// What every in-process device test starts from: a temporary directory, a sparse guest-RAM
// file in it, and an Emulator serving its sockets there. The directory goes with it.
class TestRig {
 public:
  struct Options {
    uint64_t ram_size = 0;
    uint32_t gpus = 0;
    uint64_t vram_size = 0;
    uint32_t channels = 0;
    uint32_t vectors = 0;
    bool control_file = false;  // serve DIR/control (created by the device)
    uint32_t compute = 2;       // SPEC 1.2 defaults
    uint32_t contexts = 64;
    bool copy_floor = false;   // --copy-floor (SPEC 8.2)
    std::string parent_dir{};  // where the temporary directory goes; empty: the system's
  };
  // Throws std::system_error when the directory, file or emulator cannot be set up.
  explicit TestRig(const Options& options);
  TestRig(const TestRig&) = delete;
  TestRig& operator=(const TestRig&) = delete;
  TestRig(TestRig&&) = delete;
  TestRig& operator=(TestRig&&) = delete;
  ~TestRig();

  [[nodiscard]] Emulator& emu() { return *emu_; }
  [[nodiscard]] int ram_fd() const { return ram_fd_.get(); }
  [[nodiscard]] const std::string& control_path() const { return control_; }

 private:
  std::string dir_;
  std::string control_;
  UniqueFd ram_fd_;
  std::optional<Emulator> emu_;
};

}  // namespace hmmgpu::test
