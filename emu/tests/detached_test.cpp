// SPDX-License-Identifier: GPL-2.0
// The detached device (Gpu::Detached): the real device model over caller-owned memory, its
// engines run on the test's thread. The seam the fuzzers (emu/fuzz) stand on, and the home of
// their regression tests.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "gpu.h"
#include "guest_ram.h"
#include "regs.h"

namespace hmmgpu {
namespace {

using regs::DescStatus;

constexpr uint64_t kRamSize = 256 << 10;
constexpr uint64_t kVram = 64 << 10;
constexpr uint32_t kChannels = 1;
constexpr uint32_t kCompute = 1;
constexpr uint32_t kCq = 1 + kChannels;

constexpr uint32_t st(DescStatus status) { return static_cast<uint32_t>(status); }

class DetachedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gpu_ = std::make_unique<Gpu>(GpuConfig{.index = 0,
                                           .vram_size = kVram,
                                           .channels = kChannels,
                                           .compute = kCompute,
                                           .contexts = 4,
                                           .vectors = 2 + kChannels + kCompute,
                                           .peer_group = 1,
                                           .socket_path = {},
                                           .copy_floor = false},
                                 ram_, Gpu::Detached{.shm = shm_, .vram = vram_});
  }

  [[nodiscard]] uint32_t reg32(uint32_t off) const {
    return page_.load32(off, std::memory_order_acquire);
  }
  void set_reg32(uint32_t off, uint32_t value) const {
    page_.store32(off, value, std::memory_order_release);
  }
  // Writes a descriptor at the queue's HEAD and publishes it; returns its ring slot offset.
  uint32_t submit(uint32_t queue, uint16_t opcode, std::array<uint64_t, regs::kDescArgs> args) {
    const uint32_t head = reg32(regs::queue_reg(queue, regs::qreg::kHead));
    const uint32_t slot = regs::ring_offset(queue) + (head % regs::kRingEntries) * regs::kDescSize;
    page_.store64(slot, opcode, std::memory_order_relaxed);
    page_.store64(slot + regs::desc::kSeqno, head + 1, std::memory_order_relaxed);
    for (uint32_t i = 0; i < regs::kDescArgs; ++i) {
      page_.store64(slot + regs::desc::kArg0 + 8 * i, args.at(i), std::memory_order_relaxed);
    }
    set_reg32(regs::queue_reg(queue, regs::qreg::kHead), head + 1);
    return slot;
  }
  [[nodiscard]] uint32_t status(uint32_t slot) const { return reg32(slot + regs::desc::kStatus); }
  void store_ram(uint64_t gpa, uint64_t value) { std::memcpy(ram_mem_.data() + gpa, &value, 8); }
  [[nodiscard]] uint64_t load_ram(uint64_t gpa) const {
    uint64_t value = 0;
    std::memcpy(&value, ram_mem_.data() + gpa, 8);
    return value;
  }

  std::vector<std::byte> ram_mem_ = std::vector<std::byte>(kRamSize);
  GuestRam ram_{ram_mem_};
  std::vector<std::byte> shm_ = std::vector<std::byte>(regs::kShmSize);
  std::vector<std::byte> vram_ = std::vector<std::byte>(kVram);
  SharedPage page_{shm_.data(), shm_.size()};
  std::unique_ptr<Gpu> gpu_;
};

// It identifies itself like any device and executes nothing until its engine runs.
TEST_F(DetachedTest, RunsOnlyWhenTheCallerRunsTheEngine) {
  EXPECT_EQ(std::memcmp(shm_.data(), regs::kSignature.data(), regs::kSignature.size()), 0);
  EXPECT_EQ(reg32(regs::reg::kStatus), regs::kStatusReady);
  const uint32_t slot = submit(0, regs::kOpWrite64, {0x1000, 0x1234});
  EXPECT_EQ(reg32(regs::queue_reg(0, regs::qreg::kTail)), 0U);
  EXPECT_EQ(gpu_->run_engine(0, 16), 1U);
  EXPECT_EQ(status(slot), st(DescStatus::kOk));
  EXPECT_EQ(load_ram(0x1000), 0x1234U);
  EXPECT_EQ(reg32(regs::queue_reg(0, regs::qreg::kTail)), 1U);
  EXPECT_EQ(gpu_->run_engine(0, 16), 0U);  // idle
}

