// SPDX-License-Identifier: GPL-2.0
//
// Migration tests, run in the VM against the real module: HMMGPU_IOCTL_MIGRATE
// in both directions, CPU-fault migration back (with fault-around), and what
// mm does to device-resident pages (fork, mprotect, munmap, MADV_DONTNEED,
// exit), and what /proc shows of them (pagemap, smaps, numa_maps). Every
// test runs on every device with HMMGPU_CAP_MIGRATE and checks the data
// after each round trip.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

using namespace hmmgpu::test;

namespace {

std::string param_name(const testing::TestParamInfo<Device>& p) {
  return p.param.attr("backend") + "_" + p.param.node;
}

// Bits of a /proc/PID/pagemap entry (fs/proc/task_mmu.c, PM_*).
constexpr uint64_t kPmPresent = 1ULL << 63;
constexpr uint64_t kPmSwap = 1ULL << 62;
constexpr uint64_t kPmFile = 1ULL << 61;
constexpr uint64_t kPmExclusive = 1ULL << 56;
constexpr uint64_t kPmFrame = (1ULL << 55) - 1;
// A swap entry's frame field is its type in the low MAX_SWAPFILES_SHIFT
// bits, then its offset (the pfn, for device-private entries).
constexpr unsigned kSwapTypeBits = 5;
// include/linux/swap.h with CONFIG_DEVICE_PRIVATE: the four device types sit
// just below the PTE-marker type 31, whatever else is configured, so
// SWP_DEVICE_WRITE = 32 - 4 - 1 and SWP_DEVICE_READ = SWP_DEVICE_WRITE + 1.
constexpr uint64_t kSwpDeviceWrite = 27;
constexpr uint64_t kSwpDeviceRead = 28;

uint64_t swap_type(uint64_t pme) { return pme & kPmFrame & ((1ULL << kSwapTypeBits) - 1); }
uint64_t swap_pfn(uint64_t pme) { return (pme & kPmFrame) >> kSwapTypeBits; }
uint64_t present_pfn(uint64_t pme) { return pme & kPmFrame; }

// The pagemap entries of `pages` pages at p; empty when the read fails.
std::vector<uint64_t> pagemap(const void* p, size_t pages) {
  Fd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  std::vector<uint64_t> out(pages);
  const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / kPage * sizeof(uint64_t));
  const auto len = static_cast<ssize_t>(pages * sizeof(uint64_t));
  if (!fd.valid() || ::pread(fd.get(), out.data(), len, off) != len) out.clear();
  return out;
}

// pagemap shows pfns (and /proc/iomem addresses) to CAP_SYS_ADMIN only.
bool shows_pfns() { return geteuid() == 0; }

// The [start, end] ranges of /proc/iomem entries named `name`, at any depth.
std::vector<std::pair<uint64_t, uint64_t>> iomem(const std::string& name) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  std::ifstream in("/proc/iomem");
  std::string line;
  while (std::getline(in, line)) {
    uint64_t start = 0, end = 0;
    int pos = 0;
    if (std::sscanf(line.c_str(), " %" SCNx64 "-%" SCNx64 " : %n", &start, &end, &pos) == 2 &&
        pos > 0 && line.substr(pos) == name)
      out.emplace_back(start, end);
  }
  return out;
}

bool in_ranges(const std::vector<std::pair<uint64_t, uint64_t>>& r, uint64_t addr) {
  for (const auto& [start, end] : r)
    if (addr >= start && addr <= end) return true;
  return false;
}

// The whole contents of a /proc file.
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The "Name: N kB" fields of the smaps entry (text of /proc/self/smaps) of
// the VMA that contains p; of the only entry when p is null (smaps_rollup).
std::map<std::string, uint64_t> smaps_fields(const std::string& text, const void* p) {
  std::map<std::string, uint64_t> out;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  bool ours = p == nullptr;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    uint64_t start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " ", &start, &end) == 2) {
      if (ours && p != nullptr) break;  // the next VMA
      ours = p == nullptr || (addr >= start && addr < end);
      continue;
    }
    auto colon = line.find(':');
    uint64_t value = 0;
    if (ours && colon != std::string::npos &&
        std::sscanf(line.c_str() + colon + 1, " %" SCNu64 " kB", &value) == 1)
      out[line.substr(0, colon)] = value;
  }
  return out;
}

