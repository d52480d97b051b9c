// SPDX-License-Identifier: GPL-2.0
// One emulated hmmgpu device: its BAR2 shared memory, VRAM, ivshmem server socket, the engine
// threads that execute its queues (SPEC sections 2-6), and its MMU, compute engines and fault
// buffer (SPEC 4.5-4.8, in gpu_mmu.cpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "compute.h"
#include "guest_ram.h"
#include "mmu.h"
#include "os.h"
#include "regs.h"
#include "sync.h"

namespace hmmgpu {

struct GpuConfig {
  uint32_t index = 0;
  uint64_t vram_size = 0;
  uint32_t channels = 0;
  uint32_t compute = 0;     // compute queues (SPEC 4.7)
  uint32_t contexts = 1;    // MMU contexts (SPEC 4.5)
  uint32_t vectors = 0;     // at least num_queues() + 1 (the fault vector)
  uint64_t peer_group = 0;  // PEER_GROUP (SPEC 3.1): the same for every GPU of the process
  std::string socket_path;
  bool copy_floor = false;  // start with the copy floor on (SPEC 8.2)
};

// Test seam: called by a compute engine with its queue index after it has translated a wave and
// before it accesses memory, while it holds the wave's translations (SPEC 4.6). May block.
using WaveHook = std::function<void(uint32_t queue)>;

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

// An OP_LAUNCH between its validation and its completion (SPEC 4.7). Owned by its queue's engine,
// except while stalled (Gpu::Stall).
struct LaunchState {
  Descriptor desc;
  uint32_t slot_off = 0;
  uint32_t context = 0;
  const KernelInfo* kernel = nullptr;
  uint64_t count = 0;
  uint64_t va0 = 0;
  uint64_t va1 = 0;
  uint32_t scalar = 0;
  uint64_t done = 0;  // elements performed: whole waves
  KernelAccumulator acc;
};

// The name of a descriptor status, for logs.
[[nodiscard]] const char* status_name(regs::DescStatus status);
// Checks what every opcode shares: reserved flags, and that arguments past `used_args` are zero.
[[nodiscard]] regs::DescStatus check_common(const Descriptor& desc, size_t used_args);

class Gpu {
 public:
  // Creates the shared memory, VRAM and listening socket and starts the threads. Throws
  // std::system_error on host failures and on a configuration the SPEC does not allow.
  Gpu(GpuConfig config, const GuestRam& ram, DoorbellHook on_doorbell, PeerLookup peers = {});
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;
  Gpu(Gpu&&) = delete;
  Gpu& operator=(Gpu&&) = delete;
  // Test seam (the fuzzers, emu/fuzz, and host tests): a detached device. It has no transport: no
  // socket, no eventfds, no thread. BAR2 and VRAM are the caller's buffers (kShmSize and
  // config.vram_size bytes, alive as long as the Gpu), so AddressSanitizer sees every access; the
  // caller plays the guest (it writes BAR2 and guest RAM) and schedules the engines with
  // run_engine(). Interrupts go nowhere. Throws std::system_error on a bad configuration or
  // buffers of the wrong size.
  struct Detached {
    std::span<std::byte> shm;
    std::span<std::byte> vram;
  };
  Gpu(GpuConfig config, const GuestRam& ram, Detached memory, PeerLookup peers = {});
  // Stops and joins every thread, closes the client and removes the socket.
  ~Gpu();
  // Stops and joins every thread (idempotent); the VRAM stays mapped until destruction.
  void stop();

  [[nodiscard]] const std::string& socket_path() const { return config_.socket_path; }
  [[nodiscard]] uint32_t num_queues() const { return 1 + config_.channels + config_.compute; }
  [[nodiscard]] uint32_t index() const { return config_.index; }
  [[nodiscard]] uint32_t fault_vector() const { return num_queues(); }
  [[nodiscard]] bool is_compute(uint32_t queue) const {
    return queue > config_.channels && queue < num_queues();
  }

  // See WaveHook; an empty function removes it. Thread-safe.
  void set_wave_hook(WaveHook hook);
  // TLB entries of `context` for VA pages [first_vpn, end_vpn) (test checks); thread-safe.
  [[nodiscard]] size_t tlb_entries(uint32_t context, uint64_t first_vpn, uint64_t end_vpn) const;

  // Host pointer to VRAM bytes [offset, offset + len), or nullptr when the range is empty or not
  // inside VRAM. The mapping never changes, so peers use it without any lock.
  [[nodiscard]] std::byte* vram_at(uint64_t offset, uint64_t len) const;

