// SPDX-License-Identifier: GPL-2.0
//
// Failure-path tests, run in the VM against the real module and hmmgpu-emu
// with fault injection (emu/SPEC.md 8.1): failed copies on the CPU fault
// path and in HMMGPU_IOCTL_MIGRATE, a hung device, a lost device, and
// unloading the module while pages are resident. Every access that may raise
// SIGBUS runs in a forked child, which reports which page faulted.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csetjmp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

using namespace hmmgpu::test;

namespace {

// What a child saw when it compared pages of a mapping with a reference.
struct Touch {
  enum Outcome { kOk, kBadData, kSigbus, kOther } outcome = kOther;
  long page = -1;  // the page that faulted (kSigbus) or differed (kBadData)
  int status = 0;  // raw wait status
  double seconds = 0;
};

std::ostream& operator<<(std::ostream& os, const Touch& t) {
  static const char* const names[] = {"ok", "bad data", "SIGBUS", "other"};
  return os << names[t.outcome] << " page " << t.page << " wait status 0x" << std::hex << t.status
            << std::dec << " after " << t.seconds << " s";
}

sigjmp_buf g_jmp;
void* volatile g_fault_addr;

void on_sigbus(int /*sig*/, siginfo_t* si, void* /*ctx*/) {
  g_fault_addr = si->si_addr;
  siglongjmp(g_jmp, 1);
}

// In forked children, one per group, all running at once: read the pages
// of the group from base and compare each with ref.
std::vector<Touch> touch_groups(const char* base, const char* ref,
                                const std::vector<std::vector<size_t>>& groups) {
  std::vector<Touch> out(groups.size());
  size_t len = groups.size() * sizeof(long);
  auto* shared = static_cast<long*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) return out;
  auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> pids;
  for (size_t g = 0; g < groups.size(); g++) {
    shared[g] = -1;
    pid_t pid = fork();
    if (pid == 0) {
      alarm(60);
      struct sigaction sa {};
      sa.sa_sigaction = on_sigbus;
      sa.sa_flags = SA_SIGINFO;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGBUS, &sa, nullptr);
      for (size_t pg : groups[g]) {
        if (sigsetjmp(g_jmp, 1) != 0) {
          shared[g] = (static_cast<const char*>(g_fault_addr) - base) / static_cast<long>(kPage);
          _exit(Touch::kSigbus);
        }
        if (std::memcmp(base + pg * kPage, ref + pg * kPage, kPage) != 0) {
          shared[g] = static_cast<long>(pg);
          _exit(Touch::kBadData);
        }
      }
      _exit(Touch::kOk);
    }
    pids.push_back(pid);
  }
  for (size_t g = 0; g < groups.size(); g++) {
    Touch& t = out[g];
    if (pids[g] > 0 && waitpid(pids[g], &t.status, 0) == pids[g] && WIFEXITED(t.status) &&
        WEXITSTATUS(t.status) <= Touch::kSigbus)
      t.outcome = static_cast<Touch::Outcome>(WEXITSTATUS(t.status));
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.page = shared[g];
  }
  ::munmap(shared, len);
  return out;
}

// In a forked child, read `pages` of base and compare each with ref.
Touch touch(const char* base, const char* ref, const std::vector<size_t>& pages) {
  return touch_groups(base, ref, {pages})[0];
}

// A filled anonymous buffer with a reference copy of its contents.
struct Buffer {
  Buffer(size_t pages, uint64_t seed) : n(pages), map(pages * kPage), ref(pages * kPage) {
    fill(ref.data(), n, seed);
    if (map.get() != nullptr) std::memcpy(map.get(), ref.data(), n * kPage);
  }
  [[nodiscard]] long first_bad() const {
    for (size_t pg = 0; pg < n; pg++)
      if (std::memcmp(map.get() + pg * kPage, ref.data() + pg * kPage, kPage) != 0)
        return static_cast<long>(pg);
    return -1;
  }
  size_t n;
  Mapping map;
  std::vector<char> ref;
};