// The key=value fields of the /proc/self/numa_maps line of the VMA starting
// at p; empty when there is none.
std::map<std::string, uint64_t> numa_maps_fields(const void* p) {
  std::map<std::string, uint64_t> out;
  std::istringstream in(slurp("/proc/self/numa_maps"));
  std::string line;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string word;
    if (!(words >> word) || std::stoull(word, nullptr, 16) != addr) continue;
    out["found"] = 1;
    while (words >> word) {
      auto eq = word.find('=');
      if (eq != std::string::npos && eq + 1 < word.size() &&
          std::isdigit(static_cast<unsigned char>(word[eq + 1])) != 0)
        out[word.substr(0, eq)] = std::stoull(word.substr(eq + 1));
    }
    break;
  }
  return out;
}

// THP is on for MADV_HUGEPAGE regions.
bool thp_for_madvise() {
  auto mode = read_file("/sys/kernel/mm/transparent_hugepage/enabled").value_or("");
  return mode.find("[always]") != std::string::npos || mode.find("[madvise]") != std::string::npos;
}

class Migrate : public testing::TestWithParam<Device>, protected MigrateCalls {
 protected:
  void SetUp() override {
    fd_ = Fd(::open(GetParam().dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  [[nodiscard]] uint64_t vram_used() const { return std::stoull(GetParam().attr("vram_used")); }
};

// Prefetch to the device and back: statuses, counters, vram_used and data.
TEST_P(Migrate, PrefetchRoundTrip) {
  const size_t n = 64;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 1);
  uint64_t before = vram_used();

  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(to_dev(m.get(), m.size(), &st, &out), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(out.migrated, n);
  EXPECT_EQ(out.failed, 0u);
  EXPECT_EQ(vram_used(), before + n * kPage);

  ASSERT_EQ(to_dev(m.get(), m.size(), &st, &out), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT), n);
  EXPECT_EQ(out.resident, n);

  ASSERT_EQ(to_sys(m.get(), m.size(), &st, &out), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(vram_used(), before);
  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT), n);
  EXPECT_EQ(first_bad(m.get(), n, 1), -1);

  // A second round trip of the same pages.
  ASSERT_EQ(to_dev(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  ASSERT_EQ(to_sys(m.get(), m.size()), 0);
  EXPECT_EQ(first_bad(m.get(), n, 1), -1);
}

// A large range, several batches and channels.
TEST_P(Migrate, LargeRange) {
  const size_t n = 2048;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 2);
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(first_bad(m.get(), n, 2), -1);
}

// CPU reads and writes of device-resident pages migrate them back.
TEST_P(Migrate, CpuFault) {
  const size_t n = 32;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 3);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  EXPECT_EQ(first_bad(m.get(), n, 3), -1);  // read faults

  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  fill(m.get(), n, 4);  // write faults
  EXPECT_EQ(first_bad(m.get(), n, 4), -1);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  ASSERT_EQ(to_sys(m.get(), m.size()), 0);
  EXPECT_EQ(first_bad(m.get(), n, 4), -1);
}

// A fault brings back its aligned fault-around window, not more.
TEST_P(Migrate, FaultAround) {
  long window =
      std::stol(read_file("/sys/module/hmmgpu/parameters/fault_around_pages").value_or("16"));
  if (window < 2) GTEST_SKIP() << "fault_around_pages is " << window;
  const size_t n = 2 * static_cast<size_t>(window);
  Aligned a(n * kPage, window * kPage);
  fill(a.ptr, n, 5);
  ASSERT_EQ(to_dev(a.ptr, n * kPage), 0);

  volatile char c = a.ptr[3 * kPage + 17];  // one read in the first window
  (void)c;
  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(a.ptr, n * kPage, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT, 0, window), static_cast<size_t>(window));
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED, window, n), static_cast<size_t>(window));
  EXPECT_EQ(first_bad(a.ptr, n, 5), -1);
}

