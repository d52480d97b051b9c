// SPDX-License-Identifier: GPL-2.0
//
// vm.security: what an open device file lets a process do, and what not.
// A file acts on the address space of the process that opened it: one
// inherited through fork, passed over a socket (SCM_RIGHTS) or kept across
// exec fails with EPERM for everything that migrates, queries, advises,
// launches or waits, and the owner's pages, data and launches stay as they
// were. The device nodes are 0666 root:root; an unprivileged user can use
// the devices but not debugfs or the module parameters; and no process can
// keep another out of the VRAM (eviction).
//
// The binary is also its own exec probe: `security-tests --probe ...` checks
// an inherited descriptor after exec (see Binding.KeptAcrossExec).

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace hmmgpu::test {
namespace {

// A pending launch of the owner, which no other process may wait for.
struct Pending {
  uint32_t stream = 0;
  uint64_t fence = 0;
  bool valid = false;
};

// Checks every ioctl on `fd`, a file another address space opened, from
// this process: `own` is memory of this process (kPages pages), `other` an
// address of the owner's. Prints each mismatch; returns how many.
int check_foreign(int fd, char* own, uint64_t other, const Pending& pending) {
  constexpr size_t kPages = 4;
  int bad = 0;
  auto want = [&](const char* what, int got, int expected) {
    if (got != expected) {
      fprintf(stderr, "%s: got %d (%s), want %d\n", what, got, strerror(-got), expected);
      bad++;
    }
  };
  hmmgpu_info info{};
  want("GET_INFO", xioctl(fd, HMMGPU_IOCTL_GET_INFO, &info), 0);
  hmmgpu_nop nop{};
  nop.count = 1;
  want("NOP", xioctl(fd, HMMGPU_IOCTL_NOP, &nop), 0);
  hmmgpu_counters c{};
  want("GET_COUNTERS", xioctl(fd, HMMGPU_IOCTL_GET_COUNTERS, &c), 0);
  for (uint64_t addr : {reinterpret_cast<uint64_t>(own), other}) {
    for (uint32_t dir : {HMMGPU_MIGRATE_TO_DEVICE, HMMGPU_MIGRATE_TO_SYSTEM}) {
      std::vector<uint8_t> st(kPages, 0xee);
      hmmgpu_migrate m{};
      m.addr = addr;
      m.length = kPages * kPage;
      m.flags = dir;
      m.status = reinterpret_cast<uintptr_t>(st.data());
      want("MIGRATE", xioctl(fd, HMMGPU_IOCTL_MIGRATE, &m), -EPERM);
      if (st[0] != 0xee) {
        fprintf(stderr, "MIGRATE wrote status bytes for another address space\n");
        bad++;
      }
    }
    std::vector<hmmgpu_run> runs(8);
    hmmgpu_residency r{};
    r.addr = addr;
    r.length = kPages * kPage;
    r.runs = reinterpret_cast<uintptr_t>(runs.data());
    r.max_runs = 8;
    want("RESIDENCY", xioctl(fd, HMMGPU_IOCTL_RESIDENCY, &r), -EPERM);
    hmmgpu_advise a{};
    a.addr = addr;
    a.length = kPages * kPage;
    a.advice = HMMGPU_ADVISE_PREFERRED_DEVICE;
    want("ADVISE", xioctl(fd, HMMGPU_IOCTL_ADVISE, &a), -EPERM);
    hmmgpu_range_advice g{};
    g.addr = addr;
    g.length = kPages * kPage;
    want("GET_ADVICE", xioctl(fd, HMMGPU_IOCTL_GET_ADVICE, &g), -EPERM);
    if (info.caps & HMMGPU_CAP_COMPUTE) {
      hmmgpu_launch l{};
      l.flags = HMMGPU_LAUNCH_WAIT;
      l.kernel = HMMGPU_KERNEL_FILL_U32;
      l.count = kPages * kPage / 4;
      l.x = addr;
      l.scalar = 0xbad;
      want("LAUNCH", xioctl(fd, HMMGPU_IOCTL_LAUNCH, &l), -EPERM);
    }
  }
  if (pending.valid) {
    hmmgpu_wait w{};
    w.stream = pending.stream;
    w.fence = pending.fence;
    want("WAIT on the owner's launch", xioctl(fd, HMMGPU_IOCTL_WAIT, &w), -EPERM);
  }
  return bad;
}

// The owner's side: a buffer partly in VRAM, a launch pending, and what
// must not change while another process holds the file.
class Owner {
 public:
  static constexpr size_t kPages = 16;

  explicit Owner(const Device& dev, int open_flags = O_CLOEXEC)
      : dev_(dev), fd_(::open(dev.dev_path().c_str(), O_RDWR | open_flags)), buf_(kPages * kPage) {}

  // Fills the buffer, moves its first half to the device, launches.
  ::testing::AssertionResult prepare() {
    if (!fd_.valid() || buf_.ptr == nullptr) return ::testing::AssertionFailure() << "setup";
    if (xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, &info_) != 0)
      return ::testing::AssertionFailure() << "GET_INFO";
    fill(buf_.ptr, kPages, 21);
    if (migrate(fd_.get(), buf_.ptr, kPages / 2 * kPage, HMMGPU_MIGRATE_TO_DEVICE) != 0)
      return ::testing::AssertionFailure() << "MIGRATE";
    if (info_.caps & HMMGPU_CAP_COMPUTE) {
      hmmgpu_launch l{};
      l.kernel = HMMGPU_KERNEL_CHECKSUM;
      l.count = kPage;
      l.x = reinterpret_cast<uintptr_t>(buf_.ptr + (kPages - 1) * kPage);
      if (xioctl(fd_.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0)
        return ::testing::AssertionFailure() << "LAUNCH";
      pending_ = {l.stream, l.fence, true};
      // Complete (its first touch moved the page), not waited for.
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (poll(&pfd, 1, 10000) != 1) return ::testing::AssertionFailure() << "poll";
    }
    before_ = snapshot();
    if (before_.runs.empty()) return ::testing::AssertionFailure() << "RESIDENCY";
    return ::testing::AssertionSuccess();
  }

  // Nothing moved, nothing was copied, the data is intact, the launch
  // still waits for its owner.
  void verify(bool counters = true) {
    const Snapshot after = snapshot();
    ASSERT_EQ(after.runs.size(), before_.runs.size()) << dev_.node;
    // Where the pages are; not how the device maps them, which a fork of
    // the owner changes (COW write-protects its pages).
    for (size_t i = 0; i < after.runs.size(); i++) {
      const hmmgpu_run &a = after.runs[i], &b = before_.runs[i];
      EXPECT_TRUE(a.addr == b.addr && a.npages == b.npages && a.location == b.location &&
                  a.device == b.device)
          << dev_.node << ": run " << i << " moved";
    }
    if (counters) {  // the device's: nothing else uses it meanwhile
      EXPECT_EQ(after.counters.to_device_pages, before_.counters.to_device_pages) << dev_.node;
      EXPECT_EQ(after.counters.to_system_pages, before_.counters.to_system_pages) << dev_.node;
      EXPECT_EQ(after.counters.cpu_faults, before_.counters.cpu_faults) << dev_.node;
    }
    hmmgpu_range_advice g{};
    g.addr = addr();
    g.length = kPages * kPage;
    ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_ADVICE, &g), 0);
    EXPECT_EQ(g.preferred, HMMGPU_PREFERRED_NONE) << dev_.node << ": advice set by another";
    if (pending_.valid) {
      hmmgpu_wait w{};
      w.stream = pending_.stream;
      w.fence = pending_.fence;
      w.timeout_ns = ~uint64_t{0};
      ASSERT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_WAIT, &w), 0) << dev_.node << ": launch taken";
      EXPECT_EQ(w.error, 0);
      uint64_t h = 0xcbf29ce484222325ULL;
      for (size_t i = 0; i < kPage; i++)
        h = (h ^ static_cast<uint8_t>(buf_.ptr[(kPages - 1) * kPage + i])) * 0x100000001b3ULL;
      EXPECT_EQ(w.result, h);
    }
    EXPECT_EQ(first_bad(buf_.ptr, kPages, 21), -1) << dev_.node << ": data changed";
  }

  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] uint64_t addr() const { return reinterpret_cast<uintptr_t>(buf_.ptr); }
  [[nodiscard]] const Pending& pending() const { return pending_; }
  Fd& file() { return fd_; }

 private:
  struct Snapshot {
    std::vector<hmmgpu_run> runs;
    hmmgpu_counters counters{};
  };
  Snapshot snapshot() const {
    Snapshot s;
    s.runs.resize(64);
    hmmgpu_residency r{};
    r.addr = addr();
    r.length = kPages * kPage;
    r.runs = reinterpret_cast<uintptr_t>(s.runs.data());
    r.max_runs = 64;
    if (xioctl(fd_.get(), HMMGPU_IOCTL_RESIDENCY, &r) != 0) return {};
    s.runs.resize(r.nruns);
    xioctl(fd_.get(), HMMGPU_IOCTL_GET_COUNTERS, &s.counters);
    return s;
  }

  Device dev_;
  Fd fd_;
  Isolated buf_;
  hmmgpu_info info_{};
  Pending pending_;
  Snapshot before_;
};

