// SPDX-License-Identifier: GPL-2.0
//
// Compute tests, run in the VM against the real module and emulator: kernel
// launches (HMMGPU_IOCTL_LAUNCH, _WAIT, uapi 1.3) on the caller's memory,
// which the device reaches through its own page table, filled in by the
// driver's fault service and torn down by MMU notifiers.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "test_util.h"

namespace hmmgpu::test {
namespace {

uint64_t fnv1a(const void* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

class Compute : public testing::TestWithParam<Device> {
 public:
  // run() for helpers outside the fixture.
  int launch(uint32_t kernel, const void* x, const void* y, uint64_t count, uint64_t scalar,
             hmmgpu_launch* out) {
    return run(kernel, x, y, count, scalar, out);
  }

 protected:
  void SetUp() override {
    fd_ = Fd(::open(GetParam().dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  // A launch that waits; returns the ioctl's result, fills *out.
  int run(uint32_t kernel, const void* x, const void* y, uint64_t count, uint64_t scalar,
          hmmgpu_launch* out, uint32_t stream = 0) {
    hmmgpu_launch l{};
    l.flags = HMMGPU_LAUNCH_WAIT;
    l.kernel = kernel;
    l.stream = stream;
    l.count = count;
    l.x = reinterpret_cast<uintptr_t>(x);
    l.y = reinterpret_cast<uintptr_t>(y);
    l.scalar = scalar;
    int ret = xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l);
    *out = l;
    return ret;
  }
  Fd fd_;
};

// The device reports compute streams and contexts.
TEST_P(Compute, Info) {
  hmmgpu_info info{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  EXPECT_EQ(info.uapi_version >> 16, 1u);
  EXPECT_GE(info.uapi_version & 0xffff, 3u);
  EXPECT_GE(info.num_streams, 1u);
  EXPECT_GE(info.num_contexts, 1u);
  EXPECT_EQ(info.num_queues, 1 + info.num_channels + info.num_streams);
}

// FILL on fresh anonymous memory: the device faults, the driver maps the
// pages, the CPU sees the values; CHECKSUM of the same memory matches.
TEST_P(Compute, FillAndChecksumSystemMemory) {
  const size_t n = 64 * kPage / 4;  // 64 pages of u32
  Mapping m(64 * kPage);
  ASSERT_NE(m.get(), nullptr);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, n, 0xdeadbeef, &l), 0);
  ASSERT_EQ(l.error, 0);
  const auto* w = reinterpret_cast<const uint32_t*>(m.get());
  for (size_t i = 0; i < n; i++) ASSERT_EQ(w[i], 0xdeadbeefu) << i;

  m.get()[12345] = 7;
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(l.result, fnv1a(m.get(), m.size()));
}

// AXPY and SUM on data migrated to this device's VRAM: the device uses its
// own VRAM pages, the CPU gets the results back by faulting them in.
TEST_P(Compute, AxpyOnVramResidentData) {
  const size_t n = 32 * kPage / 4;
  Mapping x(n * 4), y(n * 4);
  auto* xf = reinterpret_cast<float*>(x.get());
  auto* yf = reinterpret_cast<float*>(y.get());
  for (size_t i = 0; i < n; i++) {
    xf[i] = static_cast<float>(i);
    yf[i] = 1.0F;
  }
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd_.get(), x.get(), x.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  ASSERT_EQ(count(st, HMMGPU_PAGE_MIGRATED), x.size() / kPage);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_AXPY_F32, x.get(), y.get(), n, f32_bits(2.0F), &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_F32, x.get(), nullptr, n, 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += static_cast<double>(static_cast<float>(i) + 2.0F);
  double got;
  std::memcpy(&got, &l.result, sizeof(got));
  EXPECT_EQ(got, sum);
  for (size_t i = 0; i < n; i++) ASSERT_EQ(xf[i], static_cast<float>(i) + 2.0F) << i;
}

// An address the process has not mapped: the launch ends with EFAULT and
// names the page; the device and the file keep working.
TEST_P(Compute, UnmappedAddressFaults) {
  Mapping m(4 * kPage);
  char* hole = m.get() + 2 * kPage;
  ASSERT_EQ(munmap(hole, kPage), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, 4 * kPage / 4, 1, &l), 0);
  EXPECT_EQ(l.error, EFAULT);
  EXPECT_EQ(l.fault_addr, reinterpret_cast<uintptr_t>(hole));
  // Pages before the hole were written (earlier waves complete).
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, 2 * kPage / 4, 2, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[0], 2u);
}

// A write to read-only memory faults with EFAULT; reading it works.
TEST_P(Compute, ReadOnlyMemory) {
  Mapping m(4 * kPage);
  std::memset(m.get(), 3, m.size());
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_EQ(l.result, fnv1a(m.get(), m.size()));
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, m.size() / 4, 1, &l), 0);
  EXPECT_EQ(l.error, EFAULT);
  EXPECT_EQ(static_cast<unsigned char>(m.get()[0]), 3);
}

// After munmap and a new mapping at the same address, the device sees the
// new pages: the notifier dropped the old translations (no stale TLB).
TEST_P(Compute, NoStaleTranslationAfterRemap) {
  Mapping m(16 * kPage);
  std::memset(m.get(), 1, m.size());
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  const uint64_t first = l.result;
  void* again = mmap(m.get(), m.size(), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  ASSERT_EQ(again, m.get());
  std::memset(m.get(), 2, m.size());
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_NE(l.result, first);
  EXPECT_EQ(l.result, fnv1a(m.get(), m.size()));
}

// After fork, the parent's write breaks COW: the device sees the parent's
// new page, not the page the child still shares.
TEST_P(Compute, ForkCowSeenByDevice) {
  Mapping m(8 * kPage);
  std::memset(m.get(), 5, m.size());
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  const uint64_t before = l.result;
  const char* p = m.get();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child's view stays the old data.
    _exit(fnv1a(p, 8 * kPage) == before ? 0 : 1);
  }
  std::memset(m.get(), 6, m.size());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, m.get(), nullptr, m.size(), 0, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_EQ(l.result, fnv1a(m.get(), m.size()));
  EXPECT_NE(l.result, before);
}

