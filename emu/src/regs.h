// SPDX-License-Identifier: GPL-2.0
// Register map of the hmmgpu device (emu/SPEC.md, version 1.0). Every offset, bit and code the
// model or its tests use is defined here and nowhere else.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hmmgpu::regs {

inline constexpr uint32_t kVersion = 0x00010000;  // major 1, minor 0
inline constexpr std::array<char, 8> kSignature = {'H', 'M', 'M', 'G', 'P', 'U', '\0', '\0'};
inline constexpr uint32_t kDoorbellPeer = 0;  // the device's own ivshmem peer id
inline constexpr int64_t kClientPeer = 1;     // the id every client gets
inline constexpr uint32_t kDmaBits = 64;
inline constexpr uint32_t kMaxQueues = 32;

// Section 3: register page (BAR2 offset 0).
inline constexpr size_t kRegPageSize = 0x1000;
namespace reg {
inline constexpr uint32_t kSignature = 0x000;
inline constexpr uint32_t kVersion = 0x008;
inline constexpr uint32_t kCaps = 0x00c;
inline constexpr uint32_t kVramSize = 0x010;
inline constexpr uint32_t kNumQueues = 0x018;
inline constexpr uint32_t kNumVectors = 0x01c;
inline constexpr uint32_t kDoorbellPeer = 0x020;
inline constexpr uint32_t kNumChannels = 0x024;
inline constexpr uint32_t kShmSize = 0x028;
inline constexpr uint32_t kDeviceIndex = 0x02c;
inline constexpr uint32_t kDmaBits = 0x030;
inline constexpr uint32_t kName = 0x040;
inline constexpr uint32_t kNameSize = 32;
inline constexpr uint32_t kStatus = 0x080;
inline constexpr uint32_t kError = 0x084;
inline constexpr uint32_t kControlAck = 0x088;
inline constexpr uint32_t kHeartbeat = 0x090;
inline constexpr uint32_t kControl = 0x0c0;
inline constexpr uint32_t kControlSeq = 0x0c4;
}  // namespace reg

// Section 3.4: per-queue register block at kQueueBase + kQueueStride * q.
namespace qreg {
inline constexpr uint32_t kBase = 0x100;
inline constexpr uint32_t kStride = 0x40;
inline constexpr uint32_t kRingOffset = 0x00;
inline constexpr uint32_t kRingEntries = 0x04;
inline constexpr uint32_t kHead = 0x08;
inline constexpr uint32_t kTail = 0x0c;
inline constexpr uint32_t kFence = 0x10;
inline constexpr uint32_t kErrors = 0x18;
inline constexpr uint32_t kVector = 0x1c;
}  // namespace qreg

constexpr uint32_t queue_reg(uint32_t queue, uint32_t field) {
  return qreg::kBase + qreg::kStride * queue + field;
}

inline constexpr uint32_t kCapNop = 1U << 0;
inline constexpr uint32_t kCapWrite64 = 1U << 1;

inline constexpr uint32_t kStatusReady = 1U << 0;
inline constexpr uint32_t kStatusHalted = 1U << 1;

inline constexpr uint32_t kControlReset = 1U << 0;
inline constexpr uint32_t kControlValidMask = kControlReset;

// Section 4.2: descriptors.
inline constexpr uint32_t kDescSize = 64;
inline constexpr uint32_t kDescArgs = 6;
namespace desc {
inline constexpr uint32_t kOpcode = 0x00;
inline constexpr uint32_t kFlags = 0x02;
inline constexpr uint32_t kStatus = 0x04;
inline constexpr uint32_t kSeqno = 0x08;
inline constexpr uint32_t kArg0 = 0x10;
}  // namespace desc

inline constexpr uint16_t kOpNop = 0x00;
inline constexpr uint16_t kOpWrite64 = 0x01;
inline constexpr uint16_t kFlagIrq = 1U << 0;
inline constexpr uint16_t kFlagsValidMask = kFlagIrq;

// Section 5.1: descriptor status.
enum class DescStatus : uint32_t {
  kOk = 0,
  kBadOpcode = 1,
  kBadFlags = 2,
  kBadArg = 3,
  kBadAlign = 4,
  kBadAddress = 5,
};

// Section 5.2: fatal errors.
enum class FatalError : uint32_t {
  kNone = 0,
  kBadHead = 1,
  kBadControl = 2,
};

// Device-chosen geometry (the driver reads it from the registers).
inline constexpr size_t kShmSize = 1U << 20;
inline constexpr uint32_t kRingEntries = 256;
inline constexpr uint32_t kRingBytes = kRingEntries * kDescSize;
inline constexpr uint32_t kRingsBase = kRegPageSize;
static_assert(kRingsBase + kMaxQueues * kRingBytes <= kShmSize, "rings must fit in BAR2");

constexpr uint32_t ring_offset(uint32_t queue) { return kRingsBase + queue * kRingBytes; }

}  // namespace hmmgpu::regs
