// SPDX-License-Identifier: GPL-2.0
// The device driven through the real ivshmem socket protocol by a fake QEMU, in process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "emulator.h"
#include "fake_qemu.h"

namespace hmmgpu::test {
namespace {

using regs::DescStatus;
using regs::FatalError;

constexpr uint64_t kRamSize = 3ULL << 30;  // above 2816 MiB: exercises the q35 split
constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint32_t kGpus = 2;
constexpr uint32_t kChannels = 2;
constexpr uint32_t kCompute = 2;  // the TestRig default
constexpr uint32_t kVectors = 8;
constexpr uint64_t kVram = 4ULL << 20;

constexpr uint32_t st(DescStatus status) { return static_cast<uint32_t>(status); }

class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_THROW(rig_.emplace(TestRig::Options{.ram_size = kRamSize,
                                                  .gpus = kGpus,
                                                  .vram_size = kVram,
                                                  .channels = kChannels,
                                                  .vectors = kVectors}));
    emu_ = &rig_->emu();
    ASSERT_NO_THROW(q_ = FakeQemu::connect(emu_->socket_path(0), kVectors));
  }

  void TearDown() override {
    q_.reset();
    rig_.reset();
  }

  [[nodiscard]] uint64_t ram_at(uint64_t file_offset) const {
    uint64_t value = 0;
    EXPECT_EQ(::pread(rig_->ram_fd(), &value, sizeof(value), static_cast<off_t>(file_offset)),
              static_cast<ssize_t>(sizeof(value)));
    return value;
  }

  // Submits one descriptor on `queue` and waits for it; returns its status.
  uint32_t run_one(uint32_t queue, const Desc& desc) {
    const uint32_t head = q_->submit(queue, {desc});
    EXPECT_TRUE(q_->wait_tail(queue, head));
    return q_->desc_status(queue, head - 1);
  }

  std::optional<TestRig> rig_;
  Emulator* emu_ = nullptr;
  std::unique_ptr<FakeQemu> q_;
};

// The register map in regs.h carries the offsets and values SPEC.md defines.
TEST(RegisterLayout, MatchesSpec) {
  static_assert(regs::reg::kVersion == 0x008 && regs::reg::kCaps == 0x00c);
  static_assert(regs::reg::kVramSize == 0x010 && regs::reg::kNumQueues == 0x018);
  static_assert(regs::reg::kNumVectors == 0x01c && regs::reg::kDoorbellPeer == 0x020);
  static_assert(regs::reg::kNumChannels == 0x024 && regs::reg::kShmSize == 0x028);
  static_assert(regs::reg::kDeviceIndex == 0x02c && regs::reg::kDmaBits == 0x030);
  static_assert(regs::reg::kName == 0x040 && regs::reg::kStatus == 0x080);
  static_assert(regs::reg::kPeerGroup == 0x060);
  static_assert(regs::reg::kError == 0x084 && regs::reg::kControlAck == 0x088);
  static_assert(regs::reg::kHeartbeat == 0x090 && regs::reg::kControl == 0x0c0);
  static_assert(regs::reg::kControlSeq == 0x0c4);
  static_assert(regs::queue_reg(2, regs::qreg::kHead) == 0x188);
  static_assert(regs::queue_reg(1, regs::qreg::kFence) == 0x150);
  static_assert(regs::queue_reg(0, regs::qreg::kErrors) == 0x118);
  static_assert(regs::queue_reg(0, regs::qreg::kVector) == 0x11c);
  static_assert(regs::desc::kStatus == 4 && regs::desc::kSeqno == 8 && regs::desc::kArg0 == 16);
  static_assert(st(DescStatus::kBadAddress) == 5 && static_cast<int>(FatalError::kBadControl) == 2);
  static_assert(regs::kVersion == 0x00010003 && regs::kCapCopy == 4);
  static_assert(regs::kOpCopy == 2 && regs::kOpCopyList == 3);
  static_assert(st(DescStatus::kBadVram) == 6 && st(DescStatus::kBadPeer) == 7);
  static_assert(st(DescStatus::kOverlap) == 8 && st(DescStatus::kInjected) == 9);
  static_assert(regs::copy::aperture_word(2, 1, 5, 0) == 0x050102);
  static_assert(regs::copy::aperture_word(0, 2, 0, 0xab) == 0xab000200);
  static_assert(regs::copy::kApWordValidMask == 0xffff0303);
  SUCCEED();
}

