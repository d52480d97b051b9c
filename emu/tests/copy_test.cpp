// SPDX-License-Identifier: GPL-2.0
// SPEC 1.1: the copy engine (section 4.4) and the fault-injection control file (section 8.1),
// driven in process through the real ivshmem protocol by fake QEMUs on GPU 0 and GPU 1.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "emulator.h"
#include "fake_qemu.h"

namespace hmmgpu::test {
namespace {

using regs::DescStatus;
using regs::copy::aperture_word;
using regs::copy::kApPeer;
using regs::copy::kApSysmem;
using regs::copy::kApVram;

constexpr uint64_t kRamSize = 3ULL << 30;  // above 2816 MiB: exercises the q35 split
constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kHigh = 4 * kGiB;  // first address above the PCI hole (file offset 2 GiB)
constexpr uint32_t kGpus = 2;
constexpr uint32_t kChannels = 2;
constexpr uint32_t kVectors = 8;
constexpr uint64_t kVram = 32ULL << 20;

constexpr uint64_t kSysToVram = aperture_word(kApSysmem, kApVram);
constexpr uint64_t kVramToSys = aperture_word(kApVram, kApSysmem);
constexpr uint64_t kVramToVram = aperture_word(kApVram, kApVram);
constexpr uint64_t kSysToSys = aperture_word(kApSysmem, kApSysmem);

constexpr uint32_t st(DescStatus status) { return static_cast<uint32_t>(status); }

// File offset of guest physical address `gpa` (SPEC 2.5, RAM above 2816 MiB).
constexpr uint64_t file_off(uint64_t gpa) { return gpa >= kHigh ? gpa - 2 * kGiB : gpa; }

std::vector<uint8_t> pattern(uint64_t seed, size_t len) {
  std::vector<uint8_t> bytes(len);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (uint8_t& b : bytes) {
    x ^= x << 13U;
    x ^= x >> 7U;
    x ^= x << 17U;
    b = static_cast<uint8_t>(x);
  }
  return bytes;
}

class CopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_THROW(rig_.emplace(TestRig::Options{.ram_size = kRamSize,
                                                  .gpus = kGpus,
                                                  .vram_size = kVram,
                                                  .channels = kChannels,
                                                  .vectors = kVectors,
                                                  .control_file = true}));
    emu_ = &rig_->emu();
    control_ = rig_->control_path();
    ASSERT_NO_THROW(q0_ = FakeQemu::connect(emu_->socket_path(0), kVectors));
    ASSERT_NO_THROW(q1_ = FakeQemu::connect(emu_->socket_path(1), kVectors));
  }

  void TearDown() override {
    q0_.reset();
    q1_.reset();
    rig_.reset();
  }

  void put(uint64_t gpa, const std::vector<uint8_t>& bytes) const {
    ASSERT_EQ(::pwrite(rig_->ram_fd(), bytes.data(), bytes.size(), off_t(file_off(gpa))),
              ssize_t(bytes.size()));
  }
  [[nodiscard]] std::vector<uint8_t> get(uint64_t gpa, size_t len) const {
    std::vector<uint8_t> bytes(len);
    EXPECT_EQ(::pread(rig_->ram_fd(), bytes.data(), len, off_t(file_off(gpa))), ssize_t(len));
    return bytes;
  }
  // Writes an OP_COPY_LIST list of (source, destination) pairs at `gpa`.
  void put_list(uint64_t gpa, const std::vector<std::pair<uint64_t, uint64_t>>& entries) const {
    std::vector<uint8_t> bytes(entries.size() * 16);
    std::memcpy(bytes.data(), entries.data(), bytes.size());
    put(gpa, bytes);
  }

  // Submits `desc` with IRQ on `queue` of `q` and waits for its completion and interrupt (the
  // interrupt's eventfd also orders the engine's memory writes before ours for ThreadSanitizer).
  static uint32_t run(FakeQemu& q, uint32_t queue, Desc desc) {
    desc.flags |= regs::kFlagIrq;
    const uint32_t head = q.submit(queue, {desc});
    EXPECT_TRUE(q.wait_tail(queue, head));
    EXPECT_TRUE(q.wait_irq(queue));
    return q.desc_status(queue, head - 1);
  }
  uint32_t run0(uint32_t queue, const Desc& desc) { return run(*q0_, queue, desc); }