  // Host-side fault injection (SPEC 8.1); thread-safe.
  void inject_fail_copies(uint64_t count);
  void inject_fail_vram(uint64_t start, uint64_t end);
  void clear_faults();
  void set_hung(bool hung);
  [[nodiscard]] bool hung() const { return hung_.load(std::memory_order_acquire); }
  // The copy floor (SPEC 8.2, benchmarks only): copies are validated and complete, but move no
  // bytes. Thread-safe; logs each change.
  void set_copy_floor(bool on);
  [[nodiscard]] bool copy_floor() const { return copy_floor_.load(std::memory_order_relaxed); }
  // True when a fail-vram range of this GPU intersects VRAM bytes [offset, offset + len), which
  // vram_at() has accepted.
  [[nodiscard]] bool vram_fault(uint64_t offset, uint64_t len) const;

  // Detached devices only (std::logic_error otherwise), on the caller's thread, one caller at a
  // time. run_engine does what the engine of `queue` does when its doorbell wakes it: nothing while
  // the GPU is hung or the queue's launch is stalled; else the control request first (queue 0),
  // then descriptors and waves until the queue is idle or stalls, or `max_steps` of them are done.
  // Returns the steps done. disconnect does what a client disconnect does (SPEC 2.1): a reset
  // that also clears the control registers.
  size_t run_engine(uint32_t queue, size_t max_steps);
  void disconnect();
  // Detached devices only, as run_engine: the descriptors of `queue` the device has completed, its
  // own copy of TAIL. The guest can overwrite TAIL in BAR2; this copy it cannot move.
  [[nodiscard]] uint32_t completed(uint32_t queue) const;

 private:
  using Launch = LaunchState;
  struct QueueState {
    uint32_t tail = 0;
    uint32_t errors = 0;
    std::optional<Launch> launch;
  };
  // A launch stalled on faults (SPEC 4.8), guarded by mmu_mutex_. While `stalled` is set, the
  // queue's QueueState belongs to whoever holds mmu_mutex_ (a cancel completes the launch from the
  // control queue's engine); the engine touches it again only after seeing `stalled` clear.
  struct Stall {
    bool stalled = false;
    uint32_t context = 0;
    uint64_t id = 0;              // the STALL of its fault entries
    std::vector<uint64_t> pages;  // the stalled wave's faulting page VAs, ascending
  };
  // One page of a wave: its VA page, whether the wave writes it, and its translation.
  struct WavePage {
    uint64_t vpn = 0;
    bool write = false;
    Translation translation;
  };
  // One faulting page of a wave, as its fault-buffer entry names it.
  struct PageFault {
    uint64_t va = 0;
    uint8_t access = 0;
    uint8_t type = 0;
  };
  // What translating one page gave: a translation, a fault (fault_type) or an error (status).
  struct PageResult {
    regs::DescStatus status = regs::DescStatus::kOk;
    std::optional<uint8_t> fault_type;
    Translation translation;
  };

  // What both constructors do once the memories are set: checks the configuration, fills in the
  // identification registers, resets.
  void init_device();
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
  enum class Wake { kRun, kStop, kAgain };
  // Waits for the queue's doorbell and consumes it: kRun when rung, kStop when the GPU stops,
  // kAgain when there is nothing to do yet (interrupted, spurious, or the GPU hung meanwhile).
  Wake wait_doorbell(uint32_t queue);
  void handle_control();
  enum class Step { kMore, kIdle, kHung, kStalled };
  // Runs the queue until it is empty (kIdle), the GPU is hung (kHung) or a launch stalls.
  Step run_queue(uint32_t queue);
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

  // MMU control opcodes (SPEC 4.5, 4.6, 4.8), queue 0; gpu_mmu.cpp.
  [[nodiscard]] regs::DescStatus execute_ctx_bind(const Descriptor& desc);
  [[nodiscard]] regs::DescStatus execute_tlb_invalidate(const Descriptor& desc);
  [[nodiscard]] regs::DescStatus execute_fault_replay(const Descriptor& desc);
  [[nodiscard]] regs::DescStatus execute_fault_cancel(const Descriptor& desc);
  // Cancels the stalled launch of `queue` with ST_MMU_FAULT and ARG5 = `va`. Caller holds
  // exec_mutex_ (shared) and mmu_mutex_, and has seen the queue's Stall set.
  void cancel_stalled_locked(uint32_t queue, uint64_t va);
  void reset_mmu_locked();