// mprotect(PROT_READ) drops the device's write permission: a device write
// then fails, a read still works, and the memory is unchanged.
TEST_P(Compute, MprotectRevokesDeviceWrite) {
  Mapping m(8 * kPage);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, m.size() / 4, 11, &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(mprotect(m.get(), m.size(), PROT_READ), 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, m.size() / 4, 12, &l), 0);
  EXPECT_EQ(l.error, EFAULT);
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, m.get(), nullptr, m.size() / 8, 0, &l), 0);
  EXPECT_EQ(l.error, 0);
  for (size_t i = 0; i < m.size() / 4; i++)
    ASSERT_EQ(reinterpret_cast<uint32_t*>(m.get())[i], 11u) << i;
}

// MADV_DONTNEED on pages the device wrote: the device then reads zeros.
TEST_P(Compute, DontneedSeenByDevice) {
  Mapping m(16 * kPage);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, m.size() / 4, 0x01010101, &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(madvise(m.get(), m.size(), MADV_DONTNEED), 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, m.get(), nullptr, m.size() / 8, 0, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_EQ(l.result, 0u);
}

// Distinct pages the device faulted on between two counter reads.
uint64_t distinct_faults(const hmmgpu_counters& before, const hmmgpu_counters& after) {
  return (after.device_faults - before.device_faults) -
         (after.fault_duplicates - before.fault_duplicates);
}

// A larger first touch (8 MiB, 2048 pages) from the device: every page is
// serviced, faulted or prefetched, and lands in this device's VRAM
// (fault_migrate), the CPU reads the values back, the fault counters moved.
TEST_P(Compute, LargeFirstTouchGoesToVram) {
  const size_t len = 8 << 20;
  Mapping m(len);
  hmmgpu_counters before{}, after{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &before), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, len / 4, 0x5a5a5a5a, &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
  EXPECT_GE(after.to_device_pages - before.to_device_pages, len / kPage);
  EXPECT_GE(distinct_faults(before, after) + after.prefetched_pages - before.prefetched_pages,
            len / kPage);
  EXPECT_GE(after.fault_batches - before.fault_batches, 1u);
  EXPECT_GE(after.fault_replays - before.fault_replays, 1u);
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd_.get(), m.get(), len, HMMGPU_MIGRATE_TO_SYSTEM, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), len / kPage);
  const auto* w = reinterpret_cast<const uint32_t*>(m.get());
  for (size_t i = 0; i < len / 4; i++) ASSERT_EQ(w[i], 0x5a5a5a5au) << i;
}

// HMMGPU_IOCTL_RESIDENCY of [p, p + len) on fd, all runs.
std::vector<hmmgpu_run> residency(int fd, const void* p, size_t len) {
  std::vector<hmmgpu_run> runs(len / kPage);
  hmmgpu_residency r{};
  r.addr = reinterpret_cast<uintptr_t>(p);
  r.length = len;
  r.runs = reinterpret_cast<uintptr_t>(runs.data());
  r.max_runs = static_cast<uint32_t>(runs.size());
  EXPECT_EQ(xioctl(fd, HMMGPU_IOCTL_RESIDENCY, &r), 0);
  EXPECT_EQ(r.next, r.addr + len);
  runs.resize(r.nruns);
  return runs;
}

uint32_t minor_of(const Device& d) { return std::stoul(d.node.substr(6)); }

// First touch by the device puts the pages in its VRAM and maps them there
// writable; brought back by the CPU they are in system memory and no longer
// mapped by the device. (Without prefetching, which would also bring the
// untouched half.)
TEST_P(Compute, ResidencyAfterFirstTouch) {
  ParamOverride no_prefetch("prefetch_threshold", "0");
  ASSERT_TRUE(no_prefetch.ok());
  Mapping m(16 * kPage);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, 8 * kPage / 4, 3, &l), 0);
  ASSERT_EQ(l.error, 0);
  auto runs = residency(fd_.get(), m.get(), m.size());
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].addr, reinterpret_cast<uintptr_t>(m.get()));
  EXPECT_EQ(runs[0].npages, 8u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_DEVICE));
  EXPECT_EQ(runs[0].device, minor_of(GetParam()));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_LOCAL));
  EXPECT_EQ(runs[0].flags, static_cast<uint32_t>(HMMGPU_RUN_WRITE));
  EXPECT_EQ(runs[1].npages, 8u);
  EXPECT_EQ(runs[1].location, static_cast<uint32_t>(HMMGPU_LOC_NONE));
  EXPECT_EQ(runs[1].mapping, static_cast<uint32_t>(HMMGPU_MAP_NONE));

  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[0], 3u);  // one CPU fault
  runs = residency(fd_.get(), m.get(), 8 * kPage);
  ASSERT_GE(runs.size(), 1u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_SYSTEM));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_NONE));
}

// With fault_migrate off, the device maps system memory where it lies,
// counted as remote mappings, and prefetches nothing.
TEST_P(Compute, RemoteMappingWithoutMigration) {
  ParamOverride policy("fault_migrate", "N");
  ASSERT_TRUE(policy.ok());
  Mapping m(8 * kPage);
  std::memset(m.get(), 4, m.size());
  hmmgpu_counters before{}, after{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &before), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_INCREMENT_U32, m.get(), nullptr, m.size() / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
  EXPECT_EQ(after.remote_mapped_pages - before.remote_mapped_pages, 8u);
  EXPECT_EQ(after.prefetched_pages, before.prefetched_pages);
  EXPECT_EQ(after.to_device_pages, before.to_device_pages);
  auto runs = residency(fd_.get(), m.get(), m.size());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].npages, 8u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_SYSTEM));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_SYSTEM));
  EXPECT_EQ(runs[0].flags, static_cast<uint32_t>(HMMGPU_RUN_WRITE));
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[0], 0x04040405u);
}

// HMMGPU_IOCTL_ADVISE of [p, p + len).
int advise(int fd, const void* p, size_t len, uint32_t advice) {
  hmmgpu_advise a{};
  a.addr = reinterpret_cast<uintptr_t>(p);
  a.length = len;
  a.advice = advice;
  return xioctl(fd, HMMGPU_IOCTL_ADVISE, &a);
}

