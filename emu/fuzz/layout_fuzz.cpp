// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: the guest-physical-address translation every DMA goes through (SPEC 2.5),
// against a plain model of the q35 layout. Input: RAM size, address, length (8 bytes each).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>

#include "guest_ram.h"
#include "input.h"

namespace {

using hmmgpu::RamLayout;

// The q35 layout written out with 128-bit arithmetic, nothing clever: the file offset of
// [gpa, gpa + len) when it lies inside one range of RAM.
std::optional<uint64_t> model(uint64_t ram, uint64_t gpa, uint64_t len) {
  using u128 = unsigned __int128;
  struct Range {
    u128 start, end, file;
  };
  Range ranges[2] = {{0, ram, 0}, {0, 0, 0}};
  if (ram >= RamLayout::kSplitThreshold) {
    ranges[0] = {0, RamLayout::kLowTop, 0};
    ranges[1] = {RamLayout::kHighBase, u128{RamLayout::kHighBase} + ram - RamLayout::kLowTop,
                 RamLayout::kLowTop};
  }
  if (len == 0) {
    return std::nullopt;
  }
  for (const Range& r : ranges) {
    if (gpa >= r.start && u128{gpa} + len <= r.end) {
      return static_cast<uint64_t>(r.file + (gpa - r.start));
    }
  }
  return std::nullopt;
}

[[noreturn]] void mismatch(uint64_t ram, uint64_t gpa, uint64_t len) {
  std::fprintf(stderr, "RamLayout(0x%llx).translate(0x%llx, 0x%llx) disagrees with the model\n",
               static_cast<unsigned long long>(ram), static_cast<unsigned long long>(gpa),
               static_cast<unsigned long long>(len));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hmmgpu::fuzz::Reader in(std::span<const uint8_t>(data, size));
  // RAM sizes a q35 guest can have (the split needs at least 2 GiB) and then some.
  const uint64_t ram = in.u64() % (uint64_t{1} << 52);
  const uint64_t gpa = in.u64();
  const uint64_t len = in.u64();
  const std::optional<uint64_t> got = RamLayout(ram).translate(gpa, len);
  const std::optional<uint64_t> want = model(ram, gpa, len);
  if (got != want) {
    mismatch(ram, gpa, len);
  }
  // Whatever it accepts lies inside the RAM file.
  if (got && (*got > ram || len > ram - *got)) {
    mismatch(ram, gpa, len);
  }
  return 0;
}
