// SPDX-License-Identifier: GPL-2.0
//
// Observability tests, run in the VM against the real module: the counters
// of HMMGPU_IOCTL_GET_COUNTERS (uapi 1.2, 1.3), their debugfs file
// hmmgpu/hmmgpuN/counters, and the hmmgpu_migrate and hmmgpu_cpu_fault
// tracepoints, also when copies fail (the emulator's fault injection,
// emu/SPEC.md 8.1) and when the VRAM runs out. Other tests may run before,
// so counters are compared as deltas of a read before and a read after.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csetjmp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

using namespace hmmgpu::test;

namespace {

const char kDebugfs[] = "/sys/kernel/debug";
const char kTracing[] = "/sys/kernel/tracing";

std::string param_name(const testing::TestParamInfo<Device>& p) {
  return p.param.attr("backend") + "_" + p.param.node;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Mounts fs at dir unless probe already exists below it; true when it does then.
bool ensure_mounted(const char* fs, const char* dir, const std::string& probe) {
  if (!exists(probe)) ::mount(fs, dir, fs, 0, nullptr);
  return exists(probe);
}

// The whole contents of a (possibly large) file.
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// HMMGPU_IOCTL_GET_COUNTERS; returns 0 or -errno.
int get_counters(int fd, hmmgpu_counters* c) {
  *c = hmmgpu_counters{};
  return xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, c);
}

class Counters : public testing::TestWithParam<Device>, protected MigrateCalls {
 protected:
  void SetUp() override {
    fd_ = Fd(::open(GetParam().dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  hmmgpu_counters read() {
    hmmgpu_counters c{};
    EXPECT_EQ(get_counters(fd_.get(), &c), 0);
    return c;
  }
  [[nodiscard]] uint64_t vram(const char* attr) const { return std::stoull(GetParam().attr(attr)); }
  static long window() {
    return std::stol(read_file("/sys/module/hmmgpu/parameters/fault_around_pages").value_or("16"));
  }
};

// Writes a word identifying page i at both ends of each of `pages` pages:
// cheap enough for ranges as large as the VRAM.
void mark(char* p, size_t pages, uint64_t seed) {
  for (size_t i = 0; i < pages; i++) {
    auto* w = reinterpret_cast<uint64_t*>(p + i * kPage);
    w[0] = seed ^ i;
    w[kPage / 8 - 1] = ~(seed ^ i);
  }
}

// The first page whose marks differ from mark()'s, or -1.
long first_unmarked(const char* p, size_t pages, uint64_t seed) {
  for (size_t i = 0; i < pages; i++) {
    const auto* w = reinterpret_cast<const uint64_t*>(p + i * kPage);
    if (w[0] != (seed ^ i) || w[kPage / 8 - 1] != ~(seed ^ i)) return static_cast<long>(i);
  }
  return -1;
}

sigjmp_buf g_jmp;
void* volatile g_fault_addr;

void on_sigbus(int /*sig*/, siginfo_t* si, void* /*ctx*/) {
  g_fault_addr = si->si_addr;
  siglongjmp(g_jmp, 1);
}

// Reads the byte at p; true when that raised SIGBUS for p's page. For a
// forked child: the handler stays installed.
bool read_raises_sigbus(const char* p) {
  alarm(60);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, nullptr) != 0) return false;
  if (sigsetjmp(g_jmp, 1) != 0) {
    auto page = [](const volatile void* a) { return reinterpret_cast<uintptr_t>(a) / kPage; };
    return page(g_fault_addr) == page(p);
  }
  volatile char c = *static_cast<const volatile char*>(p);
  (void)c;
  return false;
}

// Every device reports uapi 1.2 or later and HMMGPU_CAP_COUNTERS, and its counters.
TEST(CountersInfo, EveryDeviceHasCounters) {
  auto devs = list_devices();
  ASSERT_FALSE(devs.empty());
  for (const auto& d : devs) {
    Fd fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.valid()) << d.node;
    hmmgpu_info info{};
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), 0) << d.node;
    EXPECT_EQ(info.uapi_version, static_cast<uint32_t>(HMMGPU_UAPI_VERSION)) << d.node;
    EXPECT_GE(HMMGPU_UAPI_VERSION_MINOR, 2);
    EXPECT_NE(info.caps & HMMGPU_CAP_COUNTERS, 0U) << d.node;
    hmmgpu_counters c{};
    ASSERT_EQ(get_counters(fd.get(), &c), 0) << d.node;
    EXPECT_GE(c.num_channels, 1U) << d.node;
    EXPECT_LE(c.num_channels, static_cast<uint32_t>(HMMGPU_MAX_CHANNELS_UAPI)) << d.node;
    for (uint32_t i = c.num_channels; i < HMMGPU_MAX_CHANNELS_UAPI; i++)
      EXPECT_EQ(c.channel_busy_ns[i], 0U) << d.node << " channel " << i;
    for (uint64_t r : c.reserved) EXPECT_EQ(r, 0U) << d.node;
  }
}