// The step budget bounds a run: the rest stays pending for the next one.
TEST_F(DetachedTest, StepBudget) {
  for (int i = 0; i < 3; ++i) {
    submit(0, regs::kOpNop, {});
  }
  EXPECT_EQ(gpu_->run_engine(0, 2), 2U);
  EXPECT_EQ(gpu_->run_engine(0, 2), 1U);
}

// A launch that faults stalls its queue, which then runs nothing until a replay; the fault entry
// lands in the fault buffer in guest RAM.
TEST_F(DetachedTest, StalledQueueWaitsForTheReplay) {
  constexpr uint64_t kRoot = 0x1000;
  constexpr uint64_t kFaultBuf = 0x8000;
  page_.store64(regs::freg::kBufAddr, kFaultBuf, std::memory_order_relaxed);
  set_reg32(regs::freg::kBufEntries, 16);
  submit(0, regs::kOpCtxBind, {1, kRoot});
  ASSERT_EQ(gpu_->run_engine(0, 16), 1U);
  const uint32_t launch = submit(
      kCq, regs::kOpLaunch, {regs::launch::arg0(1, regs::launch::kFillU32), 16, 0x10000, 0, 7});
  EXPECT_EQ(gpu_->run_engine(kCq, 16), 2U);  // validated, then stalled on its first wave
  EXPECT_EQ(reg32(regs::freg::kPut), 1U);
  EXPECT_EQ(load_ram(kFaultBuf + regs::fault::kVa), 0x10000U);
  EXPECT_EQ(reg32(regs::freg::kStalled), 1U << kCq);
  EXPECT_EQ(gpu_->run_engine(kCq, 16), 0U);
  // Map VA 0x10000 to guest page 0x20000 through tables at 0x2000..0x4000.
  store_ram(kRoot, regs::mmu::directory(0x2000));
  store_ram(0x2000, regs::mmu::directory(0x3000));
  store_ram(0x3000, regs::mmu::directory(0x4000));
  store_ram(0x4000 + 8 * regs::mmu::table_index(0x10000, 0),
            regs::mmu::leaf(0x20000, regs::copy::kApSysmem, true));
  submit(0, regs::kOpFaultReplay, {});
  ASSERT_EQ(gpu_->run_engine(0, 16), 1U);
  EXPECT_EQ(gpu_->run_engine(kCq, 16), 1U);
  EXPECT_EQ(status(launch), st(DescStatus::kOk));
  EXPECT_EQ(load_ram(0x20000), 0x0000000700000007U);
}

// disconnect() is the reset of a client going away: the control registers are cleared too.
TEST_F(DetachedTest, Disconnect) {
  set_reg32(regs::reg::kControlSeq, 5);
  submit(0, regs::kOpNop, {});
  gpu_->disconnect();
  EXPECT_EQ(reg32(regs::reg::kControlSeq), 0U);
  EXPECT_EQ(reg32(regs::queue_reg(0, regs::qreg::kHead)), 0U);
  EXPECT_EQ(gpu_->run_engine(0, 16), 0U);
}

// The buffers must have the sizes the configuration says.
TEST(Detached, RejectsBuffersOfTheWrongSize) {
  std::vector<std::byte> ram_mem(kRamSize);
  const GuestRam ram(ram_mem);
  std::vector<std::byte> shm(regs::kShmSize);
  std::vector<std::byte> vram(kVram - 1);
  EXPECT_THROW(Gpu(GpuConfig{.index = 0,
                             .vram_size = kVram,
                             .channels = 0,
                             .compute = 0,
                             .contexts = 1,
                             .vectors = 2,
                             .peer_group = 1,
                             .socket_path = {},
                             .copy_floor = false},
                   ram, Gpu::Detached{.shm = shm, .vram = vram}),
               std::system_error);
}

}  // namespace
}  // namespace hmmgpu