// Exit status of a child running fn.
int child_status(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int run_child(const std::function<int()>& fn) {
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) _exit(fn());
  return pid < 0 ? -1 : child_status(pid);
}

// Sends descriptor `fd` over the socket; returns success.
bool send_fd(int sock, int fd) {
  char byte = 'f';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return sendmsg(sock, &msg, 0) == 1;
}

// Receives a descriptor from the socket, or -1.
int recv_fd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd = -1;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

// Sends or receives a small value (a pid, an address) over a socket.
template <typename T>
bool send_val(int sock, const T& v) {
  return ::write(sock, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v));
}
template <typename T>
bool recv_val(int sock, T* v) {
  return ::read(sock, v, sizeof(*v)) == static_cast<ssize_t>(sizeof(*v));
}

// The value of `key` in /proc/self/fdinfo/FD, or "".
std::string fdinfo(int fd, const std::string& key) {
  auto text = read_file("/proc/self/fdinfo/" + std::to_string(fd)).value_or("");
  auto pos = text.find(key + ":\t");
  if (pos == std::string::npos) return "";
  pos += key.size() + 2;
  return text.substr(pos, text.find('\n', pos) - pos);
}

class Binding : public testing::TestWithParam<Device> {};

// A child inherits the file through fork: it acts on the parent's address
// space only for the parent.
TEST_P(Binding, InheritedThroughFork) {
  Owner owner(GetParam());
  ASSERT_TRUE(owner.prepare());
  EXPECT_EQ(run_child([&] {
              Isolated own(4 * kPage);
              fill(own.ptr, 4, 1);
              return check_foreign(owner.fd(), own.ptr, owner.addr(), owner.pending());
            }),
            0);
  owner.verify();
}

