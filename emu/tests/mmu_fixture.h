// SPDX-License-Identifier: GPL-2.0
// What the MMU and compute suites share (SPEC 1.2): two GPUs served in process, a fake QEMU on
// each, and the guest RAM mapped so that the test plays the driver: it builds page tables, owns
// the fault buffer and prepares data, all in guest memory, and submits descriptors through the
// real ivshmem protocol.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "emulator.h"
#include "fake_qemu.h"
#include "os.h"
#include "regs.h"

namespace hmmgpu::test::mmu {

using regs::DescStatus;

inline constexpr uint64_t kKiB = 1ULL << 10;
inline constexpr uint64_t kMiB = 1ULL << 20;
inline constexpr uint64_t kGiB = 1ULL << 30;
inline constexpr uint64_t kPage = regs::mmu::kPageSize;

inline constexpr uint64_t kRamSize = 1 * kGiB;  // one range: file offset = guest address
inline constexpr uint64_t kVram = 32 * kMiB;
inline constexpr uint32_t kGpus = 2;
inline constexpr uint32_t kChannels = 2;
inline constexpr uint32_t kCompute = 2;
inline constexpr uint32_t kVectors = 8;
inline constexpr uint32_t kContexts = 16;
inline constexpr uint32_t kChannel = 1;         // a copy-engine channel
inline constexpr uint32_t kCq = 1 + kChannels;  // the first compute queue
inline constexpr uint32_t kCq2 = kCq + 1;       // the second
inline constexpr uint32_t kFaultVector = 1 + kChannels + kCompute;

// Guest physical memory map of the tests.
inline constexpr uint64_t kTablePool = 1 * kMiB;  // page tables, bump-allocated
inline constexpr uint64_t kTablePoolEnd = 32 * kMiB;
inline constexpr uint64_t kFaultBuf = 32 * kMiB;  // the fault buffer
inline constexpr uint32_t kFaultEntries = 256;
inline constexpr uint64_t kStaging = 48 * kMiB;  // bounce buffer for VRAM contents
inline constexpr uint64_t kData = 64 * kMiB;     // data pages

constexpr uint32_t st(DescStatus status) { return static_cast<uint32_t>(status); }

// One fault-buffer entry as SPEC 4.8 lays it out.
struct FaultEntry {
  uint64_t va = 0;
  uint32_t context = 0;
  uint8_t access = 0;
  uint8_t type = 0;
  uint16_t engine = 0;
  uint64_t timestamp = 0;
  uint64_t stall = 0;
};

// Blocks a compute engine inside its wave (after translation, before the accesses) until released.
class WaveGate {
 public:
  explicit WaveGate(Gpu& gpu) : gpu_(gpu) {
    gpu_.set_wave_hook([this](uint32_t) {
      std::unique_lock lock(mutex_);
      if (!armed_) {
        return;
      }
      armed_ = false;
      entered_.set_value();
      cv_.wait(lock, [this] { return released_; });
    });
  }
  WaveGate(const WaveGate&) = delete;
  WaveGate& operator=(const WaveGate&) = delete;
  WaveGate(WaveGate&&) = delete;
  WaveGate& operator=(WaveGate&&) = delete;
  ~WaveGate() {
    release();
    gpu_.set_wave_hook({});
  }
  [[nodiscard]] bool wait_entered() {
    return entered_.get_future().wait_for(std::chrono::milliseconds(kWaitMs)) ==
           std::future_status::ready;
  }
  void release() {
    const std::scoped_lock lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  Gpu& gpu_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::promise<void> entered_;
  bool armed_ = true;
  bool released_ = false;
};

class MmuFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_THROW(rig_.emplace(TestRig::Options{.ram_size = kRamSize,
                                                  .gpus = kGpus,
                                                  .vram_size = kVram,
                                                  .channels = kChannels,
                                                  .vectors = kVectors,
                                                  .control_file = true,
                                                  .compute = kCompute,
                                                  .contexts = kContexts}));
    for (uint32_t gpu = 0; gpu < kGpus; ++gpu) {
      ASSERT_NO_THROW(q_.at(gpu) = FakeQemu::connect(rig_->emu().socket_path(gpu), kVectors));
    }
    ram_ = Mapping(rig_->ram_fd(), kRamSize);
  }