// A round trip through a device with a data check; true on success.
::testing::AssertionResult round_trip(const Device& d, uint64_t seed) {
  Fd fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ::testing::AssertionFailure() << "open " << d.node;
  const size_t n = 64;
  Buffer b(n, seed);
  std::vector<uint8_t> st;
  int ret = migrate(fd.get(), b.map.get(), n * kPage, HMMGPU_MIGRATE_TO_DEVICE, &st);
  if (ret != 0 || count(st, HMMGPU_PAGE_MIGRATED) != n)
    return ::testing::AssertionFailure() << d.node << ": to device " << ret << ", "
                                         << count(st, HMMGPU_PAGE_MIGRATED) << " migrated";
  ret = migrate(fd.get(), b.map.get(), n * kPage / 2, HMMGPU_MIGRATE_TO_SYSTEM, &st);
  if (ret != 0 || count(st, HMMGPU_PAGE_MIGRATED) != n / 2)
    return ::testing::AssertionFailure() << d.node << ": to system " << ret << ", "
                                         << count(st, HMMGPU_PAGE_MIGRATED) << " migrated";
  long bad = b.first_bad();  // the second half comes back by CPU faults
  if (bad != -1) return ::testing::AssertionFailure() << d.node << ": page " << bad << " differs";
  return ::testing::AssertionSuccess();
}

// Checks a MIGRATE in which some copies failed: every page either moved or
// reports COPY_FAILED, both kinds occur, and the returned counts agree with
// the per-page status. Returns {failed, moved}.
std::pair<size_t, size_t> expect_partly_failed(const std::vector<uint8_t>& st,
                                               const hmmgpu_migrate& out, size_t n) {
  const size_t failed = count(st, HMMGPU_PAGE_COPY_FAILED);
  const size_t moved = count(st, HMMGPU_PAGE_MIGRATED);
  EXPECT_GT(failed, 0u);
  EXPECT_GT(moved, 0u);
  EXPECT_EQ(failed + moved, n);
  EXPECT_EQ(out.migrated, moved);
  EXPECT_EQ(out.failed, failed);
  EXPECT_EQ(out.resident, 0u);
  return {failed, moved};
}

// Tests on one emulated GPU (DEVICE_INDEX 0) with fault injection.
class EmuFault : public testing::Test, protected MigrateCalls {
 protected:
  void SetUp() override {
    if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
    auto d = emu_device(0);
    if (!d) GTEST_SKIP() << "no emulated GPU 0";
    dev_ = *d;
    ASSERT_EQ(dev_.attr("state"), "ready");
    fd_ = Fd(::open(dev_.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  void TearDown() override {
    if (!dev_.node.empty()) {
      EXPECT_TRUE(control("clear 0"));
    }
  }
  [[nodiscard]] uint64_t vram_used() const { return std::stoull(dev_.attr("vram_used")); }
  Device dev_;
};

// A failed copy of the faulting page raises SIGBUS for that access only; the
// page stays in VRAM with its data, and reads back once copies work again.
TEST_F(EmuFault, CpuFaultCopyFailureSigbus) {
  ParamOverride window("fault_around_pages", "1");
  ASSERT_TRUE(window.ok());
  const size_t n = 16, k = 5;
  Buffer b(n, 21);
  ASSERT_NE(b.map.get(), nullptr);
  ASSERT_EQ(to_dev(b.map.get(), n * kPage), 0);

  ASSERT_TRUE(control("fail-copies 0 1"));
  Touch t = touch(b.map.get(), b.ref.data(), {k});
  EXPECT_EQ(t.outcome, Touch::kSigbus) << t;
  EXPECT_EQ(t.page, static_cast<long>(k)) << t;

  // The injected failure is used up: the other pages fault back fine.
  std::vector<size_t> others;
  for (size_t pg = 0; pg < n; pg++)
    if (pg != k) others.push_back(pg);
  t = touch(b.map.get(), b.ref.data(), others);
  EXPECT_EQ(t.outcome, Touch::kOk) << t;
  ASSERT_TRUE(control("clear 0"));
  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(b.map.get(), n * kPage, &st), 0);
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(st[pg], pg == k ? HMMGPU_PAGE_MIGRATED : HMMGPU_PAGE_RESIDENT) << "page " << pg;
  EXPECT_EQ(b.first_bad(), -1);
}

// Kernel log lines written from now on.
class KmsgReader {
 public:
  KmsgReader() : fd_(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
    if (fd_.valid()) ::lseek(fd_.get(), 0, SEEK_END);
  }
  [[nodiscard]] bool valid() const { return fd_.valid(); }
  std::string read_new() {
    std::string out;
    char rec[8192];
    for (;;) {
      ssize_t r = ::read(fd_.get(), rec, sizeof(rec));
      if (r < 0 && errno == EPIPE) continue;  // overwritten records
      if (r <= 0) break;
      out.append(rec, r);
    }
    return out;
  }

 private:
  Fd fd_;
};

// A CPU fault whose system page cannot be allocated returns VM_FAULT_OOM:
// no SIGBUS, mm retries the access, which succeeds once allocations work
// again (fail_page_alloc fails the first 20 of the faulting process).
TEST_F(EmuFault, CpuFaultAllocFailureRetries) {
  const std::string fpa = "/sys/kernel/debug/fail_page_alloc/";
  if (!read_file(fpa + "probability")) GTEST_SKIP() << "no fail_page_alloc";
  ParamOverride window("fault_around_pages", "1");
  ASSERT_TRUE(window.ok());
  const size_t n = 8, k = 4;
  Buffer b(n, 26);
  ASSERT_NE(b.map.get(), nullptr);
  ASSERT_EQ(to_dev(b.map.get(), n * kPage), 0);

  KmsgReader kmsg;
  ASSERT_TRUE(kmsg.valid());
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"task-filter", "Y"}, {"ignore-gfp-wait", "N"}, {"ignore-gfp-highmem", "N"},
      {"min-order", "0"},   {"verbose", "0"},         {"space", "0"},
      {"interval", "1"},    {"times", "20"},          {"probability", "100"}};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const auto& [name, value] : settings) {
    saved.emplace_back(name, read_file(fpa + name).value_or(""));
    ASSERT_TRUE(write_file(fpa + name, value)) << name;
  }
  const char* base = b.map.get();
  const char* ref = b.ref.data();
  bool ok = in_child([&] {
    if (!write_file("/proc/self/make-it-fail", "1")) return false;
    return std::memcmp(base + k * kPage, ref + k * kPage, kPage) == 0;
  });
  for (auto it = saved.rbegin(); it != saved.rend(); ++it) write_file(fpa + it->first, it->second);
  EXPECT_TRUE(ok) << "the faulting child failed or read wrong data";
  EXPECT_NE(kmsg.read_new().find("VM_FAULT_OOM"), std::string::npos)
      << "the fault never returned VM_FAULT_OOM";

  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(b.map.get(), n * kPage, &st), 0);
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(st[pg], pg == k ? HMMGPU_PAGE_RESIDENT : HMMGPU_PAGE_MIGRATED) << "page " << pg;
  EXPECT_EQ(b.first_bad(), -1);
}