// The other compute device, if there is one.
std::optional<Device> other_compute_device(const Device& self) {
  for (auto& d : compute_devices())
    if (d.node != self.node) return d;
  return std::nullopt;
}

// n u64 values 1..n in a fresh mapping, moved to the VRAM of the device of ofd.
std::unique_ptr<Mapping> sequence_on(int ofd, size_t n) {
  auto m = std::make_unique<Mapping>(n * 8);
  auto* v = reinterpret_cast<uint64_t*>(m->get());
  for (size_t i = 0; i < n; i++) v[i] = i + 1;
  std::vector<uint8_t> st;
  EXPECT_EQ(migrate(ofd, m->get(), m->size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), m->size() / kPage);
  return m;
}

// A device faulting on pages in its peer's VRAM moves them VRAM to VRAM
// (first touch from a peer), counted as peer migrations; results right.
TEST_P(Compute, PeerPagesMigrateOnFault) {
  auto other = other_compute_device(GetParam());
  if (!other) GTEST_SKIP() << "one compute device";
  Fd ofd(::open(other->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(ofd.valid());
  const size_t n = 8 * kPage / 8;
  auto m = sequence_on(ofd.get(), n);
  hmmgpu_counters before{}, after{}, obefore{}, oafter{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &before), 0);
  ASSERT_EQ(xioctl(ofd.get(), HMMGPU_IOCTL_GET_COUNTERS, &obefore), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, m->get(), nullptr, n, 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(l.result, n * (n + 1) / 2);
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
  ASSERT_EQ(xioctl(ofd.get(), HMMGPU_IOCTL_GET_COUNTERS, &oafter), 0);
  EXPECT_GE(after.peer_to_device_pages - before.peer_to_device_pages, 8u);
  EXPECT_EQ(oafter.to_system_pages, obefore.to_system_pages);  // not through system memory
  auto runs = residency(fd_.get(), m->get(), m->size());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_DEVICE));
  EXPECT_EQ(runs[0].device, minor_of(GetParam()));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_LOCAL));
}

// Accessed-by this device: pages in the peer's VRAM are mapped there (a
// peer mapping), not moved, and the results are right.
TEST_P(Compute, AccessedByMapsPeerVram) {
  auto other = other_compute_device(GetParam());
  if (!other) GTEST_SKIP() << "one compute device";
  Fd ofd(::open(other->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(ofd.valid());
  const size_t n = 8 * kPage / 8;
  auto m = sequence_on(ofd.get(), n);
  ASSERT_EQ(advise(fd_.get(), m->get(), m->size(), HMMGPU_ADVISE_ACCESSED_BY), 0);
  ParamOverride no_prefetch("prefetch_threshold", "0");  // neighbours stay out of the counts
  ASSERT_TRUE(no_prefetch.ok());
  hmmgpu_counters before{}, after{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &before), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, m->get(), nullptr, n, 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(l.result, n * (n + 1) / 2);
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
  EXPECT_EQ(after.peer_to_device_pages, before.peer_to_device_pages);
  EXPECT_EQ(after.remote_mapped_pages - before.remote_mapped_pages, 8u);
  auto runs = residency(fd_.get(), m->get(), m->size());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_DEVICE));
  EXPECT_EQ(runs[0].device, minor_of(*other));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_PEER));
}

// Runs of `runs` with location `loc`, as pages.
size_t pages_at(const std::vector<hmmgpu_run>& runs, uint32_t loc) {
  size_t n = 0;
  for (const auto& r : runs)
    if (r.location == loc) n += r.npages;
  return n;
}

// Preferred location CPU: the device maps system memory instead of
// migrating; unset, the next device fault migrates again.
TEST_P(Compute, AdvicePreferredCpu) {
  Mapping m(8 * kPage);
  std::memset(m.get(), 1, m.size());
  ASSERT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_PREFERRED_CPU), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_INCREMENT_U32, m.get(), nullptr, m.size() / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0);
  auto runs = residency(fd_.get(), m.get(), m.size());
  EXPECT_EQ(pages_at(runs, HMMGPU_LOC_SYSTEM), 8u);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_SYSTEM));

  ASSERT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_UNSET_PREFERRED), 0);
  // Drop the device's mapping: a migration there and back invalidates it.
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd_.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  ASSERT_EQ(migrate(fd_.get(), m.get(), m.size(), HMMGPU_MIGRATE_TO_SYSTEM, &st), 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_INCREMENT_U32, m.get(), nullptr, m.size() / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(pages_at(residency(fd_.get(), m.get(), m.size()), HMMGPU_LOC_DEVICE), 8u);
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[0], 0x01010103u);
}

// Accessed-by this device: mapped where it lies; another device's
// preferred location: same; preferred this device: migrates even with
// fault_migrate off.
TEST_P(Compute, AdviceAccessedByAndPreferredDevice) {
  Mapping a(4 * kPage), b(4 * kPage);
  std::memset(a.get(), 2, a.size());
  std::memset(b.get(), 2, b.size());
  ASSERT_EQ(advise(fd_.get(), a.get(), a.size(), HMMGPU_ADVISE_ACCESSED_BY), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, a.get(), nullptr, a.size() / 8, 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(pages_at(residency(fd_.get(), a.get(), a.size()), HMMGPU_LOC_SYSTEM), 4u);

  ParamOverride policy("fault_migrate", "N");
  ASSERT_TRUE(policy.ok());
  ASSERT_EQ(advise(fd_.get(), b.get(), b.size(), HMMGPU_ADVISE_PREFERRED_DEVICE), 0);
  ASSERT_EQ(run(HMMGPU_KERNEL_SUM_U64, b.get(), nullptr, b.size() / 8, 0, &l), 0);
  ASSERT_EQ(l.error, 0);
  auto runs = residency(fd_.get(), b.get(), b.size());
  EXPECT_EQ(pages_at(runs, HMMGPU_LOC_DEVICE), 4u);
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_LOCAL));
}

