// SPDX-License-Identifier: GPL-2.0
// The input format of the device fuzzer (device_harness.cpp): a few bytes of device shape, then a
// sequence of guest actions (register writes, descriptors, page-table entries, fault-buffer
// configuration, doorbells, resets), each an action byte followed by its fields. Every field is
// little-endian and reads as zero past the end of the input, so any byte string is an input. The
// seed writer (seeds.cpp) encodes with the same definitions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace hmmgpu::fuzz {

// The action byte, modulo kNumActions.
enum class Action : uint8_t {
  kReg32 = 0,         // gpu, Offset, u32 value: a 32-bit store into BAR2
  kReg64 = 1,         // gpu, Offset, Value: a 64-bit store into BAR2 (8-aligned offsets)
  kDescriptor = 2,    // gpu, queue, DescKind, u16 flags, u8 seqno, the kind's fields, u8 publish
  kDoorbell = 3,      // gpu, u8 vector, u8 budget: that engine runs for 1 + budget steps at most
  kRunAll = 4,        // every engine of both GPUs, in turns, until idle or the input's budget ends
  kPte = 5,           // Value table GPA, u16 index, Pte: one page-table entry
  kMap = 6,           // Value root GPA, Value VA, u8 pages, Pte: 4-level mappings, tables allocated
  kRam64 = 7,         // Value GPA, Value value: a 64-bit store into guest RAM (lists, data)
  kFaultConfig = 8,   // gpu, Value address, Value entries, u8 how: the fault buffer registers
  kFaultConsume = 9,  // gpu: FAULT_GET = FAULT_PUT
  kControl = 10,      // gpu, u32 CONTROL, u8 how: a control request, and queue 0's doorbell
  kDisconnect = 11,   // gpu: the client disconnects (a reset that clears the control registers)
  kHost = 12,         // gpu, u8 command, Value, Value: host fault injection (SPEC 8.1, 8.2)
  kNumActions = 13,
};

// What a kDescriptor action writes, modulo kNumDescKinds. Each kind's fields are Values, in the
// order of its arguments, except where noted.
enum class DescKind : uint8_t {
  kNop = 0,            // (none)
  kWrite64 = 1,        // address, value
  kCopy = 2,           // source, destination, length, Apertures
  kCopyList = 3,       // list, count, block, Apertures
  kCtxBind = 4,        // context, root
  kTlbInvalidate = 5,  // context, VA, length
  kFaultReplay = 6,    // (none)
  kFaultCancel = 7,    // context, VA, mode, stall
  kLaunch = 8,         // context, u8 kernel, count, VA 0, VA 1, scalar
  kRaw = 9,            // u16 opcode, six Values
  kNumDescKinds = 10,
};

// kDescriptor's publish byte: bit 0 advances HEAD past the descriptor, bit 1 then rings its
// doorbell (the engine runs for 1 + the budget in bits 7..2 steps at most).
inline constexpr uint8_t kPublishHead = 1U << 0;
inline constexpr uint8_t kPublishRing = 1U << 1;

// Offset: u8 kind (modulo kNumOffsetKinds), u16 raw.
enum class OffsetKind : uint8_t {
  kQueueReg = 0,  // queue raw / 16 (mod 32), field raw % 16 * 4: a queue register
  kControl = 1,   // CONTROL, CONTROL_SEQ (raw bit 0)
  kFaultReg = 2,  // 0x900 + raw % 8 * 4
  kRegPage = 3,   // raw % 1024 * 4: anywhere in the register page
  kRing = 4,      // anywhere in the rings of the queues: 0x1000 + raw * 8 % (32 * 16 KiB)
  kNumOffsetKinds = 5,
};