// A failure in the fault-around window: a window of 128 pages is copied as
// two lists of 64 (one per channel); the one injected failure stops one of
// them, whose pages stay in VRAM. The faulting page (the last) gets SIGBUS
// only when its own half failed; otherwise its half comes back.
TEST_F(EmuFault, FaultAroundNeighbourFailure) {
  hmmgpu_info info{};
  ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  if (info.num_channels < 2) GTEST_SKIP() << "one channel";
  ParamOverride window("fault_around_pages", "128");
  ASSERT_TRUE(window.ok());
  const size_t n = 128, half = n / 2;
  Aligned a(n * kPage, n * kPage);
  std::vector<char> ref(n * kPage);
  fill(ref.data(), n, 22);
  std::memcpy(a.ptr, ref.data(), n * kPage);
  ASSERT_EQ(to_dev(a.ptr, n * kPage), 0);

  ASSERT_TRUE(control("fail-copies 0 1"));
  Touch t = touch(a.ptr, ref.data(), {n - 1});
  ASSERT_TRUE(t.outcome == Touch::kSigbus || t.outcome == Touch::kOk) << t;
  if (t.outcome == Touch::kSigbus) {
    EXPECT_EQ(t.page, static_cast<long>(n - 1));
  }
  ASSERT_TRUE(control("clear 0"));

  // The failed half is still in VRAM, the other half came back.
  size_t failed_from = t.outcome == Touch::kSigbus ? half : 0;
  std::vector<uint8_t> st;
  ASSERT_EQ(to_sys(a.ptr, n * kPage, &st), 0);
  for (size_t pg = 0; pg < n; pg++) {
    bool failed = pg >= failed_from && pg < failed_from + half;
    EXPECT_EQ(st[pg], failed ? HMMGPU_PAGE_MIGRATED : HMMGPU_PAGE_RESIDENT)
        << "page " << pg << " " << t;
  }
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(std::memcmp(a.ptr + pg * kPage, ref.data() + pg * kPage, kPage), 0) << "page " << pg;
}