// Advice splits: preferring the CPU for [0, 8) and unsetting [2, 4)
// leaves pages 2 and 3 to migrate on a device fault, the rest mapped in
// system memory; advice is dropped at munmap.
TEST_P(Compute, AdviceSplitsAndIsDroppedAtMunmap) {
  Mapping m(8 * kPage);
  std::memset(m.get(), 3, m.size());
  ASSERT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_PREFERRED_CPU), 0);
  ASSERT_EQ(advise(fd_.get(), m.get() + 2 * kPage, 2 * kPage, HMMGPU_ADVISE_UNSET_PREFERRED), 0);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_INCREMENT_U32, m.get(), nullptr, m.size() / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0);
  auto runs = residency(fd_.get(), m.get(), m.size());
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].npages, 2u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_SYSTEM));
  EXPECT_EQ(runs[1].npages, 2u);
  EXPECT_EQ(runs[1].location, static_cast<uint32_t>(HMMGPU_LOC_DEVICE));
  EXPECT_EQ(runs[2].npages, 4u);
  EXPECT_EQ(runs[2].location, static_cast<uint32_t>(HMMGPU_LOC_SYSTEM));
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[2 * kPage / 4], 0x03030304u);

  // A new mapping at the same address has no advice: first touch migrates.
  void* at = m.get();
  void* again =
      mmap(at, m.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  ASSERT_EQ(again, at);
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, m.size() / 4, 5, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(pages_at(residency(fd_.get(), m.get(), m.size()), HMMGPU_LOC_DEVICE), 8u);
}

// Read-mostly is refused as unsupported; bad advice and unmapped ranges too.
TEST_P(Compute, AdviceErrors) {
  Mapping m(4 * kPage);
  EXPECT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_READ_MOSTLY), -EOPNOTSUPP);
  EXPECT_EQ(advise(fd_.get(), m.get(), m.size(), 0), -EINVAL);
  EXPECT_EQ(advise(fd_.get(), m.get(), m.size(), 8), -EINVAL);
  EXPECT_EQ(advise(fd_.get(), m.get() + 1, kPage, HMMGPU_ADVISE_PREFERRED_CPU), -EINVAL);
  EXPECT_EQ(advise(fd_.get(), m.get(), 0, HMMGPU_ADVISE_PREFERRED_CPU), -EINVAL);
  ASSERT_EQ(munmap(m.get() + 3 * kPage, kPage), 0);
  EXPECT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_PREFERRED_CPU), -EFAULT);
}

// Residency reports runs up to max_runs and says where to go on; an
// unmapped page ends the report with EFAULT; bad arguments are refused.
TEST_P(Compute, ResidencyLimitsAndErrors) {
  Mapping m(8 * kPage);
  for (size_t i = 0; i < 8; i += 2) m.get()[i * kPage] = 1;  // alternate present pages
  std::vector<hmmgpu_run> runs(3);
  hmmgpu_residency r{};
  r.addr = reinterpret_cast<uintptr_t>(m.get());
  r.length = m.size();
  r.runs = reinterpret_cast<uintptr_t>(runs.data());
  r.max_runs = 3;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &r), 0);
  EXPECT_EQ(r.nruns, 3u);
  EXPECT_EQ(r.next, r.addr + 3 * kPage);
  EXPECT_EQ(runs[1].location, static_cast<uint32_t>(HMMGPU_LOC_NONE));

  ASSERT_EQ(munmap(m.get() + 5 * kPage, kPage), 0);
  r.max_runs = 3;
  r.addr += 3 * kPage;
  r.length = 5 * kPage;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &r), -EFAULT);
  EXPECT_EQ(r.nruns, 2u);
  EXPECT_EQ(r.next, reinterpret_cast<uintptr_t>(m.get()) + 5 * kPage);

  hmmgpu_residency bad = r;
  bad.max_runs = 0;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &bad), -EINVAL);
  bad = r;
  bad.addr += 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &bad), -EINVAL);
  bad = r;
  bad.length = 0;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &bad), -EINVAL);
  bad = r;
  bad.reserved[0] = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &bad), -EINVAL);
  bad = r;
  bad.runs = 8;  // unwritable
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &bad), -EFAULT);
}

// A working set of `times` x the VRAM, streamed through the device twice:
// the faults move pages in, evicting the least recently used chunks back
// to system memory, and every result is right.
void oversubscribe(int fd, const Device& dev, size_t times) {
  const size_t len = std::stoull(dev.attr("vram_total")) * times;
  Mapping m(len);
  ASSERT_NE(m.get(), nullptr);
  auto* w = reinterpret_cast<uint32_t*>(m.get());
  for (size_t i = 0; i < len / 4; i++) w[i] = static_cast<uint32_t>(i * 2654435761U);
  hmmgpu_counters before{}, after{};
  ASSERT_EQ(xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, &before), 0);

  hmmgpu_launch l{};
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.kernel = HMMGPU_KERNEL_CHECKSUM;
  l.count = len;
  l.x = reinterpret_cast<uintptr_t>(m.get());
  ASSERT_EQ(xioctl(fd, HMMGPU_IOCTL_LAUNCH, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(l.result, fnv1a(m.get(), len));

  l = hmmgpu_launch{};
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
  l.count = len / 4;
  l.x = reinterpret_cast<uintptr_t>(m.get());
  l.scalar = 1;
  ASSERT_EQ(xioctl(fd, HMMGPU_IOCTL_LAUNCH, &l), 0);
  ASSERT_EQ(l.error, 0);
  ASSERT_EQ(xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
  EXPECT_GE(after.evicted_pages - before.evicted_pages, len / kPage);
  EXPECT_EQ(after.vram_alloc_failures, before.vram_alloc_failures);
  for (size_t i = 0; i < len / 4; i++)
    ASSERT_EQ(w[i], static_cast<uint32_t>(i * 2654435761U) + 1) << i;
}

// Twice the VRAM.
TEST_P(Compute, Oversubscription2x) { oversubscribe(fd_.get(), GetParam(), 2); }

// Four times the VRAM.
TEST_P(Compute, Oversubscription4x) { oversubscribe(fd_.get(), GetParam(), 4); }

// Two processes launch on one device at once, each in its own address
// space: each sees its own data.
TEST_P(Compute, TwoProcesses) {
  const std::string path = GetParam().dev_path();
  auto body = [path](uint32_t seed) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) return false;
    Mapping m(64 * kPage);
    auto* v = reinterpret_cast<uint64_t*>(m.get());
    uint64_t want = 0;
    for (size_t i = 0; i < m.size() / 8; i++) want += v[i] = i * seed;
    for (int round = 0; round < 10; round++) {
      hmmgpu_launch l{};
      l.flags = HMMGPU_LAUNCH_WAIT;
      l.kernel = HMMGPU_KERNEL_SUM_U64;
      l.count = m.size() / 8;
      l.x = reinterpret_cast<uintptr_t>(v);
      if (xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0 || l.error != 0 || l.result != want)
        return false;
    }
    return true;
  };
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(body(3) ? 0 : 1);
  EXPECT_TRUE(body(7));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// A process that exits with launches not waited for, one of them stalled
// on a page nobody will map in time, leaves the device healthy.
TEST_P(Compute, ExitWithPendingLaunches) {
  const std::string path = GetParam().dev_path();
  EXPECT_TRUE(in_child([path] {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    Mapping m(64 * kPage);
    for (uint32_t i = 0; i < 8; i++) {
      hmmgpu_launch l{};
      l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
      l.count = m.size() / 4;
      l.x = reinterpret_cast<uintptr_t>(m.get());
      l.scalar = 1;
      if (xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0) return false;
    }
    return true;  // exit without waiting
  }));
  Mapping m(kPage);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_FILL_U32, m.get(), nullptr, kPage / 4, 9, &l), 0);
  EXPECT_EQ(l.error, 0);
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[0], 9u);
}