// Mixed ranges: some pages resident, some in system memory, some holes.
TEST_P(Migrate, MixedRange) {
  const size_t n = 16;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  for (size_t i = 0; i < n; i += 2) fill(m.get() + i * kPage, 1, 100 + i);  // odd pages: holes
  ASSERT_EQ(to_dev(m.get(), 8 * kPage), 0);

  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(to_dev(m.get(), m.size(), &st, &out), 0);
  for (size_t i = 0; i < n; i++) {
    uint8_t want = i % 2   ? HMMGPU_PAGE_NOT_PRESENT
                   : i < 8 ? HMMGPU_PAGE_RESIDENT
                           : HMMGPU_PAGE_MIGRATED;
    EXPECT_EQ(st[i], want) << "page " << i;
  }
  EXPECT_EQ(out.resident, 4u);
  EXPECT_EQ(out.migrated, 4u);
  EXPECT_EQ(out.failed, 8u);

  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  for (size_t i = 0; i < n; i++)
    EXPECT_EQ(st[i], i % 2 ? HMMGPU_PAGE_NOT_PRESENT : HMMGPU_PAGE_MIGRATED) << "page " << i;
  for (size_t i = 0; i < n; i += 2) EXPECT_EQ(first_bad(m.get() + i * kPage, 1, 100 + i), -1);
}

// malloc'd memory moves like any anonymous memory.
TEST_P(Migrate, Malloc) {
  const size_t n = 256;
  char* raw = static_cast<char*>(std::malloc((n + 1) * kPage));
  ASSERT_NE(raw, nullptr);
  char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kPage - 1) & ~(kPage - 1));
  fill(p, n, 6);
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(p, n * kPage, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(first_bad(p, n, 6), -1);
  std::free(raw);
}

// A THP-backed range (checked in smaps) is split and moves page by page:
// every page becomes a device entry in pagemap, and none stays huge.
TEST_P(Migrate, TransparentHugePage) {
  const size_t huge = 2UL << 20, n = huge / kPage;
  Aligned a(huge, huge);
  ASSERT_EQ(madvise(a.ptr, huge, MADV_HUGEPAGE), 0);
  fill(a.ptr, n, 7);
  if (thp_for_madvise()) {
    EXPECT_EQ(smaps_fields(slurp("/proc/self/smaps"), a.ptr)["AnonHugePages"], huge >> 10);
  }
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(a.ptr, huge, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  auto pm = pagemap(a.ptr, n);
  ASSERT_EQ(pm.size(), n);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(pm[i] & (kPmPresent | kPmSwap), kPmSwap) << "page " << i;
  EXPECT_EQ(smaps_fields(slurp("/proc/self/smaps"), a.ptr)["AnonHugePages"], 0u);
  ASSERT_EQ(to_sys(a.ptr, huge, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(first_bad(a.ptr, n, 7), -1);
}

// pagemap shows device-resident pages as non-present swap entries of type
// SWP_DEVICE_WRITE whose offset is a pfn of this device's VRAM (6.12
// pte_to_pagemap_entry: is_swap_pte, is_pfn_swap_entry), read-only ones as
// SWP_DEVICE_READ after mprotect; the other pages stay present, and all are
// present again, with their data, after moving back.
TEST_P(Migrate, PagemapDeviceEntries) {
  const size_t n = 16, from = 4, to = 12;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 30);
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(m.get() + from * kPage, (to - from) * kPage, &st), 0);
  ASSERT_EQ(count(st, HMMGPU_PAGE_MIGRATED), to - from);
  auto vram = iomem(GetParam().node);
  if (shows_pfns()) {
    ASSERT_FALSE(vram.empty()) << "no /proc/iomem region named " << GetParam().node;
  }
  auto resident = [&](size_t i) { return i >= from && i < to; };

  auto pm = pagemap(m.get(), n);
  ASSERT_EQ(pm.size(), n);
  for (size_t i = 0; i < n; i++) {
    std::ostringstream what;
    what << "page " << i << " pagemap 0x" << std::hex << pm[i];
    SCOPED_TRACE(what.str());
    if (resident(i)) {
      EXPECT_EQ(pm[i] & kPmPresent, 0u);
      EXPECT_NE(pm[i] & kPmSwap, 0u);
      EXPECT_EQ(pm[i] & kPmFile, 0u);       // an anonymous folio
      EXPECT_EQ(pm[i] & kPmExclusive, 0u);  // reported for present pages only
      if (shows_pfns()) {
        EXPECT_EQ(swap_type(pm[i]), kSwpDeviceWrite);
        EXPECT_TRUE(in_ranges(vram, swap_pfn(pm[i]) * kPage));
      }
    } else {
      EXPECT_NE(pm[i] & kPmPresent, 0u);
      EXPECT_EQ(pm[i] & kPmSwap, 0u);
      EXPECT_NE(pm[i] & kPmExclusive, 0u);
      if (shows_pfns()) {
        EXPECT_FALSE(in_ranges(vram, present_pfn(pm[i]) * kPage));
      }
    }
  }

  // mprotect makes the writable device entries readable ones (mm/mprotect.c
  // change_pte_range: make_readable_device_private_entry), same pfn.
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ), 0);
  auto ro = pagemap(m.get(), n);
  ASSERT_EQ(ro.size(), n);
  for (size_t i = from; i < to; i++) {
    EXPECT_EQ(ro[i] & (kPmPresent | kPmSwap), kPmSwap) << "page " << i;
    if (shows_pfns()) {
      EXPECT_EQ(swap_type(ro[i]), kSwpDeviceRead) << "page " << i;
      EXPECT_EQ(swap_pfn(ro[i]), swap_pfn(pm[i])) << "page " << i;
    }
  }
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ | PROT_WRITE), 0);

  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  for (size_t i = 0; i < n; i++)
    EXPECT_EQ(st[i], resident(i) ? HMMGPU_PAGE_MIGRATED : HMMGPU_PAGE_RESIDENT) << "page " << i;
  auto back = pagemap(m.get(), n);
  ASSERT_EQ(back.size(), n);
  for (size_t i = 0; i < n; i++) {
    EXPECT_EQ(back[i] & (kPmPresent | kPmSwap), kPmPresent) << "page " << i;
    if (shows_pfns()) {
      EXPECT_FALSE(in_ranges(vram, present_pfn(back[i]) * kPage)) << "page " << i;
    }
  }
  EXPECT_EQ(first_bad(m.get(), n, 30), -1);
}