// A process that was never related to the file receives it over a socket.
TEST_P(Binding, PassedWithScmRights) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd ours(sv[0]), theirs(sv[1]);
  fflush(stdout);
  fflush(stderr);
  // Forked before the device is opened: it never had the file.
  const pid_t pid = fork();
  if (pid == 0) {
    ours = Fd();
    const int fd = recv_fd(theirs.get());
    uint64_t other = 0;
    pid_t owner_pid = 0;
    if (fd < 0 || !recv_val(theirs.get(), &other) || !recv_val(theirs.get(), &owner_pid))
      _exit(100);
    Pending p;
    if (!recv_val(theirs.get(), &p)) _exit(101);
    if (fdinfo(fd, "hmmgpu-pid") != std::to_string(owner_pid)) {
      fprintf(stderr, "fdinfo hmmgpu-pid is '%s', not the owner %d\n",
              fdinfo(fd, "hmmgpu-pid").c_str(), owner_pid);
      _exit(102);
    }
    Isolated own(4 * kPage);
    fill(own.ptr, 4, 1);
    _exit(check_foreign(fd, own.ptr, other, p));
  }
  ASSERT_GT(pid, 0);
  theirs = Fd();
  Owner owner(GetParam());
  ASSERT_TRUE(owner.prepare());
  const pid_t me = getpid();
  ASSERT_TRUE(send_fd(ours.get(), owner.fd()));
  ASSERT_TRUE(send_val(ours.get(), owner.addr()));
  ASSERT_TRUE(send_val(ours.get(), me));
  ASSERT_TRUE(send_val(ours.get(), owner.pending()));
  EXPECT_EQ(child_status(pid), 0);
  owner.verify();
}