// Asynchronous launches on every stream, then waits in reverse order;
// a fence is waited for once.
TEST_P(Compute, AsyncLaunchAndWait) {
  hmmgpu_info info{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  const size_t n = 8 * kPage / 8;
  std::vector<std::unique_ptr<Mapping>> bufs;
  std::vector<hmmgpu_launch> ls(info.num_streams);
  for (uint32_t s = 0; s < info.num_streams; s++) {
    bufs.push_back(std::make_unique<Mapping>(n * 8));
    auto* v = reinterpret_cast<uint64_t*>(bufs.back()->get());
    for (size_t i = 0; i < n; i++) v[i] = i * (s + 1);
    ls[s].kernel = HMMGPU_KERNEL_SUM_U64;
    ls[s].stream = s;
    ls[s].count = n;
    ls[s].x = reinterpret_cast<uintptr_t>(v);
    ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &ls[s]), 0);
    EXPECT_NE(ls[s].fence, 0u);
  }
  for (uint32_t s = info.num_streams; s-- > 0;) {
    hmmgpu_wait w{};
    w.stream = s;
    w.fence = ls[s].fence;
    w.timeout_ns = 30'000'000'000ULL;
    ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), 0);
    EXPECT_EQ(w.error, 0);
    EXPECT_EQ(w.result, (s + 1) * (n * (n - 1) / 2));
    EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), -ENOENT);
  }
}

// poll() reports the file readable once an asynchronous launch has
// completed, until it is waited for.
TEST_P(Compute, PollForCompletion) {
  Mapping m(64 * kPage);
  pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);  // nothing pending
  hmmgpu_launch l{};
  l.kernel = HMMGPU_KERNEL_FILL_U32;
  l.count = m.size() / 4;
  l.x = reinterpret_cast<uintptr_t>(m.get());
  l.scalar = 8;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
  ASSERT_EQ(poll(&p, 1, 30000), 1);
  EXPECT_EQ(p.revents & POLLIN, POLLIN);
  hmmgpu_wait w{};
  w.fence = l.fence;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), 0);  // returns at once
  EXPECT_EQ(w.error, 0);
  EXPECT_EQ(poll(&p, 1, 0), 0);
  EXPECT_EQ(reinterpret_cast<uint32_t*>(m.get())[m.size() / 4 - 1], 8u);
}

// munmap, mprotect and fork while kernels run on the memory: every
// launch ends (OK, or EFAULT for a page taken away), nothing crashes, and
// memory still mapped has the device's writes exactly once.
TEST_P(Compute, InvalidationRacesWithRunningKernels) {
  const size_t pages = 256;
  for (int round = 0; round < 3; round++) {
    Mapping m(pages * kPage);
    ASSERT_NE(m.get(), nullptr);
    std::memset(m.get(), 0, m.size());
    std::vector<hmmgpu_launch> ls(4);
    for (auto& l : ls) {
      l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
      l.count = m.size() / 4;
      l.x = reinterpret_cast<uintptr_t>(m.get());
      l.scalar = 1;
      ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    }
    char* tail = m.get() + (pages - 16) * kPage;
    if (round == 0) {
      ASSERT_EQ(munmap(tail, 16 * kPage), 0);
    } else if (round == 1) {
      ASSERT_EQ(mprotect(tail, 16 * kPage, PROT_READ), 0);
    } else {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) _exit(0);
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    size_t ok = 0;
    for (auto& l : ls) {
      hmmgpu_wait w{};
      w.fence = l.fence;
      w.timeout_ns = 60'000'000'000ULL;
      ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), 0) << "round " << round;
      if (w.error == 0) {
        ok++;
      } else {
        EXPECT_EQ(w.error, EFAULT) << "round " << round;
        EXPECT_GE(w.fault_addr, reinterpret_cast<uintptr_t>(tail));
      }
    }
    if (round == 2) {
      EXPECT_EQ(ok, ls.size());  // fork takes nothing away
    }
    // The pages before the tail: every launch ran over them exactly once
    // (a failed launch stops in its wave over the tail, after them).
    const auto* w = reinterpret_cast<const uint32_t*>(m.get());
    for (size_t i = 0; i < (pages - 16) * kPage / 4; i++)
      ASSERT_EQ(w[i], ls.size()) << "round " << round << " element " << i;
  }
}