// The handshake follows SPEC 2.1 (checked inside connect) and BAR2 is SHM_SIZE, a power of two.
TEST_F(DeviceTest, HandshakeOrderCountsAndShmSize) {
  EXPECT_EQ(q_->peer_id(), 1);
  EXPECT_EQ(q_->shm_size(), q_->reg32(regs::reg::kShmSize));
  EXPECT_EQ(q_->shm_size() & (q_->shm_size() - 1), 0U);
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
}

// Every GPU identifies itself per SPEC 3.1 with its own index and name.
TEST_F(DeviceTest, IdentificationRegistersPerGpu) {
  q_.reset();
  uint64_t group0 = 0;
  for (uint32_t gpu = 0; gpu < kGpus; ++gpu) {
    std::unique_ptr<FakeQemu> q;
    ASSERT_NO_THROW(q = FakeQemu::connect(emu_->socket_path(gpu), kVectors));
    std::array<char, 8> sig{};
    for (uint32_t i = 0; i < 8; i += 4) {
      const uint32_t word = q->reg32(i);
      std::memcpy(sig.data() + i, &word, 4);
    }
    EXPECT_EQ(std::memcmp(sig.data(), "HMMGPU\0\0", 8), 0);
    EXPECT_EQ(q->reg32(regs::reg::kVersion), 0x00010003U);
    EXPECT_EQ(q->reg32(regs::reg::kCaps), 0x3fU);  // NOP, WRITE64, COPY, MMU, COMPUTE, FAULT
    EXPECT_EQ(q->reg64(regs::reg::kVramSize), kVram);
    EXPECT_EQ(q->reg32(regs::reg::kNumQueues), 1 + kChannels + kCompute);
    EXPECT_EQ(q->reg32(regs::reg::kNumVectors), kVectors);
    EXPECT_EQ(q->reg32(regs::reg::kDoorbellPeer), 0U);
    EXPECT_EQ(q->reg32(regs::reg::kNumChannels), kChannels);
    EXPECT_EQ(q->reg32(regs::reg::kDeviceIndex), gpu);
    EXPECT_EQ(q->reg32(regs::reg::kDmaBits), 64U);
    std::array<char, regs::reg::kNameSize> name{};
    for (uint32_t i = 0; i < name.size(); i += 4) {
      const uint32_t word = q->reg32(regs::reg::kName + i);
      std::memcpy(name.data() + i, &word, 4);
    }
    EXPECT_EQ(std::string(name.data()), "hmmgpu-emu gpu" + std::to_string(gpu));
    // SPEC 3.1: one non-zero PEER_GROUP for every GPU of the process.
    const uint64_t group = q->reg64(regs::reg::kPeerGroup);
    EXPECT_NE(group, 0U);
    if (gpu == 0) {
      group0 = group;
    }
    EXPECT_EQ(group, group0);
    for (uint32_t queue = 0; queue < 1 + kChannels + kCompute; ++queue) {
      EXPECT_EQ(q->qreg32(queue, regs::qreg::kRingOffset) % 64, 0U);
      const uint32_t entries = q->qreg32(queue, regs::qreg::kRingEntries);
      EXPECT_TRUE(entries != 0 && (entries & (entries - 1)) == 0);
      EXPECT_LE(q->qreg32(queue, regs::qreg::kRingOffset) + entries * 64, q->shm_size());
      EXPECT_EQ(q->qreg32(queue, regs::qreg::kVector), queue);
    }
  }
}

