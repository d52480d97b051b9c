// SPDX-License-Identifier: GPL-2.0
//
// Migration tests, run in the VM against the real module: HMMGPU_IOCTL_MIGRATE
// in both directions, CPU-fault migration back (with fault-around), and what
// mm does to device-resident pages (fork, mprotect, munmap, MADV_DONTNEED,
// exit). Every test runs on every device with HMMGPU_CAP_MIGRATE and checks
// the data after each round trip.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

using namespace hmmgpu::test;

namespace hmmgpu::test {
// Names the device in failure messages instead of dumping its bytes.
void PrintTo(const Device& d, std::ostream* os) { *os << d.node; }
}  // namespace hmmgpu::test

namespace {

std::string param_name(const testing::TestParamInfo<Device>& p) {
  return p.param.attr("backend") + "_" + p.param.node;
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

// A THP-backed range is split and moves page by page.
TEST_P(Migrate, TransparentHugePage) {
  const size_t huge = 2UL << 20, n = huge / kPage;
  Aligned a(huge, huge);
  ASSERT_EQ(madvise(a.ptr, huge, MADV_HUGEPAGE), 0);
  fill(a.ptr, n, 7);
  std::vector<uint8_t> st;
  ASSERT_EQ(to_dev(a.ptr, huge, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  ASSERT_EQ(to_sys(a.ptr, huge, &st), 0);
  EXPECT_EQ(count(st, HMMGPU_PAGE_MIGRATED), n);
  EXPECT_EQ(first_bad(a.ptr, n, 7), -1);
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

}  // namespace

INSTANTIATE_TEST_SUITE_P(Devices, Migrate, testing::ValuesIn(migrate_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Migrate);