// A round trip of N pages counts N pages and N pages' bytes each way.
TEST_P(Counters, RoundTrip) {
  const size_t n = 64;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 11);
  hmmgpu_counters before = read();
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  ASSERT_EQ(to_sys(m.get(), m.size()), 0);
  hmmgpu_counters after = read();

  EXPECT_EQ(after.to_device_pages - before.to_device_pages, n);
  EXPECT_EQ(after.to_device_bytes - before.to_device_bytes, n * kPage);
  EXPECT_EQ(after.to_system_pages - before.to_system_pages, n);
  EXPECT_EQ(after.to_system_bytes - before.to_system_bytes, n * kPage);
  EXPECT_GE(after.copy_batches - before.copy_batches, 2U);
  EXPECT_EQ(after.copy_errors, before.copy_errors);
  EXPECT_EQ(after.cpu_faults, before.cpu_faults);
  EXPECT_EQ(after.num_channels, before.num_channels);
  bool grew = false;
  for (uint32_t i = 0; i < after.num_channels; i++) {
    EXPECT_GE(after.channel_busy_ns[i], before.channel_busy_ns[i]) << "channel " << i;
    grew |= after.channel_busy_ns[i] > before.channel_busy_ns[i];
  }
  EXPECT_TRUE(grew) << "no channel's busy time grew";
  EXPECT_EQ(first_bad(m.get(), n, 11), -1);
}

// A CPU touch counts one fault and window - 1 fault-around pages.
TEST_P(Counters, FaultAround) {
  const long w = window();
  if (w < 2) GTEST_SKIP() << "fault_around_pages is " << w;
  const auto n = static_cast<size_t>(w);
  Aligned a(n * kPage, n * kPage);
  fill(a.ptr, n, 12);
  ASSERT_EQ(to_dev(a.ptr, n * kPage), 0);

  hmmgpu_counters before = read();
  volatile char c = a.ptr[2 * kPage + 5];  // one read fault in the window
  (void)c;
  hmmgpu_counters after = read();

  EXPECT_EQ(after.cpu_faults - before.cpu_faults, 1U);
  EXPECT_EQ(after.fault_around_pages - before.fault_around_pages, n - 1);
  EXPECT_EQ(after.to_system_pages - before.to_system_pages, n);
  EXPECT_EQ(after.to_system_bytes - before.to_system_bytes, n * kPage);
  EXPECT_EQ(after.to_device_pages, before.to_device_pages);
  EXPECT_EQ(first_bad(a.ptr, n, 12), -1);
}