// smaps, smaps_rollup and numa_maps read fine with device-resident pages.
// smaps counts them in Rss, Pss and Anonymous, never in Swap (6.12
// smaps_pte_entry: a device-private entry is "fake-present" and goes through
// smaps_account); numa_maps leaves them out (can_gather_numa_stats takes
// present ptes only). Reading moves nothing back.
TEST_P(Migrate, ProcSmapsWithResidentPages) {
  const size_t n = 64, moved = 24;
  const uint64_t kb = n * kPage >> 10;
  Isolated r(n * kPage);
  ASSERT_NE(r.ptr, nullptr);
  fill(r.ptr, n, 31);
  auto before = smaps_fields(slurp("/proc/self/smaps"), r.ptr);
  ASSERT_EQ(before["Rss"], kb);
  ASSERT_EQ(before["Anonymous"], kb);
  ASSERT_EQ(numa_maps_fields(r.ptr)["anon"], n);

  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(r.ptr, moved * kPage, &st), 0);
  ASSERT_EQ(count(st, HMMGPU_PAGE_MIGRATED), moved);
  auto during = smaps_fields(slurp("/proc/self/smaps"), r.ptr);
  EXPECT_EQ(during["Rss"], kb);
  EXPECT_EQ(during["Pss"], kb);
  EXPECT_EQ(during["Anonymous"], kb);
  EXPECT_EQ(during["Private_Clean"] + during["Private_Dirty"], kb);
  EXPECT_EQ(during["Swap"], 0u);
  EXPECT_EQ(during["SwapPss"], 0u);
  auto rollup = smaps_fields(slurp("/proc/self/smaps_rollup"), nullptr);
  EXPECT_GE(rollup["Rss"], kb);
  EXPECT_GE(rollup["Anonymous"], kb);
  EXPECT_GE(rollup["Pss_Anon"], kb);  // in smaps_rollup only
  auto numa = numa_maps_fields(r.ptr);
  EXPECT_EQ(numa["found"], 1u);
  EXPECT_EQ(numa["anon"], n - moved);

  ASSERT_EQ(to_sys(r.ptr, n * kPage, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED, 0, moved), moved);  // still on the device
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT, moved, n), n - moved);
  auto after = smaps_fields(slurp("/proc/self/smaps"), r.ptr);
  EXPECT_EQ(after["Rss"], kb);
  EXPECT_EQ(after["Anonymous"], kb);
  EXPECT_EQ(numa_maps_fields(r.ptr)["anon"], n);
  EXPECT_EQ(first_bad(r.ptr, n, 31), -1);
}