  // Appends `text` to the control file and waits until FILE.ack reaches `acked` lines.
  [[nodiscard]] bool control(const std::string& text, uint64_t acked) const {
    std::ofstream(control_, std::ios::app) << text;
    return wait_ack(acked);
  }
  [[nodiscard]] std::string ack_text() const {
    std::ifstream in(control_ + ".ack");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  [[nodiscard]] bool wait_ack(uint64_t acked, int timeout_ms = kWaitMs) const {
    const std::string want = std::to_string(acked) + "\n";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (ack_text() != want) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  std::optional<TestRig> rig_;
  Emulator* emu_ = nullptr;
  std::string control_;
  std::unique_ptr<FakeQemu> q0_;
  std::unique_ptr<FakeQemu> q1_;
};

// sysmem -> VRAM -> VRAM -> sysmem keeps every byte, from low RAM to high RAM and back.
TEST_F(CopyTest, RoundTripLowHighRamAndVram) {
  const size_t len = 3 * kMiB + 123;  // odd: OP_COPY is byte-granular
  const std::vector<uint8_t> data = pattern(1, len);
  put(0x100000, data);
  ASSERT_EQ(run0(1, copy(1, 0x100000, 0x1001, len, kSysToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run0(1, copy(2, 0x1001, 8 * kMiB + 7, len, kVramToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run0(1, copy(3, 8 * kMiB + 7, kHigh + 0x200003, len, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(kHigh + 0x200003, len), data);
  // Straight back down to the last bytes below the hole, and sysmem -> sysmem.
  ASSERT_EQ(run0(2, copy(4, kHigh + 0x200003, 2 * kGiB - len, len, kSysToSys)),
            st(DescStatus::kOk));
  EXPECT_EQ(get(2 * kGiB - len, len), data);
  // The last bytes of high RAM and of VRAM are reachable.
  const uint64_t ram_end = kHigh + kRamSize - 2 * kGiB;
  ASSERT_EQ(run0(0, copy(5, 0x100000, ram_end - 4096, 4096, kSysToSys)), st(DescStatus::kOk));
  ASSERT_EQ(run0(0, copy(6, ram_end - 4096, kVram - 4096, 4096, kSysToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run0(0, copy(7, kVram - 4096, 0x900000, 4096, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x900000, 4096), std::vector<uint8_t>(data.begin(), data.begin() + 4096));
  EXPECT_EQ(q0_->qreg32(0, regs::qreg::kErrors) + q0_->qreg32(1, regs::qreg::kErrors), 0U);
}

// AP_PEER reaches the other GPU's VRAM, as source and as destination, from either GPU.
TEST_F(CopyTest, PeerCopiesBothDirections) {
  const std::vector<uint8_t> a = pattern(2, 256 * 1024);
  const std::vector<uint8_t> b = pattern(3, 256 * 1024);
  put(0x200000, a);
  put(0x300000, b);
  // GPU 0 pushes a into GPU 1's VRAM; GPU 1 reads it back from its own VRAM.
  ASSERT_EQ(run0(1, copy(1, 0x200000, 0, a.size(), kSysToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run0(1, copy(2, 0, 0x40000, a.size(), aperture_word(kApVram, kApPeer, 0, 1))),
            st(DescStatus::kOk));
  ASSERT_EQ(run(*q1_, 2, copy(3, 0x40000, 0x400000, a.size(), kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x400000, a.size()), a);
  // GPU 1 writes b straight from sysmem into GPU 0's VRAM, GPU 0 reads it.
  ASSERT_EQ(
      run(*q1_, 1, copy(4, 0x300000, 0x80000, b.size(), aperture_word(kApSysmem, kApPeer, 0, 0))),
      st(DescStatus::kOk));
  ASSERT_EQ(run0(2, copy(5, 0x80000, 0x500000, b.size(), kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x500000, b.size()), b);
  // GPU 0 pulls from GPU 1 (peer source) into sysmem, and peer -> peer is not allowed to itself.
  ASSERT_EQ(run0(0, copy(6, 0x40000, 0x600000, a.size(), aperture_word(kApPeer, kApSysmem, 1, 0))),
            st(DescStatus::kOk));
  EXPECT_EQ(get(0x600000, a.size()), a);
}

// OP_COPY_LIST copies every entry (scattered, reversed) and writes the count into ARG5.
TEST_F(CopyTest, CopyListManyEntriesAndArg5) {
  constexpr uint64_t kBlock = 4096;
  constexpr uint64_t kCount = 1024;
  const std::vector<uint8_t> data = pattern(4, kBlock * kCount);
  put(0x1000000, data);
  std::vector<std::pair<uint64_t, uint64_t>> down;
  std::vector<std::pair<uint64_t, uint64_t>> up;
  for (uint64_t i = 0; i < kCount; ++i) {
    const uint64_t vram = (kCount - 1 - i) * 2 * kBlock;  // reversed, every other block
    down.emplace_back(0x1000000 + i * kBlock, vram);
    up.emplace_back(vram, kHigh + 0x4000000 + i * kBlock);
  }
  put_list(0x10000, down);
  put_list(kHigh + 0x20000, up);  // the list itself in high RAM
  const uint32_t head =
      q0_->submit(1, {copy_list(1, 0x10000, kCount, kBlock, kSysToVram),
                      copy_list(2, kHigh + 0x20000, kCount, kBlock, kVramToSys, regs::kFlagIrq)});
  ASSERT_TRUE(q0_->wait_tail(1, head));
  ASSERT_TRUE(q0_->wait_irq(1));
  EXPECT_EQ(q0_->desc_status(1, 0), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_status(1, 1), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_arg(1, 0, 5), kCount);
  EXPECT_EQ(q0_->desc_arg(1, 1, 5), kCount);
  EXPECT_EQ(get(kHigh + 0x4000000, data.size()), data);
  // 2 MiB blocks, the most entries a list may have pointing at a few blocks.
  const std::vector<uint8_t> big = pattern(5, 2 * kMiB);
  put(kHigh + 0x8000000, big);
  std::vector<std::pair<uint64_t, uint64_t>> many(4096, {kHigh + 0x8000000, 4 * kMiB});
  put_list(0x30000, many);
  ASSERT_EQ(run0(2, copy_list(3, 0x30000, 4096, 2 * kMiB, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_arg(2, 0, 5), 4096U);
  ASSERT_EQ(run0(2, copy(4, 4 * kMiB, 0x2000000, big.size(), kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x2000000, big.size()), big);
}

// Every validation failure gives its SPEC 5.1 status (first in table order) and copies nothing.
TEST_F(CopyTest, ValidationErrors) {
  const uint64_t ram_end = kHigh + kRamSize - 2 * kGiB;
  const std::vector<uint8_t> data = pattern(6, 8192);
  put(0x100000, data);
  put_list(0x20000, {{0x100000, 0}, {0x101000, 0x1000}});  // a valid 2-entry list
  put_list(0x21000, {{0x100000, 0x1000}});                 // misaligned for 8 KiB blocks
  put_list(ram_end - 16, {{0x100000, 0}});                 // the last 16 bytes of RAM
  Desc arg4 = copy(0, 0x100000, 0, 64, kSysToVram);
  arg4.args[4] = 1;
  Desc arg5 = copy(0, 0x100000, 0, 64, kSysToVram);
  arg5.args[5] = 1;
  Desc list_arg5 = copy_list(0, 0x20000, 2, 4096, kSysToVram);
  list_arg5.args[5] = 7;
  const uint64_t peer_vram = aperture_word(kApSysmem, kApPeer, 0, 1);
  const std::vector<std::pair<Desc, DescStatus>> cases = {
      {copy(0, 0x100000, 0, 64, kSysToVram, 0x4), DescStatus::kBadFlags},
      {arg4, DescStatus::kBadArg},
      {arg5, DescStatus::kBadArg},
      {copy(0, 0x100000, 0, 64, kSysToVram | (1U << 4)), DescStatus::kBadArg},     // reserved bit
      {copy(0, 0x100000, 0, 64, aperture_word(3, kApVram)), DescStatus::kBadArg},  // aperture 3
      {copy(0, 0x100000, 0, 64, aperture_word(kApSysmem, kApVram, 0, 1)), DescStatus::kBadArg},
      {copy(0, 0x100000, 0, 0, kSysToVram), DescStatus::kBadArg},                // length 0
      {copy(0, 0x100000, 0, 64 * kMiB + 1, kSysToVram), DescStatus::kBadArg},    // > 64 MiB
      {copy(0, 2 * kGiB, 0, 64, kSysToVram), DescStatus::kBadAddress},           // PCI hole
      {copy(0, 2 * kGiB - 4096, 0, 8192, kSysToVram), DescStatus::kBadAddress},  // crosses 2 GiB
      {copy(0, ram_end - 64, 0, 128, kSysToVram), DescStatus::kBadAddress},      // past the end
      {copy(0, ~0ULL - 63, 0, 128, kSysToVram), DescStatus::kBadAddress},        // wraps
      {copy(0, 2 * kGiB, kVram, 64, kSysToVram), DescStatus::kBadAddress},       // before BAD_VRAM
      {copy(0, 0x100000, kVram - 32, 64, kSysToVram), DescStatus::kBadVram},
      {copy(0, 0x100000, kVram, 64, kSysToVram), DescStatus::kBadVram},
      {copy(0, ~0ULL - 31, 0x100000, 64, kVramToSys), DescStatus::kBadVram},  // wraps
      {copy(0, 0x100000, kVram - 32, 64, peer_vram), DescStatus::kBadVram},   // the peer's
      {copy(0, 0x100000, 0, 64, aperture_word(kApSysmem, kApPeer, 0, 9)), DescStatus::kBadPeer},
      {copy(0, 0x100000, 0, 64, aperture_word(kApSysmem, kApPeer, 0, 0)), DescStatus::kBadPeer},
      {copy(0, kVram, 0, 64, aperture_word(kApVram, kApPeer, 0, 0)), DescStatus::kBadVram},
      {copy(0, 0x100000, 0x100010, 64, kSysToSys), DescStatus::kOverlap},
      {copy(0, 0x1000, 0x0fc0, 65, kVramToVram), DescStatus::kOverlap},
      {copy(0, 0x1000, 0x1000, 1, kVramToVram), DescStatus::kOverlap},
      {list_arg5, DescStatus::kBadArg},
      {copy_list(0, 0x20000, 0, 4096, kSysToVram), DescStatus::kBadArg},           // count 0
      {copy_list(0, 0x20000, 4097, 4096, kSysToVram), DescStatus::kBadArg},        // count 4097
      {copy_list(0, 0x20000, 2, 3 * 4096, kSysToVram), DescStatus::kBadArg},       // not 2^n
      {copy_list(0, 0x20000, 2, 2048, kSysToVram), DescStatus::kBadArg},           // < 4 KiB
      {copy_list(0, 0x20000, 2, 4 * kMiB, kSysToVram), DescStatus::kBadArg},       // > 2 MiB
      {copy_list(0, 0x20004, 2, 4096, kSysToVram), DescStatus::kBadAlign},         // list address
      {copy_list(0, 0x21000, 1, 8192, kSysToVram), DescStatus::kBadAlign},         // 0x1000 % 8K
      {copy_list(0, 2 * kGiB, 1, 4096, kSysToVram), DescStatus::kBadAddress},      // list in hole
      {copy_list(0, ram_end - 16, 2, 4096, kSysToVram), DescStatus::kBadAddress},  // list too long
      {copy_list(0, 0x20000, 2, 4096, aperture_word(kApSysmem, kApPeer, 0, 0)),
       DescStatus::kBadPeer},
  };
  uint32_t index = 0;
  for (const auto& [desc, status] : cases) {
    Desc d = desc;
    d.seqno = ++index;
    EXPECT_EQ(run0(1, d), st(status)) << "case " << index - 1;
    if (d.opcode == regs::kOpCopyList) {
      EXPECT_EQ(q0_->desc_arg(1, index - 1, 5), 0U) << "case " << index - 1;
    }
  }
  EXPECT_EQ(q0_->qreg32(1, regs::qreg::kErrors), cases.size());
  // Nothing was copied: VRAM offset 0 and the overlap targets are untouched.
  ASSERT_EQ(run0(2, copy(1, 0, 0x700000, 64, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x700000, 64), std::vector<uint8_t>(64, 0));
  EXPECT_EQ(get(0x100000, 8192), data);
  // Adjacent ranges in one memory do not overlap; the queue still works.
  EXPECT_EQ(run0(1, copy(100, 0x100000, 0x100040, 64, kSysToSys)), st(DescStatus::kOk));
}

// A list entry failing validation stops the list there: ARG5 is its index, earlier ones are done.
TEST_F(CopyTest, ListStopsAtFailingEntry) {
  const std::vector<uint8_t> data = pattern(7, 4 * 4096);
  put(0x100000, data);
  put_list(0x20000, {{0x100000, 0x10000},
                     {0x101000, 0x11000},
                     {0x102000, kVram},  // out of VRAM
                     {0x103000, 0x13000}});
  ASSERT_EQ(run0(1, copy_list(1, 0x20000, 4, 4096, kSysToVram)), st(DescStatus::kBadVram));
  EXPECT_EQ(q0_->desc_arg(1, 0, 5), 2U);
  put_list(0x30000, {{0x100000, 0x20000}, {0x100800, 0x21000}});  // second misaligned
  ASSERT_EQ(run0(1, copy_list(2, 0x30000, 2, 4096, kSysToVram)), st(DescStatus::kBadAlign));
  EXPECT_EQ(q0_->desc_arg(1, 1, 5), 1U);
  ASSERT_EQ(run0(1, copy(3, 0x10000, 0x800000, 4 * 4096, kVramToSys)), st(DescStatus::kOk));
  const std::vector<uint8_t> got = get(0x800000, 4 * 4096);
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 2 * 4096, got.begin()));
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + 2 * 4096, got.end()),
            std::vector<uint8_t>(2 * 4096, 0));
}

// fail-copies N fails exactly the next N blocks of that GPU (list entries too), then copies work.
TEST_F(CopyTest, FailCopiesCountsBlocks) {
  const std::vector<uint8_t> data = pattern(8, 8 * 4096);
  put(0x100000, data);
  ASSERT_EQ(ack_text(), "0\n");  // written at start
  ASSERT_TRUE(control("fail-copies 0 2\n", 1));
  EXPECT_EQ(run(*q1_, 1, copy(1, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));  // GPU 1
  EXPECT_EQ(run0(1, copy(1, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(run0(1, copy(2, 0x100000, kVram, 4096, kSysToVram)), st(DescStatus::kBadVram));
  EXPECT_EQ(run0(2, copy(3, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(run0(1, copy(4, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
  // In a list: the first entry fails, ARG5 = 0; the count is then used up.
  put_list(0x20000, {{0x100000, 0x10000}, {0x101000, 0x11000}, {0x102000, 0x12000}});
  ASSERT_TRUE(control("fail-copies 0 0x1\n", 2));
  EXPECT_EQ(run0(1, copy_list(5, 0x20000, 3, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(q0_->desc_arg(1, 3, 5), 0U);
  EXPECT_EQ(run0(1, copy_list(6, 0x20000, 3, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_arg(1, 4, 5), 3U);
  // clear cancels a pending count.
  ASSERT_TRUE(control("fail-copies 0 100\nclear 0\n", 4));
  EXPECT_EQ(run0(1, copy(7, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
}

// fail-vram fails blocks touching the range (source, destination, via a peer) until clear.
TEST_F(CopyTest, FailVramRangeAndClear) {
  const std::vector<uint8_t> data = pattern(9, 4 * 4096);
  put(0x100000, data);
  ASSERT_TRUE(control("fail-vram 0 0x10000 0x11000\n", 1));
  EXPECT_EQ(run0(1, copy(1, 0x100000, 0xf000, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(run0(1, copy(2, 0x100000, 0x11000, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(run0(1, copy(3, 0x100000, 0xf001, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(run0(1, copy(4, 0x10fff, 0x200000, 1, kVramToSys)), st(DescStatus::kInjected));
  EXPECT_EQ(run(*q1_, 1, copy(5, 0x100000, 0x10800, 16, aperture_word(kApSysmem, kApPeer, 0, 0))),
            st(DescStatus::kInjected));
  EXPECT_EQ(run(*q1_, 1, copy(6, 0x100000, 0x10800, 16, kSysToVram)), st(DescStatus::kOk));
  // A list: entry 2 touches the range.
  put_list(0x20000, {{0x100000, 0xe000}, {0x101000, 0xf000}, {0x102000, 0x10000}});
  EXPECT_EQ(run0(2, copy_list(7, 0x20000, 3, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(q0_->desc_arg(2, 0, 5), 2U);
  ASSERT_TRUE(control("clear 0\n", 2));
  EXPECT_EQ(run0(2, copy_list(8, 0x20000, 3, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_arg(2, 1, 5), 3U);
  EXPECT_EQ(run0(1, copy(9, 0x10000, 0x200000, 4096, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x200000, 4096),
            std::vector<uint8_t>(data.begin() + 2 * 4096, data.begin() + 3 * 4096));
}

// hang stops engines, control requests, interrupts and HEARTBEAT; unhang finishes what is pending.
TEST_F(CopyTest, HangThenUnhang) {
  const std::vector<uint8_t> data = pattern(10, 64 * 1024);
  put(0x100000, data);
  ASSERT_TRUE(control("hang 0\n", 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // a beat in flight lands
  const uint64_t beat = q0_->reg64(regs::reg::kHeartbeat);
  q0_->submit(1, {copy(1, 0x100000, 0, data.size(), kSysToVram),
                  copy(2, 0, 0x300000, data.size(), kVramToSys, regs::kFlagIrq)});
  q0_->submit(0, {nop(3, regs::kFlagIrq)});
  q0_->set_reg32(regs::reg::kControl, 0);
  q0_->set_reg32(regs::reg::kControlSeq, q0_->reg32(regs::reg::kControlAck) + 1);
  q0_->ring(0);
  EXPECT_FALSE(q0_->wait_irq(1, 200));
  EXPECT_FALSE(q0_->wait_irq(0, 0));
  EXPECT_EQ(q0_->qreg32(1, regs::qreg::kTail), 0U);
  EXPECT_EQ(q0_->qreg32(0, regs::qreg::kTail), 0U);
  EXPECT_EQ(q0_->reg32(regs::reg::kControlAck), 0U);
  EXPECT_EQ(q0_->reg64(regs::reg::kHeartbeat), beat);
  // GPU 1 is not affected.
  EXPECT_EQ(run(*q1_, 1, nop(1)), st(DescStatus::kOk));

  ASSERT_TRUE(control("unhang 0\n", 2));
  ASSERT_TRUE(q0_->wait_tail(1, 2));
  ASSERT_TRUE(q0_->wait_tail(0, 1));
  EXPECT_TRUE(q0_->wait_irq(1));
  EXPECT_TRUE(q0_->wait_irq(0));
  EXPECT_TRUE(q0_->wait_reg32(regs::reg::kControlAck, 1));
  EXPECT_EQ(q0_->desc_status(1, 1), st(DescStatus::kOk));
  EXPECT_EQ(get(0x300000, data.size()), data);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_GT(q0_->reg64(regs::reg::kHeartbeat), beat);
}

// The control file: acknowledged per complete line, a partial line waits, bad lines change
// nothing but are acknowledged.
TEST_F(CopyTest, ControlFileAckProtocol) {
  ASSERT_TRUE(std::filesystem::exists(control_));  // created at start
  ASSERT_EQ(ack_text(), "0\n");
  ASSERT_TRUE(
      control("bogus 0\nhang 7\nfail-copies 0\nfail-copies 0 1x\nfail-vram 0 5 5\n"
              "hang 0 1\nexit now\n\nfail-copies 1 0x\n",
              9));
  // A line without its newline is not executed or acknowledged yet.
  std::ofstream(control_, std::ios::app) << "fail-copi";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ack_text(), "9\n");
  EXPECT_EQ(run0(1, copy(1, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(run(*q1_, 1, copy(1, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
  ASSERT_TRUE(control("es 0 1\r\n", 10));
  EXPECT_EQ(run0(1, copy(2, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(run0(1, copy(3, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
}

// SPEC 8.2: with GPU 0's copy floor on, its copies are checked and complete as ever (status,
// ARG5, injected failures) but move no byte, to sysmem, VRAM or a peer; GPU 1 still copies; off
// again, GPU 0 copies. Bad copy-floor lines change nothing.
TEST_F(CopyTest, CopyFloorCompletesWithoutMovingBytes) {
  constexpr uint64_t kLen = 4 * 4096;
  const std::vector<uint8_t> data = pattern(11, kLen);
  const std::vector<uint8_t> zeros(kLen, 0);
  put(0x100000, data);
  put_list(0x20000, {{0x100000, 0x10000}, {0x101000, 0x11000}});
  put_list(0x21000, {{0x100000, 0x20000}, {0x101000, 0x21000}, {0x102000, kVram}});
  ASSERT_TRUE(control("copy-floor 0 2\ncopy-floor 0\ncopy-floor 9 1\ncopy-floor 0 1\n", 4));
  EXPECT_EQ(run0(1, copy(1, 0x100000, 0, kLen, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(run0(1, copy_list(2, 0x20000, 2, 4096, kSysToVram)), st(DescStatus::kOk));
  EXPECT_EQ(q0_->desc_arg(1, 1, 5), 2U);
  EXPECT_EQ(run0(2, copy(3, 0x100000, 0x40000, kLen, aperture_word(kApSysmem, kApPeer, 0, 1))),
            st(DescStatus::kOk));
  EXPECT_EQ(run0(0, copy(4, 0x100000, 0x600000, kLen, kSysToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x600000, kLen), zeros);
  // The checks are those of section 4.4, in order.
  EXPECT_EQ(run0(1, copy_list(5, 0x21000, 3, 4096, kSysToVram)), st(DescStatus::kBadVram));
  EXPECT_EQ(q0_->desc_arg(1, 2, 5), 2U);
  EXPECT_EQ(run0(1, copy(6, 2 * kGiB, 0, 64, kSysToVram)), st(DescStatus::kBadAddress));
  EXPECT_EQ(run0(1, copy(7, 0x100000, 0x100010, 64, kSysToSys)), st(DescStatus::kOverlap));
  ASSERT_TRUE(control("fail-copies 0 1\nclear 1\n", 6));
  EXPECT_EQ(run0(2, copy(8, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kInjected));
  EXPECT_EQ(run0(2, copy(9, 0x100000, 0, 4096, kSysToVram)), st(DescStatus::kOk));
  // GPU 1 is not floored: its VRAM never got GPU 0's peer copy, and it copies itself.
  ASSERT_EQ(run(*q1_, 1, copy(1, 0x40000, 0x700000, kLen, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x700000, kLen), zeros);
  ASSERT_EQ(run(*q1_, 1, copy(2, 0x100000, 0, kLen, kSysToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run(*q1_, 1, copy(3, 0, 0x800000, kLen, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x800000, kLen), data);
  // Off again: GPU 0's VRAM holds nothing of the floored copies, and copies move bytes again.
  ASSERT_TRUE(control("copy-floor 0 0\n", 7));
  ASSERT_EQ(run0(1, copy(10, 0, 0x900000, kLen, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0x900000, kLen), zeros);
  ASSERT_EQ(run0(1, copy(11, 0x100000, 0, kLen, kSysToVram)), st(DescStatus::kOk));
  ASSERT_EQ(run0(1, copy(12, 0, 0xa00000, kLen, kVramToSys)), st(DescStatus::kOk));
  EXPECT_EQ(get(0xa00000, kLen), data);
}

// SPEC 8.2: --copy-floor starts every GPU floored; copy-floor GPU 0 turns one back.
TEST(CopyFloor, CommandLineFloorsEveryGpu) {
  std::optional<TestRig> rig;
  ASSERT_NO_THROW(rig.emplace(TestRig::Options{.ram_size = 64 * kMiB,
                                               .gpus = kGpus,
                                               .vram_size = kVram,
                                               .channels = kChannels,
                                               .vectors = kVectors,
                                               .control_file = true,
                                               .copy_floor = true}));
  EXPECT_TRUE(rig->emu().gpu(0).copy_floor());
  EXPECT_TRUE(rig->emu().gpu(1).copy_floor());
  std::ofstream(rig->control_path(), std::ios::app) << "copy-floor 1 0\n";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (rig->emu().gpu(1).copy_floor() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(rig->emu().gpu(0).copy_floor());
  EXPECT_FALSE(rig->emu().gpu(1).copy_floor());
  // A floored GPU completes a copy and leaves its destination as it was.
  std::unique_ptr<FakeQemu> q;
  ASSERT_NO_THROW(q = FakeQemu::connect(rig->emu().socket_path(0), kVectors));
  const std::vector<uint8_t> data = pattern(12, 4096);
  ASSERT_EQ(::pwrite(rig->ram_fd(), data.data(), data.size(), 0x10000), ssize_t(data.size()));
  const uint32_t head = q->submit(1, {copy(1, 0x10000, 0x20000, 4096, kSysToSys, regs::kFlagIrq)});
  ASSERT_TRUE(q->wait_tail(1, head));
  ASSERT_TRUE(q->wait_irq(1));
  EXPECT_EQ(q->desc_status(1, 0), st(DescStatus::kOk));
  std::vector<uint8_t> got(4096, 1);
  ASSERT_EQ(::pread(rig->ram_fd(), got.data(), got.size(), 0x20000), ssize_t(got.size()));
  EXPECT_EQ(got, std::vector<uint8_t>(4096, 0));
}

// Copies on two channels (and both GPUs copying into each other) run at once with correct data.
TEST_F(CopyTest, ConcurrentChannelsAndPeers) {
  constexpr uint64_t kLen = 1 * kMiB;
  constexpr int kRounds = 12;
  std::atomic<int> failures{0};
  const auto worker = [&](FakeQemu& q, uint32_t gpu, uint32_t queue) {
    const uint64_t base = 0x10000000ULL * (1 + gpu * 2 + queue);  // private sysmem per worker
    const uint64_t vram = (queue - 1) * 4 * kMiB;                 // private VRAM per queue
    const uint64_t peer_vram = (2 + queue) * 4 * kMiB;            // private in the other GPU
    const uint64_t to_peer = aperture_word(kApVram, kApPeer, 0, 1 - gpu);
    const uint64_t from_peer = aperture_word(kApPeer, kApSysmem, 1 - gpu, 0);
    uint32_t head = 0;
    for (int round = 0; round < kRounds; ++round) {
      const std::vector<uint8_t> data = pattern(100 * gpu + 10 * queue + round, kLen);
      put(base, data);
      head = q.submit(
          queue, {copy(head + 1, base, vram, kLen, kSysToVram),
                  copy(head + 2, vram, peer_vram, kLen, to_peer),
                  copy(head + 3, peer_vram, base + 4 * kMiB, kLen, from_peer, regs::kFlagIrq)});
      if (!q.wait_tail(queue, head) || !q.wait_irq(queue) ||
          q.qreg32(queue, regs::qreg::kErrors) != 0 || get(base + 4 * kMiB, kLen) != data) {
        ++failures;
        return;
      }
    }
  };
  {
    std::vector<std::jthread> threads;
    for (uint32_t queue = 1; queue <= kChannels; ++queue) {
      threads.emplace_back(worker, std::ref(*q0_), 0, queue);
      threads.emplace_back(worker, std::ref(*q1_), 1, queue);
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace hmmgpu::test