// A copy failure during MIGRATE to the device: the failed pages report
// COPY_FAILED and stay in system memory, the rest move, the counts add up.
TEST_F(EmuFault, MigrateToDeviceCopyFailure) {
  const size_t n = 1024;  // two batches, each split over the channels
  Buffer b(n, 23);
  ASSERT_NE(b.map.get(), nullptr);
  uint64_t before = vram_used();
  ASSERT_TRUE(control("fail-copies 0 1"));
  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(to_dev(b.map.get(), n * kPage, &st, &out), 0);
  const auto [failed, moved] = expect_partly_failed(st, out, n);
  EXPECT_EQ(vram_used(), before + moved * kPage);  // no VRAM kept for failed pages

  // The failed pages are still in system memory, the others on the device.
  std::vector<uint8_t> back;
  ASSERT_EQ(to_sys(b.map.get(), n * kPage, &back), 0);
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(back[pg],
              st[pg] == HMMGPU_PAGE_COPY_FAILED ? HMMGPU_PAGE_RESIDENT : HMMGPU_PAGE_MIGRATED)
        << "page " << pg;
  EXPECT_EQ(b.first_bad(), -1);
  EXPECT_EQ(vram_used(), before);
}

// A copy failure during MIGRATE to system memory: the failed pages report
// COPY_FAILED and stay in VRAM with their data, the rest move.
TEST_F(EmuFault, MigrateToSystemCopyFailure) {
  const size_t n = 1024;
  Buffer b(n, 24);
  ASSERT_NE(b.map.get(), nullptr);
  uint64_t before = vram_used();
  ASSERT_EQ(to_dev(b.map.get(), n * kPage), 0);
  ASSERT_TRUE(control("fail-copies 0 1"));
  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(to_sys(b.map.get(), n * kPage, &st, &out), 0);
  const auto [failed, moved] = expect_partly_failed(st, out, n);
  EXPECT_EQ(vram_used(), before + failed * kPage);

  ASSERT_TRUE(control("clear 0"));
  std::vector<uint8_t> back;
  ASSERT_EQ(to_sys(b.map.get(), n * kPage, &back), 0);
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(back[pg],
              st[pg] == HMMGPU_PAGE_COPY_FAILED ? HMMGPU_PAGE_MIGRATED : HMMGPU_PAGE_RESIDENT)
        << "page " << pg;
  EXPECT_EQ(b.first_bad(), -1);
  EXPECT_EQ(vram_used(), before);
}

// Every copy failing: MIGRATE fails with EIO, nothing moves, data intact.
TEST_F(EmuFault, MigrateAllCopiesFail) {
  const size_t n = 8;
  Buffer b(n, 25);
  ASSERT_NE(b.map.get(), nullptr);
  uint64_t before = vram_used();
  ASSERT_TRUE(control("fail-copies 0 1000"));
  std::vector<uint8_t> st;
  EXPECT_EQ(to_dev(b.map.get(), n * kPage, &st), -EIO);
  EXPECT_EQ(count(st, HMMGPU_PAGE_COPY_FAILED), n);
  EXPECT_EQ(vram_used(), before);
  EXPECT_EQ(b.first_bad(), -1);
}

// What a process does to its VRAM pages while an unbind evicts them.
enum class DuringEviction { kExit, kMunmap };