// In a private file mapping, written pages move; page-cache pages report FILE.
TEST_P(Migrate, PrivateFileMapping) {
  const size_t n = 8;
  char path[] = "/tmp/hmmgpu-migrate-XXXXXX";
  int raw = mkstemp(path);
  ASSERT_GE(raw, 0);
  Fd file(raw);
  unlink(path);
  std::vector<char> content(n * kPage);
  fill(content.data(), n, 8);
  ASSERT_EQ(write(file.get(), content.data(), content.size()),
            static_cast<ssize_t>(content.size()));

  Mapping m(n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.get());
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), 4, 9);                   // pages 0..3: private copies
  volatile char c = m.get()[4 * kPage];  // page 4: mapped page cache
  (void)c;
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED, 0, 4), 4u);
  EXPECT_EQ(count(st, HMMGPU_PAGE_FILE, 4, n), 4u);
  EXPECT_EQ(first_bad(m.get(), 4, 9), -1);
  EXPECT_EQ(std::memcmp(m.get() + 4 * kPage, content.data() + 4 * kPage, 4 * kPage), 0);
}

// After fork, parent and child each see their data and write independently.
TEST_P(Migrate, Fork) {
  const size_t n = 16;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 10);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  char* p = m.get();
  EXPECT_TRUE(in_child([&] {
    if (first_bad(p, n, 10) != -1) return false;
    fill(p, n, 11);
    return first_bad(p, n, 11) == -1;
  }));
  EXPECT_EQ(first_bad(p, n, 10), -1);
  ASSERT_EQ(to_dev(p, m.size()), 0);
  EXPECT_TRUE(in_child([&] { return first_bad(p, n, 10) == -1; }));
  fill(p, n, 12);
  EXPECT_EQ(first_bad(p, n, 12), -1);
}

// A read-only mapping of device-resident pages reads back correctly.
TEST_P(Migrate, MprotectReadOnly) {
  const size_t n = 16;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 13);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ), 0);
  EXPECT_EQ(first_bad(m.get(), n, 13), -1);
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ | PROT_WRITE), 0);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ), 0);
  ASSERT_EQ(to_sys(m.get(), m.size()), 0);
  EXPECT_EQ(first_bad(m.get(), n, 13), -1);
}

// munmap of device-resident pages frees their VRAM.
TEST_P(Migrate, MunmapWhileResident) {
  const size_t n = 64;
  uint64_t before = vram_used();
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 14);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  EXPECT_EQ(vram_used(), before + n * kPage);
  ASSERT_EQ(munmap(m.get(), m.size()), 0);
  m.forget();
  EXPECT_EQ(vram_used(), before);
}

// MADV_DONTNEED drops device-resident pages: VRAM freed, zeros read back.
TEST_P(Migrate, DontNeedWhileResident) {
  const size_t n = 16;
  uint64_t before = vram_used();
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 15);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  ASSERT_EQ(madvise(m.get(), m.size(), MADV_DONTNEED), 0);
  EXPECT_EQ(vram_used(), before);
  for (size_t i = 0; i < n * kPage; i++) ASSERT_EQ(m.get()[i], 0) << "byte " << i;
}