// The device increments every word of a buffer twice the VRAM while the
// CPU adds to the last word of each page: evictions, device faults and CPU
// faults race on the same pages, and no update outside those shared words
// is lost or doubled.
TEST_P(Compute, EvictionRacesCpuFaults) {
  const size_t len = std::stoull(GetParam().attr("vram_total")) * 2;
  Mapping m(len);
  ASSERT_NE(m.get(), nullptr);
  std::memset(m.get(), 0, len);
  hmmgpu_launch l{};
  l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
  l.count = len / 4;
  l.x = reinterpret_cast<uintptr_t>(m.get());
  l.scalar = 1;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
  // Meanwhile the CPU adds 2 to the last word of every page.
  auto* w = reinterpret_cast<uint32_t*>(m.get());
  const size_t per_page = kPage / 4;
  for (size_t p = 0; p < len / kPage; p++) {
    std::atomic_ref<uint32_t> word(w[p * per_page + per_page - 1]);
    word.fetch_add(2);
  }
  hmmgpu_wait wt{};
  wt.fence = l.fence;
  wt.timeout_ns = 120'000'000'000ULL;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &wt), 0);
  ASSERT_EQ(wt.error, 0);
  for (size_t i = 0; i < len / 4; i++) {
    // The device's increment and the CPU's add to the same word are not
    // atomic with each other; every other word has exactly the device's.
    if (i % per_page == per_page - 1) {
      ASSERT_TRUE(w[i] == 3 || w[i] == 2 || w[i] == 1) << i;
    } else {
      ASSERT_EQ(w[i], 1u) << i;
    }
  }
}

// Two devices take turns on one buffer: each increment sees the other's.
TEST_P(Compute, TwoDevicesPingPong) {
  std::optional<Device> other;
  for (auto& d : compute_devices())
    if (d.node != GetParam().node) other = d;
  if (!other) GTEST_SKIP() << "one compute device";
  Fd ofd(::open(other->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(ofd.valid());
  Mapping m(32 * kPage);
  std::memset(m.get(), 0, m.size());
  for (int turn = 0; turn < 6; turn++) {
    hmmgpu_launch l{};
    l.flags = HMMGPU_LAUNCH_WAIT;
    l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
    l.count = m.size() / 4;
    l.x = reinterpret_cast<uintptr_t>(m.get());
    l.scalar = 1;
    ASSERT_EQ(xioctl(turn % 2 ? ofd.get() : fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    ASSERT_EQ(l.error, 0) << "turn " << turn;
  }
  const auto* w = reinterpret_cast<const uint32_t*>(m.get());
  for (size_t i = 0; i < m.size() / 4; i++) ASSERT_EQ(w[i], 6u) << i;
}

// A counter snapshot of the device of fd.
hmmgpu_counters counters(int fd) {
  hmmgpu_counters c{};
  EXPECT_EQ(xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, &c), 0);
  return c;
}

// FILL on the `len` bytes at p, not checked.
void fill(Compute* t, char* p, size_t len, uint32_t value) {
  hmmgpu_launch l{};
  ASSERT_EQ(t->launch(HMMGPU_KERNEL_FILL_U32, p, nullptr, len / 4, value, &l), 0);
  ASSERT_EQ(l.error, 0);
}

// Every u32 of the `len` bytes at p is value (read by the CPU, which
// takes the pages back from the device).
void expect_filled(const char* p, size_t len, uint32_t value) {
  const auto* w = reinterpret_cast<const uint32_t*>(p);
  for (size_t i = 0; i < len / 4; i++) ASSERT_EQ(w[i], value) << i;
}

// FILL on the `len` bytes at p, checked on the CPU.
void fill_and_check(Compute* t, char* p, size_t len, uint32_t value) {
  fill(t, p, len, value);
  expect_filled(p, len, value);
}

// First touch of a whole 2 MiB region: the density prefetcher moves and
// maps most pages before the device faults on them, so far fewer pages
// fault than the region has (with 64 KiB waves at 50%: the waves at pages
// 0, 32, 64, 128 and 256 fault), and faulted plus prefetched pages cover it.
TEST_P(Compute, FirstTouchPrefetches) {
  ParamOverride threshold("prefetch_threshold", "50");
  ASSERT_TRUE(threshold.ok());
  const size_t len = 2 << 20;
  Aligned a(len, len);
  const hmmgpu_counters before = counters(fd_.get());
  fill(this, a.ptr, len, 0x77);
  const hmmgpu_counters after = counters(fd_.get());
  const uint64_t faulted = distinct_faults(before, after);
  const uint64_t prefetched = after.prefetched_pages - before.prefetched_pages;
  EXPECT_GT(prefetched, len / kPage / 2);
  EXPECT_LT(faulted, len / kPage / 4);
  EXPECT_GE(faulted + prefetched, len / kPage);
  EXPECT_EQ(pages_at(residency(fd_.get(), a.ptr, len), HMMGPU_LOC_DEVICE), len / kPage);
  expect_filled(a.ptr, len, 0x77);
}

// With prefetch_threshold 0 every page of a first touch faults and nothing
// is prefetched.
TEST_P(Compute, PrefetchOff) {
  ParamOverride threshold("prefetch_threshold", "0");
  ASSERT_TRUE(threshold.ok());
  const size_t len = 1 << 20;
  Aligned a(len, 2 << 20);
  const hmmgpu_counters before = counters(fd_.get());
  fill_and_check(this, a.ptr, len, 0x78);
  const hmmgpu_counters after = counters(fd_.get());
  EXPECT_EQ(after.prefetched_pages, before.prefetched_pages);
  EXPECT_EQ(distinct_faults(before, after), len / kPage);
}

// The prefetcher stays inside the faulting VMAs: next to a PROT_NONE
// mapping and next to a hole in the same 2 MiB region, the launch works,
// and the PROT_NONE pages are neither populated nor mapped.
TEST_P(Compute, PrefetchStaysInVma) {
  const size_t region = 2 << 20, part = 64 * kPage;
  Aligned a(region, region);
  ASSERT_EQ(mprotect(a.ptr + part, part, PROT_NONE), 0);
  ASSERT_EQ(munmap(a.ptr + 2 * part, region - 2 * part), 0);
  fill_and_check(this, a.ptr, part, 0x79);
  auto runs = residency(fd_.get(), a.ptr + part, part);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_NONE));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_NONE));
}

