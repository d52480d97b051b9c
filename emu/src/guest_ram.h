// SPDX-License-Identifier: GPL-2.0
// The guest's RAM as the device's DMA engines see it (SPEC section 2.5): a file shared with QEMU,
// mapped here, and the q35 layout that turns guest physical addresses into file offsets.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "os.h"

namespace hmmgpu {

// One contiguous range of guest physical addresses backed by the file at `file_offset`.
struct RamRange {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;
};

// The q35 memory map of a guest with `ram_size` bytes of RAM.
class RamLayout {
 public:
  static constexpr uint64_t kSplitThreshold = 0xb0000000;  // 2816 MiB
  static constexpr uint64_t kLowTop = 2ULL << 30;          // RAM below the PCI hole
  static constexpr uint64_t kHighBase = 4ULL << 30;        // where the rest resumes

  explicit RamLayout(uint64_t ram_size);

  // File offset of [gpa, gpa + len) when it lies entirely inside one range; nullopt otherwise
  // (also for len == 0 and for ranges that wrap past 2^64).
  [[nodiscard]] std::optional<uint64_t> translate(uint64_t gpa, uint64_t len) const;
  [[nodiscard]] uint64_t ram_size() const { return ram_size_; }

 private:
  uint64_t ram_size_;
  std::array<RamRange, 2> ranges_{};
  size_t num_ranges_ = 0;
};

class GuestRam {
 public:
  // Maps the first `ram_size` bytes of `path`; throws std::system_error when the file is missing
  // or shorter than that.
  GuestRam(const std::string& path, uint64_t ram_size);
  // Test seam (the fuzzers, emu/fuzz): guest RAM of `memory.size()` bytes that the caller owns and
  // keeps alive as long as this object, e.g. a heap buffer of exactly that size so that
  // AddressSanitizer catches any access outside it.
  explicit GuestRam(std::span<std::byte> memory);

  // Host pointer to [gpa, gpa + len), or nullptr when the range is not guest RAM.
  [[nodiscard]] std::byte* translate(uint64_t gpa, uint64_t len) const;
  [[nodiscard]] const RamLayout& layout() const { return layout_; }

 private:
  RamLayout layout_;
  UniqueFd fd_;
  Mapping map_;                // the file's mapping; empty for caller-owned memory
  std::byte* base_ = nullptr;  // file offset 0
};

}  // namespace hmmgpu