// Reading device-resident memory in order: each fault that lands just
// after the previous window doubles it, from fault_around_pages up to
// fault_around_max_pages, so 1024 pages come back in windows of 16, 32,
// ..., 512 and 16 (7 faults); with the maximum at the base, in 64. In
// random order the base window alone would take 64 faults too (a few
// less when a fault happens to follow the previous window), but once half
// of an aligned subregion has come back the rest of it comes in one fault
// (the density rule), so it takes far fewer; with prefetch_threshold 0
// (the density rule off) it takes 48 to 64 again.
TEST_P(Counters, FaultAroundGrows) {
  ParamOverride base("fault_around_pages", "16");
  ParamOverride threshold("prefetch_threshold", "50");
  ParamOverride max("fault_around_max_pages", "512");
  ASSERT_TRUE(base.ok() && threshold.ok() && max.ok());
  constexpr size_t n = 1024;
  const auto faults = [&](const std::vector<size_t>& order) {
    Aligned a(n * kPage, 2 << 20);
    fill(a.ptr, n, 13);
    EXPECT_EQ(to_dev(a.ptr, n * kPage), 0);
    const uint64_t before = read().cpu_faults;
    const volatile char* v = a.ptr;
    for (size_t p : order) (void)v[p * kPage + 9];  // one read fault or none
    const uint64_t after = read().cpu_faults;
    EXPECT_EQ(first_bad(a.ptr, n, 13), -1);
    return after - before;
  };
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; i++) order[i] = i;
  EXPECT_EQ(faults(order), 7U);
  std::mt19937 rng(5);
  std::shuffle(order.begin(), order.end(), rng);
  const uint64_t dense = faults(order);
  EXPECT_GE(dense, 4U);
  EXPECT_LE(dense, 40U);
  {
    ParamOverride off("prefetch_threshold", "0");
    ASSERT_TRUE(off.ok());
    const uint64_t random = faults(order);
    EXPECT_GE(random, 48U);
    EXPECT_LE(random, 64U);
  }
  std::sort(order.begin(), order.end());
  ParamOverride flat("fault_around_max_pages", "16");
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(faults(order), 64U);
}