// The owner exits while another process holds its file, with pages in VRAM
// and a launch pending; the other process's calls fail and its close
// releases the file of an address space that is gone.
TEST_P(Binding, OwnerExitsFirst) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd a(sv[0]), b(sv[1]);
  const Device dev = GetParam();
  const pid_t owner = fork();
  if (owner == 0) {
    b = Fd();
    Owner o(dev);
    if (!o.prepare()) _exit(100);
    if (!send_fd(a.get(), o.fd()) || !send_val(a.get(), o.addr()) ||
        !send_val(a.get(), o.pending()))
      _exit(101);
    _exit(0);  // with the file, its pages and its launch
  }
  a = Fd();
  const int fd = recv_fd(b.get());
  uint64_t other = 0;
  Pending p;
  ASSERT_GE(fd, 0);
  Fd held(fd);
  ASSERT_TRUE(recv_val(b.get(), &other));
  ASSERT_TRUE(recv_val(b.get(), &p));
  ASSERT_EQ(child_status(owner), 0);
  Isolated own(4 * kPage);
  fill(own.ptr, 4, 1);
  EXPECT_EQ(check_foreign(fd, own.ptr, other, p), 0);
  held = Fd();  // the last reference: released here, in another process
}

// The opener execs: the file stays open (no O_CLOEXEC) but the process has
// a new address space, so the file no longer acts on anything.
TEST_P(Binding, KeptAcrossExec) {
  const Device dev = GetParam();
  EXPECT_EQ(run_child([&] {
              Owner o(dev, 0);
              if (!o.prepare()) return 100;
              const std::string fd = std::to_string(o.fd());
              const std::string addr = std::to_string(o.addr());
              const std::string stream = std::to_string(o.pending().stream);
              const std::string fence = std::to_string(o.pending().fence);
              const std::string valid = o.pending().valid ? "1" : "0";
              execl("/proc/self/exe", "security-probe", "--probe", fd.c_str(), addr.c_str(),
                    stream.c_str(), fence.c_str(), valid.c_str(), nullptr);
              return 127;
            }),
            0);
}

// The file binds the opener's address space: its own child, opening the
// device itself, works normally (the binding is per open, not per device).
TEST_P(Binding, ChildOpensItsOwn) {
  Owner owner(GetParam());
  ASSERT_TRUE(owner.prepare());
  const Device dev = GetParam();
  EXPECT_EQ(
      run_child([&] {
        Fd fd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
        Isolated own(8 * kPage);
        fill(own.ptr, 8, 2);
        hmmgpu_migrate m{};
        if (migrate(fd.get(), own.ptr, 8 * kPage, HMMGPU_MIGRATE_TO_DEVICE, nullptr, &m) != 0 ||
            m.migrated != 8)
          return 1;
        return first_bad(own.ptr, 8, 2) == -1 ? 0 : 2;
      }),
      0);
  owner.verify(false);
}

std::string param_name(const testing::TestParamInfo<Device>& p) {
  return p.param.attr("backend") + "_" + p.param.node;
}