// A process that exits with device-resident pages frees their VRAM.
TEST_P(Migrate, ExitWhileResident) {
  uint64_t before = vram_used();
  std::string path = GetParam().dev_path();
  EXPECT_TRUE(in_child([&] {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    const size_t n = 64;
    Mapping m(n * kPage);
    fill(m.get(), n, 16);
    if (migrate(fd.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE) != 0) return false;
    m.forget();
    _exit(0);
  }));
  EXPECT_EQ(vram_used(), before);
}

// Two processes migrate their own memory on one device at the same time.
TEST_P(Migrate, TwoProcesses) {
  std::string path = GetParam().dev_path();
  auto work = [path](uint64_t seed) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    const size_t n = 128;
    Mapping m(n * kPage);
    for (int round = 0; round < 4; round++) {
      fill(m.get(), n, seed + round);
      if (migrate(fd.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE) != 0) return false;
      if (first_bad(m.get(), n, seed + round) != -1) return false;
    }
    return true;
  };
  pid_t pid = fork();
  if (pid == 0) _exit(work(1000) ? 0 : 1);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(work(2000));
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

// Bad arguments fail with the documented errno and move nothing.
TEST_P(Migrate, BadInputs) {
  Mapping m(4 * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), 4, 17);
  auto base = [&] {
    hmmgpu_migrate a{};
    a.addr = reinterpret_cast<uintptr_t>(m.get());
    a.length = m.size();
    a.flags = HMMGPU_MIGRATE_TO_DEVICE;
    return a;
  };
  auto call = [&](hmmgpu_migrate a) { return xioctl(fd_.get(), HMMGPU_IOCTL_MIGRATE, &a); };
  hmmgpu_migrate a = base();
  a.flags = 0;
  EXPECT_EQ(call(a), -EINVAL);
  a.flags = HMMGPU_MIGRATE_TO_DEVICE | HMMGPU_MIGRATE_TO_SYSTEM;
  EXPECT_EQ(call(a), -EINVAL);
  a.flags = 1u << 2;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.pad = 1;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.reserved[3] = 1;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.addr += 1;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.length = 0;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.length = kPage + 1;
  EXPECT_EQ(call(a), -EINVAL);
  a = base();
  a.addr = ~0ULL & ~(kPage - 1);
  a.length = 2 * kPage;
  EXPECT_EQ(call(a), -EINVAL);  // wraps
  a = base();
  a.addr = 1ULL << 60;
  EXPECT_EQ(call(a), -EINVAL);  // beyond TASK_SIZE
  a = base();
  a.status = 8;
  EXPECT_EQ(call(a), -EFAULT);
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_MIGRATE, nullptr), -EFAULT);

  Mapping hole(4 * kPage);
  ASSERT_NE(hole.get(), nullptr);
  ASSERT_EQ(munmap(hole.get(), hole.size()), 0);
  a = base();
  a.addr = reinterpret_cast<uintptr_t>(hole.get());
  hole.forget();
  EXPECT_EQ(call(a), -EFAULT);  // unmapped

  // The file acts on the opener's address space only.
  int fd = fd_.get();
  void* p = m.get();
  size_t len = m.size();
  EXPECT_TRUE(in_child([&] { return migrate(fd, p, len, HMMGPU_MIGRATE_TO_DEVICE) == -EPERM; }));

  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT), 4u);  // nothing moved
  EXPECT_EQ(first_bad(m.get(), 4, 17), -1);
}

// The "key:\tvalue" lines of /proc/self/fdinfo/FD.
std::map<std::string, std::string> fdinfo(int fd) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_file("/proc/self/fdinfo/" + std::to_string(fd)).value_or(""));
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = value;
  }
  return out;
}

// hmmgpu-vram-resident of fd, in KiB.
long resident_kib(int fd) {
  auto v = fdinfo(fd)["hmmgpu-vram-resident"];
  EXPECT_EQ(v.substr(v.find(' ') + 1), "KiB") << v;
  return std::stol(v);
}