// Migrating more pages than the VRAM has free: the least recently used
// chunks are evicted back to system memory to make room, so every page
// migrates and none fails; the evictions are counted, the evicted pages
// are back in system memory with their data, and nothing is lost.
TEST_P(Counters, VramFullEvicts) {
  const uint64_t total = vram("vram_total"), used = vram("vram_used");
  ASSERT_GE(total, used);
  const size_t avail = (total - used) / kPage, extra = 1024, n = avail + extra;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  mark(m.get(), n, 15);
  hmmgpu_counters before = read();
  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(to_dev(m.get(), m.size(), &st, &out), 0);
  hmmgpu_counters after = read();

  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(out.migrated, n);
  EXPECT_EQ(out.failed, 0u);
  EXPECT_EQ(after.vram_alloc_failures, before.vram_alloc_failures);
  EXPECT_EQ(after.to_device_pages - before.to_device_pages, n);
  EXPECT_GE(after.evicted_chunks - before.evicted_chunks, 1u);
  EXPECT_GE(after.evicted_pages - before.evicted_pages, extra);
  EXPECT_EQ(after.to_system_pages - before.to_system_pages,
            after.evicted_pages - before.evicted_pages);
  EXPECT_EQ(after.copy_errors, before.copy_errors);

  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  const size_t evicted = count(st, HMMGPU_PAGE_RESIDENT);
  EXPECT_GE(evicted, extra);
  EXPECT_EQ(evicted + count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(vram("vram_used"), used);
  EXPECT_EQ(first_unmarked(m.get(), n, 15), -1);
}

// The debugfs file shows the values of the ioctl.
TEST_P(Counters, DebugfsMatchesIoctl) {
  const std::string path = std::string(kDebugfs) + "/hmmgpu/" + GetParam().node + "/counters";
  ASSERT_TRUE(ensure_mounted("debugfs", kDebugfs, path)) << path;
  const size_t n = 8;
  Mapping m(n * kPage);
  fill(m.get(), n, 13);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);  // something non-zero to compare

  hmmgpu_counters c = read();
  std::map<std::string, uint64_t> v;
  std::istringstream in(slurp(path));
  std::string name;
  uint64_t value = 0;
  while (in >> name >> value) v[name] = value;

  EXPECT_EQ(v.at("to_device_pages"), c.to_device_pages);
  EXPECT_EQ(v.at("to_device_bytes"), c.to_device_bytes);
  EXPECT_EQ(v.at("to_system_pages"), c.to_system_pages);
  EXPECT_EQ(v.at("to_system_bytes"), c.to_system_bytes);
  EXPECT_EQ(v.at("cpu_faults"), c.cpu_faults);
  EXPECT_EQ(v.at("fault_around_pages"), c.fault_around_pages);
  EXPECT_EQ(v.at("copy_batches"), c.copy_batches);
  EXPECT_EQ(v.at("copy_errors"), c.copy_errors);
  EXPECT_EQ(v.at("vram_alloc_failures"), c.vram_alloc_failures);
  EXPECT_EQ(v.at("device_faults"), c.device_faults);
  EXPECT_EQ(v.at("fault_replays"), c.fault_replays);
  EXPECT_EQ(v.at("fault_cancels"), c.fault_cancels);
  EXPECT_EQ(v.at("evicted_chunks"), c.evicted_chunks);
  EXPECT_EQ(v.at("evicted_pages"), c.evicted_pages);
  EXPECT_EQ(v.at("evicted_bytes"), c.evicted_bytes);
  EXPECT_EQ(v.at("fault_batches"), c.fault_batches);
  EXPECT_EQ(v.at("fault_duplicates"), c.fault_duplicates);
  EXPECT_EQ(v.at("prefetched_pages"), c.prefetched_pages);
  EXPECT_EQ(v.at("remote_mapped_pages"), c.remote_mapped_pages);
  EXPECT_EQ(v.at("thrashing_events"), c.thrashing_events);
  EXPECT_EQ(v.at("peer_to_device_pages"), c.peer_to_device_pages);
  EXPECT_EQ(v.at("peer_to_device_bytes"), c.peer_to_device_bytes);
  EXPECT_EQ(v.at("tlb_invalidates"), c.tlb_invalidates);
  EXPECT_EQ(v.at("fault_dropped"), c.fault_dropped);
  EXPECT_EQ(v.at("num_channels"), c.num_channels);
  for (uint32_t i = 0; i < c.num_channels; i++)
    EXPECT_EQ(v.at("channel" + std::to_string(i) + "_busy_ns"), c.channel_busy_ns[i]);
  EXPECT_GE(c.to_device_pages, n);
}

// The 1.2/1.3 layout, a prefix of today's.
struct CountersV1 {
  std::array<uint8_t, HMMGPU_COUNTERS_SIZE_V1> bytes;
};
// A layout from a later version: today's and 64 bytes more.
struct CountersNext {
  hmmgpu_counters now;
  std::array<uint64_t, 8> later;
};
constexpr unsigned long kGetCountersV1 =
    _IOWR(HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), CountersV1);
constexpr unsigned long kGetCountersNext =
    _IOWR(HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), CountersNext);
constexpr unsigned long kGetCountersShort =
    _IOWR(HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), uint64_t[8]);