// NOP updates FENCE and TAIL; it interrupts the queue's vector only when IRQ is set.
TEST_F(DeviceTest, NopFenceTailAndInterruptOnlyWithIrqFlag) {
  for (uint32_t queue = 0; queue < 1 + kChannels; ++queue) {
    EXPECT_EQ(run_one(queue, nop(100 + queue)), st(DescStatus::kOk));
    EXPECT_EQ(q_->fence(queue), 100 + queue);
    EXPECT_FALSE(q_->wait_irq(queue, 50));

    EXPECT_EQ(run_one(queue, nop(200 + queue, regs::kFlagIrq)), st(DescStatus::kOk));
    EXPECT_EQ(q_->fence(queue), 200 + queue);
    EXPECT_EQ(q_->qreg32(queue, regs::qreg::kTail), 2U);
    EXPECT_TRUE(q_->wait_irq(queue));
    for (uint32_t v = 0; v < kVectors; ++v) {
      EXPECT_FALSE(q_->wait_irq(v, 0)) << "stray interrupt on vector " << v;
    }
    EXPECT_EQ(q_->qreg32(queue, regs::qreg::kErrors), 0U);
  }
}

// WRITE64 lands at the right file offsets below and above the q35 PCI hole.
TEST_F(DeviceTest, Write64LowAndHighRam) {
  const std::vector<std::pair<uint64_t, uint64_t>> cases = {
      {0x1000, 0x1000},                                      // low RAM: offset = address
      {2 * kGiB - 8, 2 * kGiB - 8},                          // last word below the hole
      {4 * kGiB, 2 * kGiB},                                  // first word above 4 GiB
      {4 * kGiB + 0x12340, 2 * kGiB + 0x12340},              // high RAM: offset = address - 2G
      {4 * kGiB + (kRamSize - 2 * kGiB) - 8, kRamSize - 8},  // last word of RAM
  };
  uint64_t value = 0x1122334455667788;
  for (const auto& [addr, offset] : cases) {
    ++value;
    EXPECT_EQ(run_one(1, write64(value, addr, value)), st(DescStatus::kOk)) << addr;
    EXPECT_EQ(ram_at(offset), value) << std::hex << addr;
  }
  EXPECT_EQ(q_->qreg32(1, regs::qreg::kErrors), 0U);
}

// DMA outside guest RAM fails with BAD_ADDRESS, writes nothing, counts, and the queue goes on.
TEST_F(DeviceTest, Write64BadAddressesFailWithoutWriting) {
  const std::vector<uint64_t> bad = {
      2 * kGiB,                          // start of the PCI hole
      3 * kGiB,                          // inside the hole
      4 * kGiB - 8,                      // last word of the hole
      4 * kGiB + (kRamSize - 2 * kGiB),  // just past the end of RAM
      1ULL << 50,                        // far past the end
      0xfffffffffffffff8ULL,             // wraps past 2^64
  };
  uint32_t errors = 0;
  for (const uint64_t addr : bad) {
    EXPECT_EQ(run_one(2, write64(7, addr, 0xdead)), st(DescStatus::kBadAddress)) << addr;
    EXPECT_EQ(q_->qreg32(2, regs::qreg::kErrors), ++errors);
  }
  EXPECT_EQ(ram_at(2 * kGiB), 0U);  // where an unchecked hole address would have landed
  EXPECT_EQ(ram_at(kRamSize - 8), 0U);
  EXPECT_EQ(run_one(2, write64(8, 0x2000, 42)), st(DescStatus::kOk));
  EXPECT_EQ(ram_at(0x2000), 42U);
  EXPECT_EQ(q_->fence(2), 8U);
}