INSTANTIATE_TEST_SUITE_P(Devices, Binding, testing::ValuesIn(migrate_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Binding);

// /dev/hmmgpuN: character devices, root:root, 0666 like /dev/nvidia-uvm,
// /dev/kfd and the DRM render nodes: each file only ever acts on its
// opener's own address space.
TEST(Node, Permissions) {
  auto devs = list_devices();
  ASSERT_FALSE(devs.empty());
  for (const auto& d : devs) {
    struct stat st {};
    ASSERT_EQ(::stat(d.dev_path().c_str(), &st), 0) << d.node;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << d.node;
    EXPECT_EQ(st.st_mode & 07777, 0666U) << d.node;
    EXPECT_EQ(st.st_uid, 0U) << d.node;
    EXPECT_EQ(st.st_gid, 0U) << d.node;
  }
}

constexpr uid_t kNobody = 65534;

// Drops to nobody:nogroup without supplementary groups; true on success.
bool become_nobody() {
  return setgroups(0, nullptr) == 0 && setresgid(kNobody, kNobody, kNobody) == 0 &&
         setresuid(kNobody, kNobody, kNobody) == 0 && geteuid() == kNobody;
}

// An unprivileged user migrates and computes on its own memory, but cannot
// read debugfs nor change module parameters or device attributes.
TEST(Unprivileged, UsesDevicesButNotDebugfsOrParams) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to nobody";
  const auto devs = list_devices();
  ASSERT_FALSE(devs.empty());
  const bool debugfs =
      ::access(("/sys/kernel/debug/hmmgpu/" + devs[0].node + "/counters").c_str(), R_OK) == 0;
  EXPECT_EQ(
      run_child([&] {
        if (!become_nobody()) return 100;
        int bad = 0;
        auto fail = [&](const std::string& what) {
          fprintf(stderr, "nobody: %s\n", what.c_str());
          bad++;
        };
        for (const auto& d : devs) {
          Fd fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
          if (!fd.valid()) {
            fail("cannot open " + d.dev_path());
            continue;
          }
          hmmgpu_info info{};
          if (xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info) != 0) fail("GET_INFO");
          Isolated own(8 * kPage);
          fill(own.ptr, 8, 4);
          hmmgpu_migrate m{};
          if ((info.caps & HMMGPU_CAP_MIGRATE) &&
              (migrate(fd.get(), own.ptr, 8 * kPage, HMMGPU_MIGRATE_TO_DEVICE, nullptr, &m) != 0 ||
               m.migrated != 8))
            fail("MIGRATE on " + d.node);
          if (info.caps & HMMGPU_CAP_COMPUTE) {
            hmmgpu_launch l{};
            l.flags = HMMGPU_LAUNCH_WAIT;
            l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
            l.count = 2;
            l.x = reinterpret_cast<uintptr_t>(own.ptr);
            l.scalar = 1;
            if (xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0 || l.error != 0)
              fail("LAUNCH on " + d.node);
            auto* w = reinterpret_cast<uint32_t*>(own.ptr);
            w[0]--;
            w[1]--;
          }
          if (first_bad(own.ptr, 8, 4) != -1) fail("data on " + d.node);
          for (const char* file : {"counters", "state"}) {
            const std::string path = "/sys/kernel/debug/hmmgpu/" + d.node + "/" + file;
            if (debugfs && (::open(path.c_str(), O_RDONLY) >= 0 || errno != EACCES))
              fail("debugfs " + path + " is readable");
          }
          for (const char* attr : {"state", "vram_used", "name"})
            if (::open((d.sysfs + "/" + attr).c_str(), O_WRONLY) >= 0 || errno != EACCES)
              fail(std::string("sysfs attribute ") + attr + " is writable");
        }
        for (const char* p : {"fault_around_pages", "fault_around_max_pages", "fault_migrate",
                              "prefetch_threshold", "fence_timeout_ms", "thrash_threshold"}) {
          const std::string path = std::string("/sys/module/hmmgpu/parameters/") + p;
          if (::open(path.c_str(), O_WRONLY) >= 0 || errno != EACCES) fail(path + " is writable");
        }
        return bad;
      }),
      0);
  if (!debugfs) GTEST_SKIP() << "debugfs not mounted: only the rest was checked";
}