  // Compute engine (SPEC 4.7); gpu_mmu.cpp. start_launch validates an OP_LAUNCH and makes it the
  // queue's launch, or completes it with its error; run_wave executes the launch's next wave.
  void start_launch(uint32_t queue, uint32_t slot_off, const Descriptor& desc);
  [[nodiscard]] regs::DescStatus check_launch(const Descriptor& desc, Launch& launch,
                                              uint64_t& fail_va);
  Step run_wave(uint32_t queue);
  // The pages of elements [begin, end) of the launch, ascending, one per VA page (SPEC 4.7).
  [[nodiscard]] static std::vector<WavePage> wave_pages(const Launch& launch, uint64_t begin,
                                                        uint64_t end);
  // Performs elements [begin, end) through the wave's translated pages.
  static void perform_wave(Launch& launch, const std::vector<WavePage>& pages, uint64_t begin,
                           uint64_t end);
  void finish_launch(uint32_t queue, regs::DescStatus status, uint64_t arg5);
  [[nodiscard]] PageResult translate_page(uint32_t context, uint64_t root, uint64_t vpn,
                                          bool write);
  [[nodiscard]] regs::DescStatus resolve_leaf(uint64_t leaf, Translation& out) const;
  // Reports a stalled wave's faults (SPEC 4.8 steps 1-3). Caller holds exec_mutex_ (shared) and
  // mmu_mutex_.
  void report_faults_locked(uint32_t queue, uint32_t context, const std::vector<PageFault>& faults);
  void write_fault_entry_locked(uint32_t queue, uint32_t context, uint64_t stall, uint64_t va,
                                uint8_t access, uint8_t type);
  // Waits until the queue's launch is no longer stalled; false when the GPU stops.
  [[nodiscard]] bool wait_unstalled(uint32_t queue);
  [[nodiscard]] bool stalled(uint32_t queue) const;

  GpuConfig config_;
  const GuestRam& ram_;
  DoorbellHook on_doorbell_;
  UniqueFd shm_fd_;
  Mapping shm_;
  SharedPage page_;
  UniqueFd vram_fd_;
  Mapping vram_;
  std::byte* vram_base_ = nullptr;  // vram_'s, or a detached device's buffer
  bool detached_ = false;
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
  std::atomic<bool> copy_floor_{false};     // SPEC 8.2; relaxed: it orders nothing
  std::atomic<bool> has_wave_hook_{false};  // wave_hook_ (below) is set

  // Shared: an engine executing one descriptor, or one wave of a launch. Exclusive: reset, control
  // requests, swapping the client's interrupt eventfds. Guards everything below. Writer-first, so
  // a control request waits only for the steps in progress, however busy the engines are.
  mutable WriterFirstSharedMutex exec_mutex_;
  std::vector<UniqueFd> irq_fds_;
  std::vector<QueueState> queues_;
  uint32_t control_ack_ = 0;
  std::atomic<bool> halted_{false};
  bool stopping_ = false;  // stop() has begun; guarded by mmu_mutex_ (here to save padding)

  // The MMU (SPEC 4.5-4.8). Lock order: exec_mutex_, then gate_, then mmu_mutex_ (a leaf: held
  // for bookkeeping only, never while waiting for anything but the stall condition).
  // Shared: one compute wave (translate, then access); exclusive: OP_CTX_BIND and
  // OP_TLB_INVALIDATE dropping TLB entries, so they complete only after every wave that may have
  // used a dropped translation. Writer-first, so waves back to back cannot starve them.
  WriterFirstSharedMutex gate_;
  mutable std::mutex mmu_mutex_;
  std::condition_variable stall_cv_;  // a Stall cleared, or stopping_
  std::vector<uint64_t> roots_;       // per context, 0 = unbound; guarded by mmu_mutex_
  Tlb tlb_;                           // guarded by mmu_mutex_
  std::vector<Stall> stalls_;         // per queue; guarded by mmu_mutex_
  uint64_t replay_gen_ = 0;           // OP_FAULT_REPLAYs executed; guarded by mmu_mutex_
  uint64_t stall_seq_ = 0;            // the last STALL number given; guarded by mmu_mutex_
  uint32_t fault_put_ = 0;            // the device's copies of the RO fault registers,
  uint32_t fault_dropped_ = 0;        // guarded by mmu_mutex_
  uint32_t fault_status_ = 0;
  uint32_t fault_stalled_ = 0;
  mutable std::mutex hook_mutex_;
  WaveHook wave_hook_;  // guarded by hook_mutex_

  std::vector<std::jthread> threads_;  // last: joined before anything above is destroyed
};

}  // namespace hmmgpu