// Malformed descriptors complete with the right status, in SPEC 5.1 priority, and never stall.
TEST_F(DeviceTest, MalformedDescriptorsFail) {
  Desc bad_opcode = nop(1);
  bad_opcode.opcode = 0x7f;
  Desc bad_flags = nop(2, 0x2);
  Desc nop_arg = nop(3);
  nop_arg.args[5] = 1;
  Desc write_arg = write64(4, 0x3000, 1);
  write_arg.args[2] = 9;
  const Desc misaligned = write64(5, 0x3004, 1);
  Desc misaligned_hole = write64(6, 2 * kGiB + 4, 1);
  const std::vector<std::pair<Desc, DescStatus>> cases = {
      {bad_opcode, DescStatus::kBadOpcode}, {bad_flags, DescStatus::kBadFlags},
      {nop_arg, DescStatus::kBadArg},       {write_arg, DescStatus::kBadArg},
      {misaligned, DescStatus::kBadAlign},  {misaligned_hole, DescStatus::kBadAlign},
  };
  std::vector<Desc> descs;
  descs.reserve(cases.size() + 1);
  for (const auto& [desc, status] : cases) {
    descs.push_back(desc);
  }
  descs.push_back(nop(7, regs::kFlagIrq));
  const uint32_t head = q_->submit(0, descs);
  ASSERT_TRUE(q_->wait_tail(0, head));
  for (uint32_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(q_->desc_status(0, i), st(cases[i].second)) << "descriptor " << i;
  }
  EXPECT_EQ(q_->desc_status(0, head - 1), st(DescStatus::kOk));
  EXPECT_EQ(q_->qreg32(0, regs::qreg::kErrors), cases.size());
  EXPECT_EQ(q_->fence(0), 7U);
  EXPECT_TRUE(q_->wait_irq(0));
  EXPECT_EQ(ram_at(0x3000), 0U);
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
}

// Many descriptors per doorbell, far more than RING_ENTRIES in total, wrap the ring correctly.
TEST_F(DeviceTest, RingWraparound) {
  const uint32_t entries = q_->qreg32(1, regs::qreg::kRingEntries);
  uint64_t seqno = 0;
  for (uint32_t batch = 0; batch < 40; ++batch) {
    std::vector<Desc> descs;
    const uint32_t count = batch % 2 == 0 ? entries : entries / 2 + 3;  // shifts the slot phase
    for (uint32_t i = 0; i < count; ++i) {
      ++seqno;
      descs.push_back(write64(seqno, 0x10000 + 8 * (seqno % 1024), seqno));
    }
    const uint32_t head = q_->submit(1, descs);
    ASSERT_TRUE(q_->wait_tail(1, head)) << "batch " << batch;
    ASSERT_EQ(q_->fence(1), seqno);
    ASSERT_EQ(q_->desc_status(1, head - 1), st(DescStatus::kOk));
  }
  EXPECT_GT(seqno, 20ULL * entries);
  EXPECT_EQ(q_->qreg32(1, regs::qreg::kErrors), 0U);
  EXPECT_EQ(ram_at(0x10000 + 8 * (seqno % 1024)), seqno);
}

// All queues run at the same time, each completing its own stream of writes.
TEST_F(DeviceTest, QueuesRunConcurrently) {
  constexpr uint32_t kPerQueue = 2000;
  constexpr uint32_t kBatch = 100;
  std::vector<std::jthread> threads;
  std::atomic<int> failures{0};
  for (uint32_t queue = 0; queue < 1 + kChannels; ++queue) {
    threads.emplace_back([&, queue] {
      uint32_t head = 0;
      for (uint32_t n = 0; n < kPerQueue; n += kBatch) {
        std::vector<Desc> descs;
        for (uint32_t i = n; i < n + kBatch; ++i) {
          descs.push_back(
              write64(i + 1, 0x100000 * (queue + 1) + 8 * i, (uint64_t{queue} << 32) | i));
        }
        // Each thread owns its queue, so the queue's HEAD bookkeeping is not shared.
        head = q_->submit(queue, descs);
        if (!q_->wait_tail(queue, head)) {
          ++failures;
          return;
        }
      }
    });
  }
  threads.clear();
  ASSERT_EQ(failures.load(), 0);
  for (uint32_t queue = 0; queue < 1 + kChannels; ++queue) {
    EXPECT_EQ(q_->fence(queue), kPerQueue);
    for (uint32_t i = 0; i < kPerQueue; i += 97) {
      EXPECT_EQ(ram_at(0x100000 * (queue + 1) + 8 * i), (uint64_t{queue} << 32) | i);
    }
  }
}