// fdinfo names the device and the process and counts the process's VRAM
// pages on the device as they come and go; every file of the process on
// the device sees the same count; an inherited file names its opener.
TEST_P(Migrate, FdinfoCountsResidentVram) {
  auto info = fdinfo(fd_.get());
  EXPECT_EQ(info["hmmgpu-device"], GetParam().node);
  EXPECT_EQ(info["hmmgpu-pid"], std::to_string(getpid()));
  EXPECT_EQ(info["hmmgpu-launches-pending"], "0");
  const size_t n = 16;
  const long kib = static_cast<long>(kPage / 1024);
  Mapping m(n * kPage);
  fill(m.get(), n, 19);
  const long before = resident_kib(fd_.get());
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  EXPECT_EQ(resident_kib(fd_.get()), before + static_cast<long>(n) * kib);
  Fd other(::open(GetParam().dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(other.valid());
  EXPECT_EQ(resident_kib(other.get()), before + static_cast<long>(n) * kib);

  ASSERT_EQ(to_sys(m.get(), n / 2 * kPage), 0);
  EXPECT_EQ(resident_kib(fd_.get()), before + static_cast<long>(n / 2) * kib);
  EXPECT_EQ(first_bad(m.get(), n, 19), -1);  // CPU faults bring the rest back
  EXPECT_EQ(resident_kib(fd_.get()), before);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);

  const int fd = fd_.get();
  const pid_t parent = getpid();
  EXPECT_TRUE(
      in_child([fd, parent] { return fdinfo(fd)["hmmgpu-pid"] == std::to_string(parent); }));
  ASSERT_EQ(munmap(m.get(), m.size()), 0);
  m.forget();
  EXPECT_EQ(resident_kib(fd_.get()), before);
}

// Unbinding the device moves its resident pages back first: no data lost.
// Runs last: the device is bound again afterwards, but its file is closed.
TEST_P(Migrate, UnbindWhileResident) {
  const size_t n = 128;
  std::string parent = GetParam().parent();
  std::string name = parent.substr(parent.rfind('/') + 1);
  std::string driver = parent + "/driver";
  ASSERT_FALSE(parent.empty());
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 18);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  fd_ = Fd();

  std::string drv_dir = std::filesystem::canonical(driver).string();
  ASSERT_TRUE(write_file(drv_dir + "/unbind", name));
  EXPECT_EQ(first_bad(m.get(), n, 18), -1);
  ASSERT_TRUE(write_file(drv_dir + "/bind", name));
}

// GET_INFO of the device behind `d`.
hmmgpu_info info_of(const Device& d) {
  Fd fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
  hmmgpu_info info{};
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  return info;
}

uint64_t bit_of(const Device& d) { return 1ULL << std::stoul(d.node.substr(6)); }

// The emulated GPUs of one emulator name each other as peers, never
// themselves; a sysram device has no peers and is no one's.
TEST(Peers, InfoListsEmulatedPeers) {
  auto emu = devices_with_backend("emu");
  auto sys = devices_with_backend("sysram");
  if (emu.size() < 2) GTEST_SKIP() << "needs two emulated GPUs";
  for (const auto& d : emu) {
    hmmgpu_info info = info_of(d);
    EXPECT_EQ(info.uapi_version & 0xffff, 4u);
    for (const auto& o : emu) EXPECT_EQ((info.peers & bit_of(o)) != 0, o.node != d.node) << o.node;
    for (const auto& o : sys) EXPECT_EQ(info.peers & bit_of(o), 0u) << o.node;
  }
  for (const auto& d : sys) EXPECT_EQ(info_of(d).peers, 0u) << d.node;
}

// Counters of the device behind fd.
hmmgpu_counters counters_of(int fd) {
  hmmgpu_counters c{};
  EXPECT_EQ(xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, &c), 0);
  return c;
}