// Value: u8 generator, then the raw number in 1, 2, 4 or 8 bytes (generator bits 5..4). The
// generator's low 4 bits (modulo kNumValueKinds) say how the raw number becomes the value, so
// the fuzzer reaches the edges of guest RAM, VRAM and the VA space without guessing them.
enum class ValueKind : uint8_t {
  kRaw = 0,       // the number itself
  kRam = 1,       // raw % RAM size
  kRamPage = 2,   // (raw % RAM pages) * 4 KiB
  kRamEnd = 3,    // RAM size - raw % 4 KiB
  kVram = 4,      // raw % VRAM size
  kVramPage = 5,  // (raw % VRAM pages) * 4 KiB
  kVramEnd = 6,   // VRAM size - raw % 4 KiB
  kSmall = 7,     // raw % 64
  kPow2 = 8,      // 1 << (raw % 64)
  kVaPage = 9,    // (raw % 1024) * 4 KiB: the first 4 MiB of VA space
  kVaTop = 10,    // 2^48 - (raw % 1024) * 4 KiB
  kTop = 11,      // 2^64 - 1 - raw % 2^16
  kNumValueKinds = 12,
};
inline constexpr uint8_t kWidthShift = 4;
inline constexpr uint8_t value_generator(ValueKind kind, unsigned width_log2 = 3) {
  return static_cast<uint8_t>(static_cast<unsigned>(kind) | (width_log2 << kWidthShift));
}

// Apertures: u8 form; form 0 (modulo 4): Value raw aperture word; else u8 source aperture,
// u8 destination aperture, u8 source peer, u8 destination peer (each modulo 4 / as is).
// Pte: u8 kind (modulo kNumPteKinds), Value address, u8 bits (bit 0 WRITE, bits 7..1 peer).
enum class PteKind : uint8_t {
  kDirectory = 0,  // VALID | address
  kSysmem = 1,     // a leaf in guest RAM
  kVram = 2,       // a leaf in this GPU's VRAM
  kPeer = 3,       // a leaf in a peer's VRAM (the peer index in bits)
  kRaw = 4,        // the address Value is the whole entry
  kNumPteKinds = 5,
};

// kFaultConfig's how byte: bit 0 writes FAULT_GET = FAULT_PUT first; bit 1 writes ENTRIES = 0
// first (the SPEC 3.5 sequence); the entries Value is used as is with bit 2, else as
// 1 << (value % 17).
// kControl's how byte: bit 0 writes CONTROL_SEQ = CONTROL_ACK + 1 (else + how); bit 1 skips the
// doorbell.
// kHost's commands (modulo 7): hang, unhang, fail-copies N, fail-vram START END, clear,
// copy-floor on, copy-floor off.
inline constexpr uint8_t kNumHostCommands = 7;

// Reads the input front to back; past its end every field is zero.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  [[nodiscard]] bool empty() const { return pos_ >= data_.size(); }
  uint64_t bytes(unsigned n) {
    uint64_t value = 0;
    for (unsigned i = 0; i < n; ++i) {
      const uint64_t byte = pos_ < data_.size() ? data_[pos_] : 0;
      ++pos_;
      value |= byte << (8 * i);
    }
    return value;
  }
  uint8_t u8() { return static_cast<uint8_t>(bytes(1)); }
  uint16_t u16() { return static_cast<uint16_t>(bytes(2)); }
  uint32_t u32() { return static_cast<uint32_t>(bytes(4)); }
  uint64_t u64() { return bytes(8); }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

// Builds an input (the seed writer).
class Writer {
 public:
  void bytes(uint64_t value, unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      out_.push_back(static_cast<uint8_t>(value >> (8 * i)));
    }
  }
  void u8(uint64_t value) { bytes(value, 1); }
  void u16(uint64_t value) { bytes(value, 2); }
  void u32(uint64_t value) { bytes(value, 4); }
  void u64(uint64_t value) { bytes(value, 8); }
  void action(Action action) { u8(static_cast<uint8_t>(action)); }
  // A Value that is exactly `value`.
  void value(uint64_t value) {
    u8(value_generator(ValueKind::kRaw));
    u64(value);
  }
  [[nodiscard]] const std::vector<uint8_t>& data() const { return out_; }

 private:
  std::vector<uint8_t> out_;
};

}  // namespace hmmgpu::fuzz
