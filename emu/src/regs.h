// SPDX-License-Identifier: GPL-2.0
// Register map of the hmmgpu device (emu/SPEC.md, version 1.1). Every offset, bit and code the
// model or its tests use is defined here and nowhere else.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hmmgpu::regs {

inline constexpr uint32_t kVersion = 0x00010001;  // major 1, minor 1
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
inline constexpr uint32_t kCapCopy = 1U << 2;
inline constexpr uint32_t kCapsImplemented = kCapNop | kCapWrite64 | kCapCopy;

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
inline constexpr uint16_t kOpCopy = 0x02;
inline constexpr uint16_t kOpCopyList = 0x03;
inline constexpr uint16_t kFlagIrq = 1U << 0;
inline constexpr uint16_t kFlagsValidMask = kFlagIrq;

// Section 4.4: the copy engine.
namespace copy {
inline constexpr uint32_t kApSysmem = 0;
inline constexpr uint32_t kApVram = 1;
inline constexpr uint32_t kApPeer = 2;
// The aperture word (ARG3).
inline constexpr uint32_t kSrcApShift = 0;
inline constexpr uint32_t kDstApShift = 8;
inline constexpr uint32_t kSrcPeerShift = 16;
inline constexpr uint32_t kDstPeerShift = 24;
inline constexpr uint64_t kApMask = 0x3;
inline constexpr uint64_t kPeerMask = 0xff;
inline constexpr uint64_t kApWordValidMask = (kApMask << kSrcApShift) | (kApMask << kDstApShift) |
                                             (kPeerMask << kSrcPeerShift) |
                                             (kPeerMask << kDstPeerShift);
constexpr uint64_t aperture_word(uint32_t src_ap, uint32_t dst_ap, uint32_t src_peer = 0,
                                 uint32_t dst_peer = 0) {
  return (uint64_t{src_ap} << kSrcApShift) | (uint64_t{dst_ap} << kDstApShift) |
         (uint64_t{src_peer} << kSrcPeerShift) | (uint64_t{dst_peer} << kDstPeerShift);
}
inline constexpr uint64_t kMaxLength = 64ULL << 20;  // OP_COPY
inline constexpr uint64_t kMaxEntries = 4096;        // OP_COPY_LIST
inline constexpr uint64_t kEntrySize = 16;
inline constexpr uint64_t kListAlign = 8;
inline constexpr uint64_t kMinBlock = 4ULL << 10;
inline constexpr uint64_t kMaxBlock = 2ULL << 20;
inline constexpr uint32_t kArgCompleted = 5;  // OP_COPY_LIST writes ARG5 on completion
}  // namespace copy

// Section 5.1: descriptor status.
enum class DescStatus : uint32_t {
  kOk = 0,
  kBadOpcode = 1,
  kBadFlags = 2,
  kBadArg = 3,
  kBadAlign = 4,
  kBadAddress = 5,
  kBadVram = 6,
  kBadPeer = 7,
  kOverlap = 8,
  kInjected = 9,
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