  void TearDown() override {
    for (uint32_t gpu = 0; gpu < kGpus; ++gpu) {
      rig_->emu().gpu(gpu).set_wave_hook({});
    }
    for (auto& q : q_) {
      q.reset();
    }
    rig_.reset();
  }

  [[nodiscard]] FakeQemu& q(uint32_t gpu = 0) const { return *q_.at(gpu); }
  [[nodiscard]] Gpu& gpu(uint32_t index = 0) { return rig_->emu().gpu(index); }

  // ---- guest memory ----

  [[nodiscard]] std::byte* at(uint64_t gpa) const { return ram_.data() + gpa; }
  template <typename T>
  void write(uint64_t gpa, const std::vector<T>& values) const {
    std::memcpy(at(gpa), values.data(), values.size() * sizeof(T));
  }
  template <typename T>
  [[nodiscard]] std::vector<T> read(uint64_t gpa, size_t count) const {
    std::vector<T> values(count);
    std::memcpy(values.data(), at(gpa), count * sizeof(T));
    return values;
  }
  [[nodiscard]] uint32_t word(uint64_t gpa) const { return read<uint32_t>(gpa, 1)[0]; }
  // Page-table entries are written and read with one 8-byte atomic access, as the device reads
  // them (SPEC 4.5).
  void store64(uint64_t gpa, uint64_t value) const {
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(at(gpa)))
        .store(value, std::memory_order_release);
  }
  [[nodiscard]] uint64_t load64(uint64_t gpa) const {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(at(gpa)))
        .load(std::memory_order_acquire);
  }

  // ---- page tables: the driver's side of SPEC 4.5 ----

  // A zeroed 4 KiB table from the pool.
  uint64_t new_table() {
    const uint64_t gpa = next_table_;
    next_table_ += kPage;
    EXPECT_LE(next_table_, kTablePoolEnd) << "table pool exhausted";
    std::memset(at(gpa), 0, kPage);
    return gpa;
  }
  // The guest physical address of the directory entry of `va` at `level` (3..1), or of its leaf
  // entry (level 0), under `root`; creates the missing directories above it.
  uint64_t entry_gpa(uint64_t root, uint64_t va, uint32_t level = 0) {
    uint64_t table = root;
    for (uint32_t l = regs::mmu::kLevels - 1; l > level; --l) {
      const uint64_t slot = table + regs::mmu::kEntrySize * regs::mmu::table_index(va, l);
      uint64_t entry = load64(slot);
      if ((entry & regs::mmu::kValid) == 0) {
        entry = regs::mmu::directory(new_table());
        store64(slot, entry);
      }
      table = entry & regs::mmu::kAddrMask;
    }
    return table + regs::mmu::kEntrySize * regs::mmu::table_index(va, level);
  }
  void set_pte(uint64_t root, uint64_t va, uint64_t pte) { store64(entry_gpa(root, va), pte); }
  // Maps [va, va + len) (page-rounded) to consecutive pages from `addr` in `aperture`.
  void map(uint64_t root, uint64_t va, uint64_t len, uint32_t aperture, uint64_t addr,
           bool writable = true, uint32_t peer = 0) {
    const uint64_t first = va & ~(kPage - 1);
    for (uint64_t page = first; page < va + len; page += kPage) {
      set_pte(root, page, regs::mmu::leaf(addr + (page - first), aperture, writable, peer));
    }
  }
  void map_sys(uint64_t root, uint64_t va, uint64_t len, uint64_t gpa, bool writable = true) {
    map(root, va, len, regs::copy::kApSysmem, gpa, writable);
  }
  // A fresh root table, bound to `context` of GPU `gpu`.
  uint64_t bind_new(uint32_t context, uint32_t gpu = 0) {
    const uint64_t root = new_table();
    EXPECT_EQ(run(0, ctx_bind(++seq_, context, root), gpu), st(DescStatus::kOk));
    return root;
  }

  // ---- descriptors ----

  // Submits `desc` with IRQ on `queue` of GPU `gpu`, waits for its completion and its interrupt
  // (the eventfd orders the device's memory writes before our reads) and returns its STATUS.
  uint32_t run(uint32_t queue, Desc desc, uint32_t gpu = 0) {
    desc.flags |= regs::kFlagIrq;
    const uint32_t head = q(gpu).submit(queue, {desc});
    EXPECT_TRUE(q(gpu).wait_tail(queue, head)) << "queue " << queue << " opcode " << desc.opcode;
    EXPECT_TRUE(q(gpu).wait_irq(queue)) << "queue " << queue;
    return q(gpu).desc_status(queue, head - 1);
  }
  // Submits `desc` with IRQ without waiting; returns its descriptor index.
  uint32_t submit(uint32_t queue, Desc desc, uint32_t gpu = 0) {
    desc.flags |= regs::kFlagIrq;
    return q(gpu).submit(queue, {desc}) - 1;
  }
  // ARG5 of descriptor `index` of `queue` (a launch's result or failing VA).
  [[nodiscard]] uint64_t arg5(uint32_t queue, uint32_t index, uint32_t gpu = 0) const {
    return q(gpu).desc_arg(queue, index, regs::launch::kArgResult);
  }
  // The status of the last descriptor run on `queue`.
  [[nodiscard]] uint32_t last_status(uint32_t queue, uint32_t gpu = 0) const {
    return q(gpu).desc_status(queue, q(gpu).head(queue) - 1);
  }
  [[nodiscard]] uint64_t last_arg5(uint32_t queue, uint32_t gpu = 0) const {
    return arg5(queue, q(gpu).head(queue) - 1, gpu);
  }
  uint32_t invalidate(uint32_t context, uint64_t va = 0, uint64_t len = 0, uint32_t gpu = 0) {
    return run(0, tlb_invalidate(++seq_, context, va, len), gpu);
  }
  uint32_t replay(uint32_t gpu = 0) { return run(0, fault_replay(++seq_), gpu); }

  // ---- fault buffer (SPEC 3.5, 4.8) ----

  [[nodiscard]] uint32_t freg(uint32_t off, uint32_t gpu = 0) const { return q(gpu).reg32(off); }
  void enable_faults(uint32_t entries = kFaultEntries, uint64_t addr = kFaultBuf,
                     uint32_t gpu = 0) const {
    q(gpu).set_reg32(regs::freg::kBufEntries, 0);
    q(gpu).set_reg64(regs::freg::kBufAddr, addr);
    q(gpu).set_reg32(regs::freg::kGet, q(gpu).reg32(regs::freg::kPut));
    q(gpu).set_reg32(regs::freg::kBufEntries, entries);  // release: after the address
  }
  [[nodiscard]] FaultEntry fault_entry(uint32_t index, uint32_t entries = kFaultEntries,
                                       uint64_t addr = kFaultBuf) const {
    const std::byte* p = at(addr + uint64_t{index % entries} * regs::fault::kEntrySize);
    FaultEntry e;
    std::memcpy(&e.va, p + regs::fault::kVa, 8);
    std::memcpy(&e.context, p + regs::fault::kContext, 4);
    std::memcpy(&e.access, p + regs::fault::kAccess, 1);
    std::memcpy(&e.type, p + regs::fault::kType, 1);
    std::memcpy(&e.engine, p + regs::fault::kEngine, 2);
    std::memcpy(&e.timestamp, p + regs::fault::kTimestamp, 8);
    std::memcpy(&e.stall, p + regs::fault::kStall, 8);
    return e;
  }
  // Waits for a fault report: FAULT_VECTOR, then FAULT_PUT = `put` (acquire, so the entries are
  // visible).
  [[nodiscard]] bool wait_faults(uint32_t put, uint32_t gpu = 0) const {
    return q(gpu).wait_irq(kFaultVector) && q(gpu).wait_reg32(regs::freg::kPut, put);
  }
  // The entries in [FAULT_GET, FAULT_PUT), consumed (FAULT_GET advanced).
  [[nodiscard]] std::vector<FaultEntry> take_faults(uint32_t entries = kFaultEntries,
                                                    uint64_t addr = kFaultBuf,
                                                    uint32_t gpu = 0) const {
    const uint32_t put = freg(regs::freg::kPut, gpu);
    std::vector<FaultEntry> out;
    for (uint32_t i = freg(regs::freg::kGet, gpu); i != put; ++i) {
      out.push_back(fault_entry(i, entries, addr));
    }
    q(gpu).set_reg32(regs::freg::kGet, put);
    return out;
  }

  std::optional<TestRig> rig_;
  std::array<std::unique_ptr<FakeQemu>, kGpus> q_;
  Mapping ram_;
  uint64_t next_table_ = kTablePool;
  uint64_t seq_ = 0;
};

}  // namespace hmmgpu::test::mmu