// A program built against an older header gets the counters its structure
// holds and nothing written past it; a newer one's is accepted when its
// unknown tail is zero (E2BIG otherwise); a structure shorter than the
// first version's is refused.
TEST_P(Counters, SizeVersioned) {
  const size_t n = 4;
  Mapping m(n * kPage);
  fill(m.get(), n, 21);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);
  const hmmgpu_counters now = read();

  struct {
    CountersV1 v1;
    std::array<uint8_t, 64> guard;
  } old{};
  old.guard.fill(0xa5);
  ASSERT_EQ(xioctl(fd_.get(), kGetCountersV1, &old.v1), 0);
  hmmgpu_counters prefix{};
  std::memcpy(&prefix, old.v1.bytes.data(), HMMGPU_COUNTERS_SIZE_V1);
  EXPECT_EQ(prefix.to_device_pages, now.to_device_pages);
  EXPECT_EQ(prefix.num_channels, now.num_channels);
  for (uint8_t b : old.guard) ASSERT_EQ(b, 0xa5);

  CountersNext next{};
  ASSERT_EQ(xioctl(fd_.get(), kGetCountersNext, &next), 0);
  EXPECT_EQ(next.now.to_device_pages, now.to_device_pages);
  EXPECT_EQ(next.now.evicted_bytes, next.now.evicted_pages * kPage);
  for (uint64_t w : next.later) EXPECT_EQ(w, 0U);
  next = CountersNext{};
  next.later[3] = 1;
  EXPECT_EQ(xioctl(fd_.get(), kGetCountersNext, &next), -E2BIG);

  std::array<uint64_t, 8> tiny{};
  EXPECT_EQ(xioctl(fd_.get(), kGetCountersShort, tiny.data()), -EINVAL);
}

// Undefined flags, non-zero reserved words and a bad pointer are refused.
TEST_P(Counters, BadInput) {
  hmmgpu_counters c{};
  c.flags = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &c), -EINVAL);
  c = hmmgpu_counters{};
  c.flags = 0x80000000U;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &c), -EINVAL);
  for (size_t i = 0; i < std::size(c.reserved); i++) {
    c = hmmgpu_counters{};
    c.reserved[i] = 1;
    EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &c), -EINVAL) << "reserved " << i;
  }
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, nullptr), -EFAULT);
  // Output fields given on input are ignored.
  c = hmmgpu_counters{};
  c.num_channels = 77;
  c.to_device_pages = ~0ULL;
  c.channel_busy_ns[30] = 5;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &c), 0);
  EXPECT_NE(c.num_channels, 77U);
  if (c.num_channels <= 30) {
    EXPECT_EQ(c.channel_busy_ns[30], 0U);
  }
}

// A migration and a CPU fault fire hmmgpu_migrate and hmmgpu_cpu_fault.
TEST_P(Counters, Tracepoints) {
  const std::string events = std::string(kTracing) + "/events/hmmgpu";
  ASSERT_TRUE(ensure_mounted("tracefs", kTracing, events)) << events;
  ASSERT_TRUE(exists(events + "/hmmgpu_migrate")) << events;
  ASSERT_TRUE(exists(events + "/hmmgpu_cpu_fault")) << events;
  ASSERT_TRUE(write_file(std::string(kTracing) + "/trace", ""));  // clear
  // Recording command names would hook sched_switch and sched_wakeup: a
  // text_poke() of the scheduler's hottest code, which QEMU's TCG does not
  // always make visible to the other vCPU in time (an int3 oops there).
  ASSERT_TRUE(write_file(std::string(kTracing) + "/options/record-cmd", "0"));
  ASSERT_TRUE(write_file(events + "/enable", "1"));

  const long w = std::max(window(), 1L);
  const auto n = static_cast<size_t>(w);
  Aligned a(n * kPage, n * kPage);
  fill(a.ptr, n, 14);
  int ret = to_dev(a.ptr, n * kPage);
  volatile char c = a.ptr[0];  // a CPU fault
  (void)c;
  write_file(events + "/enable", "0");
  write_file(std::string(kTracing) + "/options/record-cmd", "1");
  std::string trace = slurp(std::string(kTracing) + "/trace");

  ASSERT_EQ(ret, 0);
  EXPECT_NE(trace.find("hmmgpu_migrate:"), std::string::npos) << trace;
  EXPECT_NE(trace.find("hmmgpu_cpu_fault:"), std::string::npos) << trace;
  EXPECT_NE(trace.find(GetParam().node + " to_device"), std::string::npos) << trace;
}

