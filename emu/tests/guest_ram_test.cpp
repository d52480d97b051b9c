// SPDX-License-Identifier: GPL-2.0
// Guest physical address translation (SPEC 2.5) and guest RAM file checks.
#include "guest_ram.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <system_error>

namespace hmmgpu {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

// Below 2816 MiB the RAM is one range at address 0.
TEST(RamLayout, SmallRamIsOneRange) {
  const RamLayout layout(512 * kMiB);
  EXPECT_EQ(layout.translate(0, 8), 0U);
  EXPECT_EQ(layout.translate(512 * kMiB - 8, 8), 512 * kMiB - 8);
  EXPECT_FALSE(layout.translate(512 * kMiB - 4, 8));  // crosses the end
  EXPECT_FALSE(layout.translate(512 * kMiB, 1));
  EXPECT_FALSE(layout.translate(4 * kGiB, 8));
}

// Just below the threshold nothing is split.
TEST(RamLayout, ThresholdIsExclusive) {
  const RamLayout below(2816 * kMiB - 2 * kMiB);
  EXPECT_EQ(below.translate(2 * kGiB, 8), 2 * kGiB);
  const RamLayout at(2816 * kMiB);
  EXPECT_FALSE(at.translate(2 * kGiB, 8));
  EXPECT_EQ(at.translate(4 * kGiB, 8), 2 * kGiB);
}

// From 2816 MiB on, RAM is split around the PCI hole.
TEST(RamLayout, LargeRamIsSplit) {
  const RamLayout layout(6 * kGiB);
  EXPECT_EQ(layout.translate(2 * kGiB - 8, 8), 2 * kGiB - 8);
  EXPECT_FALSE(layout.translate(2 * kGiB - 4, 8));  // crosses the low range's end
  EXPECT_FALSE(layout.translate(2 * kGiB, 8));
  EXPECT_FALSE(layout.translate(4 * kGiB - 8, 8));
  EXPECT_FALSE(layout.translate(4 * kGiB - 4, 8));            // crosses into high RAM from the hole
  EXPECT_EQ(layout.translate(4 * kGiB, 4 * kGiB), 2 * kGiB);  // the whole high range
  EXPECT_FALSE(layout.translate(4 * kGiB, 4 * kGiB + 1));
  EXPECT_EQ(layout.translate(8 * kGiB - 8, 8), 6 * kGiB - 8);
  EXPECT_FALSE(layout.translate(8 * kGiB, 8));
}

// Lengths and addresses near 2^64 never wrap into RAM; empty ranges are refused.
TEST(RamLayout, OverflowSafe) {
  const RamLayout layout(6 * kGiB);
  EXPECT_FALSE(layout.translate(~0ULL - 7, 8));
  EXPECT_FALSE(layout.translate(~0ULL, 2));
  EXPECT_FALSE(layout.translate(8, ~0ULL));
  EXPECT_FALSE(layout.translate(4 * kGiB + 8, ~0ULL - 4 * kGiB));
  EXPECT_FALSE(layout.translate(0, 0));
}

// A missing or short guest RAM file is a host error (std::system_error).
TEST(GuestRam, MissingOrShortFileThrows) {
  const auto path = std::filesystem::temp_directory_path() / "hmmgpu-emu-short-ram";
  std::filesystem::remove(path);
  EXPECT_THROW(GuestRam(path.string(), kMiB), std::system_error);
  std::ofstream(path).put('x');
  EXPECT_THROW(GuestRam(path.string(), kMiB), std::system_error);
  std::filesystem::resize_file(path, kMiB);
  EXPECT_NO_THROW(GuestRam(path.string(), kMiB));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace hmmgpu