// Process A fills all the VRAM and keeps it; process B's migration still
// gets all its pages in (A's are evicted), and A's data stays correct.
TEST(Vram, NoProcessKeepsAnotherOut) {
  for (const auto& dev : migrate_devices()) {
    Fd fd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    hmmgpu_info info{};
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
    const size_t total = info.vram_size / kPage;
    hmmgpu_counters before{};
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_COUNTERS, &before), 0);
    int to_a[2], from_a[2];
    ASSERT_EQ(pipe(to_a), 0);
    ASSERT_EQ(pipe(from_a), 0);
    fflush(stdout);
    fflush(stderr);
    const pid_t a = fork();
    if (a == 0) {
      ::close(to_a[1]);
      ::close(from_a[0]);
      Fd afd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
      Isolated mem(total * kPage);
      if (!afd.valid() || mem.ptr == nullptr) _exit(100);
      fill(mem.ptr, total, 31);
      hmmgpu_migrate m{};
      if (migrate(afd.get(), mem.ptr, total * kPage, HMMGPU_MIGRATE_TO_DEVICE, nullptr, &m) != 0)
        _exit(101);
      const uint64_t moved = m.migrated;
      if (!send_val(from_a[1], moved)) _exit(102);
      char go = 0;
      if (!recv_val(to_a[0], &go)) _exit(103);
      _exit(first_bad(mem.ptr, total, 31) == -1 ? 0 : 104);  // CPU reads bring it back
    }
    ::close(to_a[0]);
    ::close(from_a[1]);
    Fd go_a(to_a[1]), done_a(from_a[0]);
    uint64_t a_moved = 0;
    ASSERT_TRUE(recv_val(done_a.get(), &a_moved));
    EXPECT_GE(a_moved, total * 9 / 10) << dev.node << ": A did not fill the VRAM";
    const uint64_t used = std::stoull(dev.attr("vram_used"));
    EXPECT_GE(used, info.vram_size * 9 / 10) << dev.node;
    // B: half the VRAM, all of it moves.
    const size_t half = total / 2;
    EXPECT_EQ(
        run_child([&] {
          Fd bfd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
          Isolated mem(half * kPage);
          if (!bfd.valid() || mem.ptr == nullptr) return 100;
          fill(mem.ptr, half, 32);
          hmmgpu_migrate m{};
          if (migrate(bfd.get(), mem.ptr, half * kPage, HMMGPU_MIGRATE_TO_DEVICE, nullptr, &m) != 0)
            return 101;
          if (m.migrated != half) {
            fprintf(stderr, "B: %" PRIu64 " of %zu pages moved, %" PRIu64 " failed\n",
                    static_cast<uint64_t>(m.migrated), half, static_cast<uint64_t>(m.failed));
            return 102;
          }
          return first_bad(mem.ptr, half, 32) == -1 ? 0 : 103;
        }),
        0)
        << dev.node;
    hmmgpu_counters after{};
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_COUNTERS, &after), 0);
    EXPECT_GE(after.evicted_pages - before.evicted_pages, half) << dev.node;
    ASSERT_TRUE(send_val(go_a.get(), 'g'));
    EXPECT_EQ(child_status(a), 0) << dev.node << ": A's data after eviction";
  }
}