// A wave whose faulting pages prefetch neighbours the device has mapped but
// that cannot move (here pages of a shared memory file: mm only moves
// anonymous pages): the attempt to move them unmaps them from the device,
// and they must be mapped again. Before, the device mapped pages 2-3 while
// the prefetch unmapped 0-1, then the other way round, for ever, and the
// launch never completed.
TEST_P(Compute, UnmovedPrefetchStaysMapped) {
  ParamOverride threshold("prefetch_threshold", "50");
  ASSERT_TRUE(threshold.ok());
  const size_t len = 4 * kPage;
  Fd file(memfd_create("hmmgpu-unmoved", MFD_CLOEXEC));
  ASSERT_TRUE(file.valid());
  std::vector<char> data(len);
  hmmgpu::test::fill(data.data(), 4, 0x7a);
  ASSERT_EQ(::pwrite(file.get(), data.data(), len, 0), static_cast<ssize_t>(len));
  Isolated a(2 << 20, 2 << 20);  // a 2 MiB-aligned place for the file's pages
  ASSERT_NE(a.ptr, nullptr);
  ASSERT_EQ(mmap(a.ptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, file.get(), 0), a.ptr);
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_CHECKSUM, a.ptr, nullptr, 2 * kPage, 0, &l), 0);  // maps 0-1
  ASSERT_EQ(l.error, 0);
  l = hmmgpu_launch{};
  l.kernel = HMMGPU_KERNEL_CHECKSUM;
  l.count = len;  // one wave over pages 0-3: faults on 2-3, prefetches 0-1
  l.x = reinterpret_cast<uintptr_t>(a.ptr);
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
  hmmgpu_wait w{};
  w.stream = l.stream;
  w.fence = l.fence;
  w.timeout_ns = 30'000'000'000ULL;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), 0) << "the launch never completed";
  EXPECT_EQ(w.error, 0);
  EXPECT_EQ(w.result, fnv1a(data.data(), len));
}

// Once the file has launched, a MIGRATE to the device also maps the pages
// it moved: the next launch on them takes no device fault.
TEST_P(Compute, MigrateMapsForLaunch) {
  Mapping warm(kPage);
  fill_and_check(this, warm.get(), kPage, 1);  // the file's device address space exists
  const size_t len = 64 * kPage;
  Mapping m(len);
  std::memset(m.get(), 9, len);
  std::vector<uint8_t> st;
  ASSERT_EQ(migrate(fd_.get(), m.get(), len, HMMGPU_MIGRATE_TO_DEVICE, &st), 0);
  ASSERT_EQ(count(st, HMMGPU_PAGE_MIGRATED), len / kPage);
  auto runs = residency(fd_.get(), m.get(), len);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_LOCAL));
  EXPECT_EQ(runs[0].flags, static_cast<uint32_t>(HMMGPU_RUN_WRITE));
  const hmmgpu_counters before = counters(fd_.get());
  hmmgpu_launch l{};
  ASSERT_EQ(run(HMMGPU_KERNEL_INCREMENT_U32, m.get(), nullptr, len / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0);
  EXPECT_EQ(counters(fd_.get()).device_faults, before.device_faults);
  for (size_t i = 0; i < len / 4; i++)
    ASSERT_EQ(reinterpret_cast<uint32_t*>(m.get())[i], 0x0909090au) << i;
}

// One round of a CPU/device ping-pong on the n pages at p: the CPU writes
// v into every word, the device increments them; not checked on the CPU.
void ping_pong_round(Compute* t, char* p, size_t n, uint32_t v) {
  auto* w = reinterpret_cast<uint32_t*>(p);
  for (size_t i = 0; i < n * kPage / 4; i++) w[i] = v;
  hmmgpu_launch l{};
  ASSERT_EQ(t->launch(HMMGPU_KERNEL_INCREMENT_U32, p, nullptr, n * kPage / 4, 1, &l), 0);
  ASSERT_EQ(l.error, 0) << "value " << v;
}

// Every word of the n pages at p is v.
void expect_words(const char* p, size_t n, uint32_t v) {
  const auto* w = reinterpret_cast<const uint32_t*>(p);
  for (size_t i = 0; i < n * kPage / 4; i++) ASSERT_EQ(w[i], v) << i;
}

// A buffer the CPU and the device write in turn, faster than
// thrash_lapse_ms: after thrash_threshold quick rounds each page is found
// thrashing (counted) and the device maps it in system memory instead of
// moving it; every result stays right.
TEST_P(Compute, ThrashingPagesMappedRemotely) {
  ParamOverride lapse("thrash_lapse_ms", "600000");
  ParamOverride pin("thrash_pin_ms", "600000");
  ParamOverride threshold("thrash_threshold", "3");
  ParamOverride no_prefetch("prefetch_threshold", "0");
  ASSERT_TRUE(lapse.ok() && pin.ok() && threshold.ok() && no_prefetch.ok());
  const size_t n = 8;
  Isolated a(n * kPage, 16 * kPage);
  const hmmgpu_counters before = counters(fd_.get());
  for (uint32_t round = 0; round < 6; round++) {
    ping_pong_round(this, a.ptr, n, 10 * round);
    expect_words(a.ptr, n, 10 * round + 1);  // the CPU takes the pages back
  }
  const hmmgpu_counters after = counters(fd_.get());
  EXPECT_EQ(after.thrashing_events - before.thrashing_events, n);
  EXPECT_GE(after.remote_mapped_pages - before.remote_mapped_pages, n);
  auto runs = residency(fd_.get(), a.ptr, n * kPage);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].location, static_cast<uint32_t>(HMMGPU_LOC_SYSTEM));
  EXPECT_EQ(runs[0].mapping, static_cast<uint32_t>(HMMGPU_MAP_SYSTEM));
}

// With thrash_threshold 0 the same ping-pong keeps moving the pages.
TEST_P(Compute, ThrashingDetectionOff) {
  ParamOverride lapse("thrash_lapse_ms", "600000");
  ParamOverride threshold("thrash_threshold", "0");
  ASSERT_TRUE(lapse.ok() && threshold.ok());
  const size_t n = 8;
  Isolated a(n * kPage, 16 * kPage);
  const hmmgpu_counters before = counters(fd_.get());
  for (uint32_t round = 0; round < 5; round++) {
    ping_pong_round(this, a.ptr, n, 10 * round);
    EXPECT_EQ(pages_at(residency(fd_.get(), a.ptr, n * kPage), HMMGPU_LOC_DEVICE), n);
    expect_words(a.ptr, n, 10 * round + 1);
  }
  EXPECT_EQ(counters(fd_.get()).thrashing_events, before.thrashing_events);
}