// Counters under injected copy failures on the emulated GPU 0.
class CountersFault : public testing::Test, protected MigrateCalls {
 protected:
  void SetUp() override {
    if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
    auto d = emu_device(0);
    if (!d) GTEST_SKIP() << "no emulated GPU 0";
    ASSERT_EQ(d->attr("state"), "ready");
    fd_ = Fd(::open(d->dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  hmmgpu_counters read() {
    hmmgpu_counters c{};
    EXPECT_EQ(get_counters(fd_.get(), &c), 0);
    return c;
  }
};

// Copies failing in a MIGRATE to the device: copy_errors grows by exactly
// the pages reported COPY_FAILED, to_device_pages by the moved ones only.
TEST_F(CountersFault, MigrateToDeviceCopyErrors) {
  InjectionGuard injection(0);
  const size_t n = 1024;  // two batches, each split over the channels
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 16);
  hmmgpu_counters before = read();
  ASSERT_TRUE(control("fail-copies 0 2"));
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(m.get(), m.size(), &st), 0);
  hmmgpu_counters after = read();
  ASSERT_TRUE(injection.clear());

  const size_t failed = count(st, HMMGPU_PAGE_COPY_FAILED), moved = count(st, HMMGPU_PAGE_MIGRATED);
  ASSERT_GT(failed, 0u);
  ASSERT_GT(moved, 0u);
  EXPECT_EQ(failed + moved, n);
  EXPECT_EQ(after.copy_errors - before.copy_errors, failed);
  EXPECT_EQ(after.to_device_pages - before.to_device_pages, moved);
  EXPECT_EQ(after.to_device_bytes - before.to_device_bytes, moved * kPage);
  EXPECT_EQ(after.to_system_pages, before.to_system_pages);
  EXPECT_EQ(after.vram_alloc_failures, before.vram_alloc_failures);
  EXPECT_GE(after.copy_batches - before.copy_batches, 2u);

  // Only the moved pages come back; no error without injection.
  before = read();
  std::vector<uint8_t> back;
  ASSERT_EQ(to_sys(m.get(), m.size(), &back), 0);
  after = read();
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(back[pg],
              st[pg] == HMMGPU_PAGE_COPY_FAILED ? HMMGPU_PAGE_RESIDENT : HMMGPU_PAGE_MIGRATED)
        << "page " << pg;
  EXPECT_EQ(after.to_system_pages - before.to_system_pages, moved);
  EXPECT_EQ(after.copy_errors, before.copy_errors);
  EXPECT_EQ(first_bad(m.get(), n, 16), -1);
}

// A CPU fault whose copy back fails raises SIGBUS and counts one fault and
// one copy error and no page moved; the page keeps its data in VRAM.
TEST_F(CountersFault, CpuFaultCopyErrorSigbus) {
  ParamOverride window("fault_around_pages", "1");
  ASSERT_TRUE(window.ok());
  InjectionGuard injection(0);
  const size_t n = 8, k = 3;
  Mapping m(n * kPage);
  ASSERT_NE(m.get(), nullptr);
  fill(m.get(), n, 17);
  ASSERT_EQ(to_dev(m.get(), m.size()), 0);

  hmmgpu_counters before = read();
  ASSERT_TRUE(control("fail-copies 0 1"));
  const char* page = m.get() + k * kPage + 100;
  EXPECT_TRUE(in_child([page] { return read_raises_sigbus(page); }));
  hmmgpu_counters after = read();
  ASSERT_TRUE(injection.clear());

  EXPECT_EQ(after.cpu_faults - before.cpu_faults, 1u);
  EXPECT_EQ(after.copy_errors - before.copy_errors, 1u);
  EXPECT_EQ(after.to_system_pages, before.to_system_pages);
  EXPECT_EQ(after.fault_around_pages, before.fault_around_pages);

  before = read();
  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(m.get(), m.size(), &st), 0);
  after = read();
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);  // none came back with the fault
  EXPECT_EQ(after.to_system_pages - before.to_system_pages, n);
  EXPECT_EQ(after.copy_errors, before.copy_errors);
  EXPECT_EQ(first_bad(m.get(), n, 17), -1);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Devices, Counters, testing::ValuesIn(migrate_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Counters);