// A launch that its process never waits for keeps its result in a ring
// slot of the stream; the stream must still take any number of other
// launches and NOP batches, from other processes, after it.
TEST(Streams, PendingLaunchDoesNotBlockOthers) {
  auto devs = open_devices_with_caps(HMMGPU_CAP_COMPUTE);
  if (devs.empty()) GTEST_SKIP() << "no device with HMMGPU_CAP_COMPUTE";
  for (auto& [dev, fd, info] : devs) {
    int to_a[2], from_a[2];
    ASSERT_EQ(pipe(to_a), 0);
    ASSERT_EQ(pipe(from_a), 0);
    fflush(stdout);
    fflush(stderr);
    const pid_t a = fork();
    if (a == 0) {
      ::close(to_a[1]);
      ::close(from_a[0]);
      Fd afd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
      Isolated mem(kPage);
      hmmgpu_launch l{};
      l.kernel = HMMGPU_KERNEL_FILL_U32;
      l.count = 1;
      l.x = reinterpret_cast<uintptr_t>(mem.ptr);
      l.scalar = 7;
      if (xioctl(afd.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0) _exit(100);
      if (!send_val(from_a[1], 'l')) _exit(101);
      char go = 0;
      if (!recv_val(to_a[0], &go)) _exit(102);
      hmmgpu_wait w{};
      w.stream = l.stream;
      w.fence = l.fence;
      w.timeout_ns = ~uint64_t{0};
      if (xioctl(afd.get(), HMMGPU_IOCTL_WAIT, &w) != 0 || w.error != 0) _exit(103);
      _exit(*reinterpret_cast<uint32_t*>(mem.ptr) == 7 ? 0 : 104);
    }
    ::close(to_a[0]);
    ::close(from_a[1]);
    Fd go_a(to_a[1]), done_a(from_a[0]);
    char launched = 0;
    ASSERT_TRUE(recv_val(done_a.get(), &launched));
    // More launches on the stream than its ring has slots, each waited for.
    Isolated mem(kPage);
    int failed = 0;
    for (int i = 0; i < 600; i++) {
      hmmgpu_launch l{};
      l.flags = HMMGPU_LAUNCH_WAIT;
      l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
      l.count = 1;
      l.x = reinterpret_cast<uintptr_t>(mem.ptr);
      l.scalar = 1;
      failed += xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l) != 0 || l.error != 0;
    }
    EXPECT_EQ(failed, 0) << dev.node;
    EXPECT_EQ(*reinterpret_cast<uint32_t*>(mem.ptr), 600U) << dev.node;
    hmmgpu_nop nop{};
    nop.count = HMMGPU_NOP_MAX;
    nop.queue = 1 + info.num_channels;  // stream 0
    EXPECT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_NOP, &nop), 0) << dev.node;
    ASSERT_TRUE(send_val(go_a.get(), 'g'));
    EXPECT_EQ(child_status(a), 0) << dev.node << ": the pending launch's result";
  }
}

// A launch may run long (here: first touch of 32 MiB, far beyond a fence
// timeout of 200 ms); a NOP queued behind it on its stream waits for it
// instead of taking the device for hung and halting it for every user.
TEST(Streams, LongLaunchDoesNotHaltDevice) {
  ParamOverride timeout("fence_timeout_ms", "200");
  ASSERT_TRUE(timeout.ok());
  auto devs = open_devices_with_caps(HMMGPU_CAP_COMPUTE);
  if (devs.empty()) GTEST_SKIP() << "no device with HMMGPU_CAP_COMPUTE";
  for (auto& [dev, fd, info] : devs) {
    constexpr size_t kLen = 32 << 20;
    Isolated mem(kLen);
    hmmgpu_launch l{};
    l.kernel = HMMGPU_KERNEL_FILL_U32;
    l.count = kLen / sizeof(uint32_t);
    l.x = reinterpret_cast<uintptr_t>(mem.ptr);
    l.scalar = 0x5eed;
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l), 0) << dev.node;
    hmmgpu_nop nop{};
    nop.count = 1;
    nop.queue = 1 + info.num_channels + l.stream;
    EXPECT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_NOP, &nop), 0) << dev.node << ": " << strerror(errno);
    EXPECT_EQ(dev.attr("state"), "ready") << dev.node;
    hmmgpu_wait w{};
    w.stream = l.stream;
    w.fence = l.fence;
    w.timeout_ns = ~uint64_t{0};
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_WAIT, &w), 0) << dev.node;
    EXPECT_EQ(w.error, 0) << dev.node;
    const auto* words = reinterpret_cast<const uint32_t*>(mem.ptr);
    EXPECT_EQ(words[0], 0x5eedU);
    EXPECT_EQ(words[l.count - 1], 0x5eedU);
  }
}

// The exec probe: argv = --probe FD OWNER_ADDR STREAM FENCE VALID.
int probe(int argc, char** argv) {
  if (argc != 7) return 90;
  const int fd = std::atoi(argv[2]);
  Pending p;
  p.stream = static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 0));
  p.fence = std::strtoull(argv[5], nullptr, 0);
  p.valid = argv[6][0] == '1';
  Isolated own(4 * kPage);
  if (own.ptr == nullptr) return 91;
  fill(own.ptr, 4, 1);
  const int bad = check_foreign(fd, own.ptr, std::strtoull(argv[3], nullptr, 0), p);
  ::close(fd);  // the last reference of the opener's file
  return bad;
}

}  // namespace
}  // namespace hmmgpu::test

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--probe") == 0) return hmmgpu::test::probe(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