// Pages in one GPU's VRAM move straight into its peer's: MIGRATE to the
// peer reports them migrated, the peer counts them as peer migrations, the
// source copies nothing to system memory, the VRAM moves and the data is
// intact, also back and forth and with pages of both in one range.
TEST(Peers, MigrateVramToVram) {
  auto gpu0 = emu_device(0), gpu1 = emu_device(1);
  if (!gpu0 || !gpu1) GTEST_SKIP() << "needs emulated GPUs 0 and 1";
  Fd fd0(::open(gpu0->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  Fd fd1(::open(gpu1->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd0.valid() && fd1.valid());
  const size_t n = 96;
  Mapping m(n * kPage);
  fill(m.get(), n, 41);
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd0.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  ASSERT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  const uint64_t used0 = std::stoull(gpu0->attr("vram_used"));
  const uint64_t used1 = std::stoull(gpu1->attr("vram_used"));
  const hmmgpu_counters a0 = counters_of(fd0.get()), a1 = counters_of(fd1.get());
  const long kib0 = resident_kib(fd0.get()), kib1 = resident_kib(fd1.get());

  hmmgpu_migrate out{};
  ASSERT_EQ(migrate(fd1.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st, &out), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(out.migrated, n);
  const hmmgpu_counters b0 = counters_of(fd0.get()), b1 = counters_of(fd1.get());
  EXPECT_EQ(b1.peer_to_device_pages - a1.peer_to_device_pages, n);
  EXPECT_EQ(b1.peer_to_device_bytes - a1.peer_to_device_bytes, n * kPage);
  EXPECT_EQ(b1.to_device_pages - a1.to_device_pages, n);
  EXPECT_EQ(b0.to_system_pages, a0.to_system_pages);  // no bounce through system memory
  EXPECT_EQ(b0.cpu_faults, a0.cpu_faults);
  EXPECT_EQ(std::stoull(gpu0->attr("vram_used")), used0 - n * kPage);
  EXPECT_EQ(std::stoull(gpu1->attr("vram_used")), used1 + n * kPage);
  EXPECT_EQ(resident_kib(fd0.get()), kib0 - static_cast<long>(n * kPage / 1024));
  EXPECT_EQ(resident_kib(fd1.get()), kib1 + static_cast<long>(n * kPage / 1024));

  // Half back to gpu0, then the whole range (half resident) to gpu1.
  ASSERT_EQ(migrate(fd0.get(), m.get(), m.size() / 2, HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n / 2);
  ASSERT_EQ(migrate(fd1.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED, 0, n / 2), n / 2);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT, n / 2, n), n / 2);
  EXPECT_EQ(first_bad(m.get(), n, 41), -1);  // CPU faults bring it back from gpu1
}

// A peer migration whose copy fails leaves the pages in the source's VRAM
// with their data.
TEST(Peers, FailedPeerCopyKeepsPages) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  auto gpu0 = emu_device(0), gpu1 = emu_device(1);
  if (!gpu0 || !gpu1) GTEST_SKIP() << "needs emulated GPUs 0 and 1";
  Fd fd0(::open(gpu0->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  Fd fd1(::open(gpu1->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd0.valid() && fd1.valid());
  const size_t n = 16;
  Mapping m(n * kPage);
  fill(m.get(), n, 43);
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd0.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  InjectionGuard guard(1);
  ASSERT_TRUE(control("fail-copies 1 1000"));
  EXPECT_EQ(migrate(fd1.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), -EIO);
  EXPECT_EQ(count(st, HMMGPU_PAGE_COPY_FAILED), n);
  ASSERT_TRUE(guard.clear());
  ASSERT_EQ(migrate(fd0.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT), n);
  EXPECT_EQ(first_bad(m.get(), n, 43), -1);
}

// Pages on a device that is not a peer (a sysram device, for an emulated
// GPU) stay where they are: OTHER_DEVICE.
TEST(Peers, NonPeerPagesStay) {
  auto emu = devices_with_backend("emu");
  auto sys = devices_with_backend("sysram");
  if (emu.empty() || sys.empty()) GTEST_SKIP() << "needs an emulated GPU and a sysram device";
  Fd fe(::open(emu[0].dev_path().c_str(), O_RDWR | O_CLOEXEC));
  Fd fs(::open(sys[0].dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fe.valid() && fs.valid());
  const size_t n = 8;
  Mapping m(n * kPage);
  fill(m.get(), n, 45);
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fs.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  hmmgpu_migrate out{};
  ASSERT_EQ(migrate(fe.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st, &out), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_OTHER_DEVICE), n);
  EXPECT_EQ(out.failed, n);
  ASSERT_EQ(migrate(fs.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_RESIDENT), n);
  EXPECT_EQ(first_bad(m.get(), n, 45), -1);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Devices, Migrate, testing::ValuesIn(migrate_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Migrate);