// A child moves a buffer of its own (its own VMA and anon_vma, shared with
// no other process) to GPU 1; GPU 1 hangs and is unbound, and while the
// unbind's eviction waits for its first copy (up to the fence timeout) the
// child exits (killed) or unmaps the buffer. The eviction has unmapped the
// pages and then maps the zero-filled pages back through each page's
// anon_vma, which the exit or the munmap would free in between if the
// eviction did not hold them off (on the debug kernel KASAN reports the use
// after free, and the VM run fails). GPU 1 is bound again afterwards.
::testing::AssertionResult evict_during(DuringEviction what) {
  auto gpu1 = emu_device(1);
  if (!gpu1 || gpu1->attr("state") != "ready")
    return ::testing::AssertionFailure() << "GPU 1 is not ready";
  const std::filesystem::path pci = gpu1->parent();
  const std::string bdf = pci.filename().string();
  std::error_code ec;
  const std::string drv = std::filesystem::read_symlink(pci / "driver", ec).filename().string();
  if (ec) return ::testing::AssertionFailure() << pci << " has no driver";
  ParamOverride timeout("fence_timeout_ms", "1500");
  if (!timeout.ok()) return ::testing::AssertionFailure() << "cannot set fence_timeout_ms";

  constexpr size_t kPages = 64;
  int ready[2], go[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0)
    return ::testing::AssertionFailure() << "pipe2: " << strerror(errno);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
  if (pid == 0) {
    ::close(ready[0]);
    ::close(go[1]);
    Mapping m(kPages * kPage);
    fill(m.get(), kPages, 71);
    Fd fd(::open(gpu1->dev_path().c_str(), O_RDWR | O_CLOEXEC));
    std::vector<uint8_t> st;
    const char ok =
        fd.valid() &&
        migrate(fd.get(), m.get(), kPages * kPage, HMMGPU_MIGRATE_TO_DEVICE, &st) == 0 &&
        count(st, HMMGPU_PAGE_MIGRATED) == kPages;
    char c = 0;
    if (::write(ready[1], &ok, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(1);
    ::_exit(::munmap(m.get(), kPages * kPage) == 0 ? 0 : 2);  // kMunmap only
  }
  ::close(ready[1]);
  ::close(go[0]);
  Fd ready_rd(ready[0]), go_wr(go[1]);
  char ok = 0;
  if (::read(ready_rd.get(), &ok, 1) != 1 || ok != 1) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return ::testing::AssertionFailure() << "the child could not move its pages to " << gpu1->node;
  }

  if (!control("hang 1")) return ::testing::AssertionFailure() << "cannot hang GPU 1";
  const auto start = std::chrono::steady_clock::now();
  bool unbound = false;
  std::thread unbind([&] { unbound = write_file("/sys/bus/pci/drivers/" + drv + "/unbind", bdf); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  if (what == DuringEviction::kExit) {
    ::kill(pid, SIGKILL);
  } else {
    EXPECT_EQ(::write(go_wr.get(), "g", 1), 1);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  if (what == DuringEviction::kExit) {
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << std::hex << status;
  } else {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << std::hex << status;
  }
  unbind.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(unbound);
  EXPECT_GE(seconds, 1.0) << "the unbind did not wait for the hung copy";

  if (!control("unhang 1")) return ::testing::AssertionFailure() << "cannot unhang GPU 1";
  if (!write_file("/sys/bus/pci/drivers/" + drv + "/bind", bdf))
    return ::testing::AssertionFailure() << "cannot bind " << bdf << " again";
  auto back = emu_device(1);
  if (!back) return ::testing::AssertionFailure() << bdf << " did not come back after bind";
  EXPECT_EQ(back->attr("state"), "ready");
  return round_trip(*back, 72);
}

TEST(HungDevice, ProcessExitsDuringUnbindEviction) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  if (!emu_device(1)) GTEST_SKIP() << "no emulated GPU 1";
  EXPECT_TRUE(evict_during(DuringEviction::kExit));
}

TEST(HungDevice, ProcessUnmapsDuringUnbindEviction) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  if (!emu_device(1)) GTEST_SKIP() << "no emulated GPU 1";
  EXPECT_TRUE(evict_during(DuringEviction::kMunmap));
}

// A fault-around window over two devices, one of them hung: the faulting
// page of the working device comes back (after the hung one's copy timed
// out), the hung device's neighbours stay in its VRAM.
TEST(HungDevice, FaultAroundAcrossDevices) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  auto gpu0 = emu_device(0), gpu1 = emu_device(1);
  if (!gpu0 || !gpu1) GTEST_SKIP() << "needs emulated GPUs 0 and 1";
  ASSERT_EQ(gpu0->attr("state"), "ready");
  ASSERT_EQ(gpu1->attr("state"), "ready");
  ParamOverride timeout("fence_timeout_ms", "300");
  ASSERT_TRUE(timeout.ok());
  ParamOverride window("fault_around_pages", "16");
  ASSERT_TRUE(window.ok());

  const size_t n = 16, half = n / 2, k = 12;
  Aligned a(n * kPage, n * kPage);
  std::vector<char> ref(n * kPage);
  fill(ref.data(), n, 35);
  std::memcpy(a.ptr, ref.data(), n * kPage);
  Fd fd0(::open(gpu0->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  Fd fd1(::open(gpu1->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd0.valid() && fd1.valid());
  ASSERT_EQ(migrate(fd0.get(), a.ptr, half * kPage, HMMGPU_MIGRATE_TO_DEVICE), 0);
  ASSERT_EQ(migrate(fd1.get(), a.ptr + half * kPage, half * kPage, HMMGPU_MIGRATE_TO_DEVICE), 0);

  ASSERT_TRUE(control("hang 0"));
  Touch t = touch(a.ptr, ref.data(), {k});
  EXPECT_EQ(t.outcome, Touch::kOk) << t;
  std::string state = gpu0->attr("state");
  EXPECT_TRUE(state == "halted" || state == "lost") << state;
  EXPECT_EQ(gpu1->attr("state"), "ready");

  std::vector<uint8_t> st;
  EXPECT_EQ(migrate(fd1.get(), a.ptr, n * kPage, HMMGPU_MIGRATE_TO_SYSTEM, &st), -EIO);
  for (size_t pg = 0; pg < n; pg++)
    EXPECT_EQ(st[pg], pg < half ? HMMGPU_PAGE_COPY_FAILED : HMMGPU_PAGE_RESIDENT) << "page " << pg;
  for (size_t pg = half; pg < n; pg++)
    EXPECT_EQ(std::memcmp(a.ptr + pg * kPage, ref.data() + pg * kPage, kPage), 0) << "page " << pg;
  EXPECT_TRUE(round_trip(*gpu1, 36));
  EXPECT_TRUE(control("unhang 0"));
}

// A hung device: the fault on its page ends in SIGBUS after the fence
// timeout, the device is marked halted or lost, the others keep working.
TEST(HungDevice, FaultSigbusOthersWork) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  auto gpu1 = emu_device(1);
  if (!gpu1) GTEST_SKIP() << "no emulated GPU 1";
  ASSERT_EQ(gpu1->attr("state"), "ready");
  ParamOverride timeout("fence_timeout_ms", "300");
  ASSERT_TRUE(timeout.ok());
  ParamOverride window("fault_around_pages", "1");
  ASSERT_TRUE(window.ok());

  const size_t n = 8, k = 3;
  Buffer b(n, 31);
  ASSERT_NE(b.map.get(), nullptr);
  Fd fd1(::open(gpu1->dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd1.valid());
  ASSERT_EQ(migrate(fd1.get(), b.map.get(), n * kPage, HMMGPU_MIGRATE_TO_DEVICE), 0);
  ASSERT_TRUE(control("hang 1"));
  // Four processes fault on pages 0..3 at once while this one moves pages
  // 4..7 back through the dead device's engine.
  std::vector<uint8_t> mst;
  int mret = 1;
  std::thread mover([&] {
    mret = migrate(fd1.get(), b.map.get() + 4 * kPage, 4 * kPage, HMMGPU_MIGRATE_TO_SYSTEM, &mst);
  });
  auto touches = touch_groups(b.map.get(), b.ref.data(), {{0}, {1}, {2}, {3}});
  mover.join();
  // It failed in the copy (EIO) or found the device lost already (ENODEV).
  EXPECT_TRUE(mret == -EIO || mret == -ENODEV) << mret;
  EXPECT_TRUE(count(mst, HMMGPU_PAGE_COPY_FAILED) == 4 || count(mst, 0xff) == 4);
  for (size_t i = 0; i < touches.size(); i++) {
    const Touch& t = touches[i];
    EXPECT_EQ(t.outcome, Touch::kSigbus) << t;
    EXPECT_EQ(t.page, static_cast<long>(i)) << t;
    EXPECT_GE(t.seconds, 0.3) << t;
    EXPECT_LT(t.seconds, 10.0) << t;
  }
  std::string state = gpu1->attr("state");
  EXPECT_TRUE(state == "halted" || state == "lost") << state;

  for (const auto& d : migrate_devices()) {
    if (d.node == gpu1->node) continue;
    // Moving the dead device's pages back through a working device fails
    // with EIO (not ENODEV: this file's device is fine), the pages stay.
    Fd fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    std::vector<uint8_t> st;
    EXPECT_EQ(migrate(fd.get(), b.map.get(), n * kPage, HMMGPU_MIGRATE_TO_SYSTEM, &st), -EIO)
        << d.node;
    EXPECT_EQ(count(st, HMMGPU_PAGE_COPY_FAILED), n) << d.node;
    EXPECT_EQ(d.attr("state"), "ready");
    EXPECT_TRUE(round_trip(d, 32));
  }
  // Other pages of the dead device fail too, never hang.
  EXPECT_EQ(migrate(fd1.get(), b.map.get(), n * kPage, HMMGPU_MIGRATE_TO_SYSTEM), -ENODEV);
  Touch t = touch(b.map.get(), b.ref.data(), {k + 1});
  EXPECT_EQ(t.outcome, Touch::kSigbus) << t;
  EXPECT_TRUE(control("unhang 1"));
}

// A device a child keeps pages on while the module is unloaded.
struct Resident {
  std::string path;  // its /dev node
  bool zeroed;       // its pages come back zero-filled (a dead device)
};

// rmmod hmmgpu; 0 or errno.
int unload_module() { return syscall(SYS_delete_module, "hmmgpu", O_NONBLOCK) == 0 ? 0 : errno; }

// insmod $HMMGPU_MODULE $HMMGPU_MODULE_PARAMS; 0 or errno.
int reload_module() {
  const char* module = std::getenv("HMMGPU_MODULE");
  const char* params = std::getenv("HMMGPU_MODULE_PARAMS");
  Fd ko(::open(module != nullptr ? module : "", O_RDONLY | O_CLOEXEC));
  if (!ko.valid()) return errno;
  return syscall(SYS_finit_module, ko.get(), params != nullptr ? params : "", 0) == 0 ? 0 : errno;
}

// A child prefetches a buffer to each device of `res`, closes the files and
// keeps the mappings; then `before` runs and the module is unloaded; then
// the child checks that every page is ordinary memory again, with its data
// (or zero-filled where `zeroed`). Leaves the module unloaded.
::testing::AssertionResult unload_with_resident(const std::vector<Resident>& res,
                                                const std::function<bool()>& before) {
  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)
    return ::testing::AssertionFailure() << "pipe2";
  const size_t n = 64;
  pid_t pid = fork();
  if (pid == 0) {
    ::close(ready[0]);
    ::close(go[1]);
    std::vector<std::unique_ptr<Buffer>> bufs;
    for (size_t i = 0; i < res.size(); i++) {
      bufs.push_back(std::make_unique<Buffer>(n, 40 + i));
      Fd fd(::open(res[i].path.c_str(), O_RDWR | O_CLOEXEC));
      std::vector<uint8_t> st;
      if (!fd.valid() ||
          migrate(fd.get(), bufs[i]->map.get(), n * kPage, HMMGPU_MIGRATE_TO_DEVICE, &st) != 0 ||
          count(st, HMMGPU_PAGE_MIGRATED) != n)
        _exit(2);
    }
    char c = 1;
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(3);
    // The module is gone: a fault on a device page would be fatal here.
    std::vector<char> zero(kPage);
    for (size_t i = 0; i < res.size(); i++) {
      for (size_t pg = 0; pg < n; pg++) {
        const char* want = res[i].zeroed ? zero.data() : bufs[i]->ref.data() + pg * kPage;
        if (std::memcmp(bufs[i]->map.get() + pg * kPage, want, kPage) != 0) _exit(10 + i);
      }
    }
    _exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  if (pid < 0) return ::testing::AssertionFailure() << "fork";
  char c = 0;
  bool child_ready = read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  bool before_ok = child_ready && before();
  int unload = before_ok ? unload_module() : -1;
  EXPECT_EQ(write(go[1], &c, 1), child_ready ? 1 : -1);
  ::close(go[1]);
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return ::testing::AssertionFailure() << "waitpid";
  if (!child_ready)
    return ::testing::AssertionFailure() << "child could not prefetch, status 0x" << std::hex << st;
  if (!before_ok) return ::testing::AssertionFailure() << "preparing the unload failed";
  if (unload != 0) return ::testing::AssertionFailure() << "rmmod hmmgpu: " << strerror(unload);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    auto r = ::testing::AssertionFailure() << "child wait status 0x" << std::hex << st;
    if (WIFEXITED(st) && WEXITSTATUS(st) >= 10)
      r << std::dec << ": wrong data in pages of " << res[WEXITSTATUS(st) - 10].path;
    return r;
  }
  return ::testing::AssertionSuccess();
}

// Unloading the module brings resident pages back to system memory with
// their data, for a process that keeps its mapping after closing the file.
TEST(Unload, ResidentPagesComeBack) {
  if (std::getenv("HMMGPU_MODULE") == nullptr) GTEST_SKIP() << "HMMGPU_MODULE not set";
  std::vector<Resident> res;
  size_t total = list_devices().size();
  for (const auto& d : migrate_devices())
    if (d.attr("state") == "ready") res.push_back({d.dev_path(), false});  // not a dead one
  ASSERT_FALSE(res.empty());
  EXPECT_TRUE(unload_with_resident(res, [] { return true; }));
  ASSERT_EQ(reload_module(), 0) << "insmod hmmgpu";
  EXPECT_EQ(list_devices().size(), total);
  for (const auto& d : migrate_devices()) EXPECT_TRUE(round_trip(d, 50));
}

// Unloading while a device hangs: its resident pages come back zero-filled
// (after the fence timeout), the other devices' pages with their data.
TEST(Unload, HungDeviceResidentPagesZeroFilled) {
  if (std::getenv("HMMGPU_MODULE") == nullptr) GTEST_SKIP() << "HMMGPU_MODULE not set";
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  auto gpu1 = emu_device(1);
  if (!gpu1) GTEST_SKIP() << "no emulated GPU 1";
  ASSERT_EQ(gpu1->attr("state"), "ready");
  std::vector<Resident> res;
  for (const auto& d : migrate_devices()) res.push_back({d.dev_path(), d.node == gpu1->node});
  {
    ParamOverride timeout("fence_timeout_ms", "300");
    ASSERT_TRUE(timeout.ok());
    EXPECT_TRUE(unload_with_resident(res, [] { return static_cast<bool>(control("hang 1")); }));
  }
  ASSERT_TRUE(control("unhang 1"));
  ASSERT_EQ(reload_module(), 0) << "insmod hmmgpu";
  auto devs = migrate_devices();
  EXPECT_EQ(devs.size(), res.size());
  for (const auto& d : devs) EXPECT_TRUE(round_trip(d, 51));
}

// The emulator process exits: a fault on its VRAM ends in SIGBUS within the
// fence timeout, system memory keeps working and the lost device refuses new
// work. Unloading the module then gives pages resident on the lost device
// back zero-filled (the sysram device's pages with their data), and the
// module loads again without the emulated GPUs. Runs alone (vm.device-loss):
// the emulator is gone afterwards.
TEST(DeviceLoss, FaultSigbusThenUnload) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  if (std::getenv("HMMGPU_MODULE") == nullptr) GTEST_SKIP() << "HMMGPU_MODULE not set";
  auto gpu0 = emu_device(0);
  if (!gpu0) GTEST_SKIP() << "no emulated GPU 0";
  ASSERT_EQ(gpu0->attr("state"), "ready");

  const size_t n = 8, k = 2;
  Buffer b(n, 61);
  ASSERT_NE(b.map.get(), nullptr);
  std::vector<Resident> res;
  res.push_back({gpu0->dev_path(), true});
  for (const auto& d : devices_with_backend("sysram")) res.push_back({d.dev_path(), false});

  auto lose_device = [&] {
    ParamOverride timeout("fence_timeout_ms", "1000");
    ParamOverride window("fault_around_pages", "1");
    if (!timeout.ok() || !window.ok()) return false;
    {
      Fd fd(::open(gpu0->dev_path().c_str(), O_RDWR | O_CLOEXEC));
      EXPECT_TRUE(fd.valid());
      if (migrate(fd.get(), b.map.get(), n * kPage, HMMGPU_MIGRATE_TO_DEVICE) != 0) return false;
    }
    if (!control("exit", false)) return false;
    Touch t = touch(b.map.get(), b.ref.data(), {k});
    EXPECT_EQ(t.outcome, Touch::kSigbus) << t;
    EXPECT_EQ(t.page, static_cast<long>(k)) << t;
    EXPECT_LT(t.seconds, 10.0) << t;
    std::string state = gpu0->attr("state");
    EXPECT_TRUE(state == "lost" || state == "halted") << state;

    for (const auto& d : devices_with_backend("sysram")) EXPECT_TRUE(round_trip(d, 62));
    Fd fd(::open(gpu0->dev_path().c_str(), O_RDWR | O_CLOEXEC));
    if (fd.valid()) {  // a lost device refuses new work and moves nothing
      Buffer c(4, 63);
      EXPECT_EQ(migrate(fd.get(), c.map.get(), 4 * kPage, HMMGPU_MIGRATE_TO_DEVICE), -ENODEV);
      EXPECT_EQ(c.first_bad(), -1);
    }
    return true;
  };
  EXPECT_TRUE(unload_with_resident(res, lose_device));

  // This process's pages on the lost device came back zero-filled too.
  std::vector<char> zero(n * kPage);
  std::vector<size_t> all;
  for (size_t pg = 0; pg < n; pg++) all.push_back(pg);
  Touch t = touch(b.map.get(), zero.data(), all);
  EXPECT_EQ(t.outcome, Touch::kOk) << t;

  ASSERT_EQ(reload_module(), 0) << "insmod hmmgpu";
  auto sys = devices_with_backend("sysram");
  EXPECT_FALSE(sys.empty());
  for (const auto& d : sys) EXPECT_TRUE(round_trip(d, 64));
}

}  // namespace