// HEAD more than RING_ENTRIES past TAIL halts everything with ERR_BAD_HEAD; RESET recovers.
TEST_F(DeviceTest, BadHeadHaltsAndResetRecovers) {
  ASSERT_EQ(run_one(1, nop(1)), st(DescStatus::kOk));
  const uint32_t entries = q_->qreg32(1, regs::qreg::kRingEntries);
  q_->write_desc(1, 1, write64(2, 0x4000, 5));
  q_->set_reg32(regs::queue_reg(1, regs::qreg::kHead), 1 + entries + 1);
  q_->ring(1);
  ASSERT_TRUE(q_->wait_reg32(regs::reg::kStatus, regs::kStatusHalted));
  EXPECT_EQ(q_->reg32(regs::reg::kError), static_cast<uint32_t>(FatalError::kBadHead));
  EXPECT_EQ(q_->qreg32(1, regs::qreg::kTail), 1U);  // no descriptor was read
  EXPECT_EQ(ram_at(0x4000), 0U);

  // A halted device executes nothing, on any queue.
  q_->submit(2, {nop(9)});
  EXPECT_FALSE(q_->wait_tail(2, 1, 100));

  ASSERT_TRUE(q_->control(regs::kControlReset));
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
  EXPECT_EQ(q_->reg32(regs::reg::kError), 0U);
  for (uint32_t queue = 0; queue < 1 + kChannels; ++queue) {
    EXPECT_EQ(q_->qreg32(queue, regs::qreg::kHead), 0U);
    EXPECT_EQ(q_->qreg32(queue, regs::qreg::kTail), 0U);
    EXPECT_EQ(q_->fence(queue), 0U);
    EXPECT_EQ(q_->qreg32(queue, regs::qreg::kErrors), 0U);
  }
  EXPECT_EQ(run_one(1, nop(3, regs::kFlagIrq)), st(DescStatus::kOk));
  EXPECT_TRUE(q_->wait_irq(1));
  EXPECT_EQ(run_one(2, nop(4)), st(DescStatus::kOk));
}

// A reserved CONTROL bit halts with ERR_BAD_CONTROL (acknowledged); RESET recovers.
TEST_F(DeviceTest, ReservedControlBitHalts) {
  ASSERT_TRUE(q_->control(0));  // an empty request is only acknowledged
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
  ASSERT_TRUE(q_->control(regs::kControlReset | 0x80000000U));
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusHalted);
  EXPECT_EQ(q_->reg32(regs::reg::kError), static_cast<uint32_t>(FatalError::kBadControl));
  ASSERT_TRUE(q_->control(regs::kControlReset));
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
  EXPECT_EQ(run_one(0, nop(1)), st(DescStatus::kOk));
}

// A second client is refused while one is connected; the first keeps working.
TEST_F(DeviceTest, SecondClientRefused) {
  const UniqueFd second = FakeQemu::connect_raw(emu_->socket_path(0));
  EXPECT_TRUE(FakeQemu::closed_without_data(second.get()));
  EXPECT_EQ(run_one(0, nop(1, regs::kFlagIrq)), st(DescStatus::kOk));
  EXPECT_TRUE(q_->wait_irq(0));
}

// A disconnect resets the device and the next client gets a fresh, working one.
TEST_F(DeviceTest, DisconnectResetsAndNewClientWorks) {
  ASSERT_EQ(run_one(1, nop(5)), st(DescStatus::kOk));
  ASSERT_TRUE(q_->control(0));
  q_.reset();
  ASSERT_NO_THROW(q_ = FakeQemu::connect(emu_->socket_path(0), kVectors));
  EXPECT_EQ(q_->peer_id(), 1);
  EXPECT_EQ(q_->qreg32(1, regs::qreg::kTail), 0U);
  EXPECT_EQ(q_->fence(1), 0U);
  EXPECT_EQ(q_->reg32(regs::reg::kControlAck), 0U);
  EXPECT_EQ(q_->reg32(regs::reg::kStatus), regs::kStatusReady);
  EXPECT_EQ(run_one(1, nop(6, regs::kFlagIrq)), st(DescStatus::kOk));
  EXPECT_TRUE(q_->wait_irq(1));
}

// HEARTBEAT advances while the device runs (at least every 100 ms).
TEST_F(DeviceTest, HeartbeatAdvances) {
  const uint64_t before = q_->reg64(regs::reg::kHeartbeat);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_GE(q_->reg64(regs::reg::kHeartbeat), before + 3);
}

}  // namespace
}  // namespace hmmgpu::test