// HMMGPU_IOCTL_GET_ADVICE of [p, p + len) into *out.
int get_advice(int fd, const void* p, size_t len, hmmgpu_range_advice* out) {
  *out = hmmgpu_range_advice{};
  out->addr = reinterpret_cast<uintptr_t>(p);
  out->length = len;
  return xioctl(fd, HMMGPU_IOCTL_GET_ADVICE, out);
}

// GET_ADVICE reports what ADVISE set, for a whole range only: a preferred
// location shared by every page, the devices accessing every page.
TEST_P(Compute, AdviceQuery) {
  Mapping m(8 * kPage);
  const uint32_t me = minor_of(GetParam());
  hmmgpu_range_advice r{};
  ASSERT_EQ(get_advice(fd_.get(), m.get(), m.size(), &r), 0);
  EXPECT_EQ(r.preferred, static_cast<uint32_t>(HMMGPU_PREFERRED_NONE));
  EXPECT_EQ(r.accessed_by, 0u);

  ASSERT_EQ(advise(fd_.get(), m.get(), m.size(), HMMGPU_ADVISE_PREFERRED_DEVICE), 0);
  ASSERT_EQ(advise(fd_.get(), m.get(), 4 * kPage, HMMGPU_ADVISE_ACCESSED_BY), 0);
  ASSERT_EQ(get_advice(fd_.get(), m.get(), m.size(), &r), 0);
  EXPECT_EQ(r.preferred, static_cast<uint32_t>(HMMGPU_PREFERRED_DEVICE));
  EXPECT_EQ(r.preferred_device, me);
  EXPECT_EQ(r.accessed_by, 0u);  // only half of the range
  ASSERT_EQ(get_advice(fd_.get(), m.get() + kPage, 2 * kPage, &r), 0);
  EXPECT_EQ(r.accessed_by, 1ULL << me);

  ASSERT_EQ(advise(fd_.get(), m.get() + 6 * kPage, 2 * kPage, HMMGPU_ADVISE_PREFERRED_CPU), 0);
  ASSERT_EQ(get_advice(fd_.get(), m.get(), m.size(), &r), 0);
  EXPECT_EQ(r.preferred, static_cast<uint32_t>(HMMGPU_PREFERRED_NONE));  // mixed
  ASSERT_EQ(get_advice(fd_.get(), m.get() + 6 * kPage, 2 * kPage, &r), 0);
  EXPECT_EQ(r.preferred, static_cast<uint32_t>(HMMGPU_PREFERRED_CPU));
  EXPECT_EQ(r.preferred_device, 0u);

  EXPECT_EQ(get_advice(fd_.get(), m.get() + 1, kPage, &r), -EINVAL);
  EXPECT_EQ(get_advice(fd_.get(), m.get(), 0, &r), -EINVAL);
  hmmgpu_range_advice bad{};
  bad.addr = reinterpret_cast<uintptr_t>(m.get());
  bad.length = kPage;
  bad.flags = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_ADVICE, &bad), -EINVAL);
  bad.flags = 0;
  bad.reserved[2] = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_ADVICE, &bad), -EINVAL);
  ASSERT_EQ(munmap(m.get() + 7 * kPage, kPage), 0);
  EXPECT_EQ(get_advice(fd_.get(), m.get(), m.size(), &r), -EFAULT);
}

// Dropping a mapping the device uses costs a TLB invalidation, counted.
TEST_P(Compute, TlbInvalidatesCounted) {
  Mapping m(8 * kPage);
  fill(this, m.get(), m.size(), 3);
  const hmmgpu_counters before = counters(fd_.get());
  ASSERT_EQ(madvise(m.get(), m.size(), MADV_DONTNEED), 0);
  EXPECT_GE(counters(fd_.get()).tlb_invalidates - before.tlb_invalidates, 1u);
}

// Evicting a chunk the device maps costs one TLB invalidation for the
// chunk, not one per page (mm unmaps the pages one by one): the driver
// unmaps the chunk from the context first. The data stays right.
TEST_P(Compute, EvictionInvalidatesOncePerChunk) {
  const size_t vram = std::stoull(GetParam().attr("vram_total"));
  Mapping a(vram), b(vram / 2);
  fill(this, a.get(), a.size(), 0xa);  // fills the VRAM, mapped by the device
  const hmmgpu_counters before = counters(fd_.get());
  fill(this, b.get(), b.size(), 0xb);  // evicts chunks of a
  const hmmgpu_counters after = counters(fd_.get());
  const uint64_t chunks = after.evicted_chunks - before.evicted_chunks;
  ASSERT_GE(chunks, 1u);
  EXPECT_LE(after.tlb_invalidates - before.tlb_invalidates, 2 * chunks + 8)
      << chunks << " chunks evicted";
  expect_filled(a.get(), a.size(), 0xa);
  expect_filled(b.get(), b.size(), 0xb);
}

// Bad launches and waits are rejected before anything runs.
TEST_P(Compute, BadInput) {
  hmmgpu_info info{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  Mapping m(kPage);
  auto base = [&] {
    hmmgpu_launch l{};
    l.kernel = HMMGPU_KERNEL_FILL_U32;
    l.count = 1;
    l.x = reinterpret_cast<uintptr_t>(m.get());
    return l;
  };
  hmmgpu_launch l = base();
  l.kernel = 0;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  l = base();
  l.kernel = 9;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  l = base();
  l.stream = info.num_streams;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  l = base();
  l.count = 0;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  l = base();
  l.flags = 2;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  l = base();
  l.reserved[3] = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), -EINVAL);
  // Misaligned for the element: the device rejects it, the launch reports EINVAL.
  l = base();
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.x += 1;
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
  EXPECT_EQ(l.error, EINVAL);
  hmmgpu_wait w{};
  w.fence = 12345678;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), -ENOENT);
  w.flags = 1;
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), -EINVAL);
}

std::string param_name(const testing::TestParamInfo<Device>& p) { return p.param.node; }

}  // namespace

INSTANTIATE_TEST_SUITE_P(Devices, Compute, testing::ValuesIn(compute_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Compute);

}  // namespace hmmgpu::test
