// SPDX-License-Identifier: GPL-2.0
// Register map of the hmmgpu device (emu/SPEC.md, version 1.3). Every offset, bit and code the
// model or its tests use is defined here and nowhere else.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hmmgpu::regs {

inline constexpr uint32_t kVersion = 0x00010003;  // major 1, minor 3
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
inline constexpr uint32_t kNumCompute = 0x034;
inline constexpr uint32_t kNumContexts = 0x038;
inline constexpr uint32_t kFaultVector = 0x03c;
inline constexpr uint32_t kName = 0x040;
inline constexpr uint32_t kNameSize = 32;
inline constexpr uint32_t kPeerGroup = 0x060;  // version 1.3
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

// Section 3.5: the fault buffer registers.
namespace freg {
inline constexpr uint32_t kBufAddr = 0x900;     // RW, 8 bytes
inline constexpr uint32_t kBufEntries = 0x908;  // RW
inline constexpr uint32_t kGet = 0x90c;         // RW
inline constexpr uint32_t kPut = 0x910;         // RO
inline constexpr uint32_t kDropped = 0x914;     // RO
inline constexpr uint32_t kStatus = 0x918;      // RO
inline constexpr uint32_t kStalled = 0x91c;     // RO
inline constexpr uint32_t kStatusOverflow = 1U << 0;
inline constexpr uint32_t kStatusBadConfig = 1U << 1;
}  // namespace freg
static_assert(qreg::kBase + qreg::kStride * 32 <= freg::kBufAddr, "fault block after the queues");

inline constexpr uint32_t kCapNop = 1U << 0;
inline constexpr uint32_t kCapWrite64 = 1U << 1;
inline constexpr uint32_t kCapCopy = 1U << 2;
inline constexpr uint32_t kCapMmu = 1U << 3;
inline constexpr uint32_t kCapCompute = 1U << 4;  // only with at least one compute queue
inline constexpr uint32_t kCapFault = 1U << 5;
inline constexpr uint32_t kCapsAlways = kCapNop | kCapWrite64 | kCapCopy | kCapMmu | kCapFault;

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
inline constexpr uint16_t kOpCtxBind = 0x10;        // queue 0 only
inline constexpr uint16_t kOpTlbInvalidate = 0x11;  // queue 0 only
inline constexpr uint16_t kOpFaultReplay = 0x12;    // queue 0 only
inline constexpr uint16_t kOpFaultCancel = 0x13;    // queue 0 only
inline constexpr uint16_t kOpLaunch = 0x20;         // compute queues only
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

// Sections 4.5, 4.6: contexts, page tables, TLB.
namespace mmu {
inline constexpr uint64_t kPageShift = 12;
inline constexpr uint64_t kPageSize = 1ULL << kPageShift;
inline constexpr uint64_t kVaLimit = 1ULL << 48;  // VAs are below it
inline constexpr uint32_t kLevels = 4;            // 3 (root) .. 0 (leaf)
inline constexpr uint64_t kIndexBits = 9;         // 512 entries per table
inline constexpr uint64_t kEntrySize = 8;
inline constexpr uint64_t kValid = 1ULL << 0;
inline constexpr uint64_t kWrite = 1ULL << 1;  // leaf
inline constexpr uint64_t kLarge = 1ULL << 7;  // directory; reserved in 1.2
inline constexpr uint64_t kApShift = 3;        // leaf APERTURE, bits 4..3
inline constexpr uint64_t kApMask = 0x3;
inline constexpr uint64_t kAddrMask = 0x000ffffffffff000ULL;  // bits 51..12
inline constexpr uint64_t kPeerShift = 52;                    // leaf PEER, bits 59..52
inline constexpr uint64_t kPeerMask = 0xff;
inline constexpr uint64_t kDirValidMask = kValid | kAddrMask;
inline constexpr uint64_t kLeafValidMask =
    kValid | kWrite | (kApMask << kApShift) | kAddrMask | (kPeerMask << kPeerShift);
constexpr uint64_t leaf(uint64_t addr, uint32_t aperture, bool write, uint32_t peer = 0) {
  return kValid | (write ? kWrite : 0) | (uint64_t{aperture} << kApShift) | (addr & kAddrMask) |
         (uint64_t{peer} << kPeerShift);
}
constexpr uint64_t directory(uint64_t table) { return kValid | (table & kAddrMask); }
// Index of `va` in its level-`level` table.
constexpr uint64_t table_index(uint64_t va, uint32_t level) {
  return (va >> (kPageShift + kIndexBits * level)) & ((1ULL << kIndexBits) - 1);
}
inline constexpr uint32_t kTlbEntries = 4096;  // this model's TLB (SPEC 8)
}  // namespace mmu

// Section 4.7: OP_LAUNCH and its kernels.
namespace launch {
inline constexpr uint64_t kContextMask = 0xffffffff;  // ARG0 bits 31..0
inline constexpr uint32_t kKernelShift = 32;          // ARG0 bits 63..32
inline constexpr uint32_t kFillU32 = 1;
inline constexpr uint32_t kCopy = 2;
inline constexpr uint32_t kAxpyF32 = 3;
inline constexpr uint32_t kScaleF32 = 4;
inline constexpr uint32_t kIncrementU32 = 5;
inline constexpr uint32_t kSumF32 = 6;
inline constexpr uint32_t kSumU64 = 7;
inline constexpr uint32_t kChecksum = 8;
inline constexpr uint64_t kMaxBytes = 256ULL << 20;  // count x element size
inline constexpr uint64_t kWaveBytes = 64ULL << 10;  // of each operand
inline constexpr uint32_t kArgResult = 5;
inline constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t arg0(uint32_t context, uint32_t kernel) {
  return uint64_t{context} | (uint64_t{kernel} << kKernelShift);
}
}  // namespace launch

// Section 4.8: fault buffer entries.
namespace fault {
inline constexpr uint32_t kEntrySize = 32;
inline constexpr uint32_t kMaxEntries = 65536;
inline constexpr uint32_t kBufAlign = 4096;
inline constexpr uint32_t kVa = 0x00;
inline constexpr uint32_t kContext = 0x08;
inline constexpr uint32_t kAccess = 0x0c;
inline constexpr uint32_t kType = 0x0d;
inline constexpr uint32_t kEngine = 0x0e;
inline constexpr uint32_t kTimestamp = 0x10;
inline constexpr uint32_t kStall = 0x18;
inline constexpr uint8_t kAccessRead = 0;
inline constexpr uint8_t kAccessWrite = 1;
inline constexpr uint8_t kTypeNotPresent = 0;
inline constexpr uint8_t kTypeWriteProtected = 1;
inline constexpr uint64_t kCancelPage = 0;     // OP_FAULT_CANCEL ARG2
inline constexpr uint64_t kCancelContext = 1;  // OP_FAULT_CANCEL ARG2
inline constexpr uint64_t kCancelStall = 2;    // OP_FAULT_CANCEL ARG2
}  // namespace fault

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
  kBadContext = 10,
  kBadPte = 11,
  kMmuFault = 12,
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
