// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-compute-stream: how fast a device computes on memory it has to
// fault in, on memory prefetched to it, and on a working set larger than
// its VRAM. Run it in the VM on an emulated GPU with compute:
//
//   vm/run --flavor fast -- build/bench/hmmgpu-compute-stream [MiB] [reps]
//   vm/run --flavor fast --vram 32M -- build/bench/hmmgpu-compute-stream 64 3
//
// For each repetition, on a fresh anonymous buffer of MiB (default 64):
//   first touch   FILL_U32 on memory never touched: every page is a device
//                 fault, moved (zeroed) to VRAM by the fault service;
//   prefetch      the CPU fills the buffer, HMMGPU_IOCTL_MIGRATE moves it
//                 to the device, then CHECKSUM runs on it (both timed, and
//                 the kernel alone);
//   resident      CHECKSUM again, the data already in VRAM and mapped;
//   stream        INCREMENT_U32 on a CPU-filled buffer never seen by the
//                 device: faults, migration, eviction when it exceeds VRAM.
// Every result is checked (checksum against the CPU's, values read back);
// a wrong result exits 1. Best and median MiB/s of the repetitions.

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <uapi/hmmgpu.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

// The first emulated GPU with HMMGPU_CAP_COMPUTE, opened.
int open_compute_device(std::string* name) {
  for (int i = 0; i < 64; i++) {
    const std::string path = "/dev/hmmgpu" + std::to_string(i);
    if (!std::filesystem::exists(path)) continue;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    hmmgpu_info info{};
    if (fd >= 0 && ::ioctl(fd, HMMGPU_IOCTL_GET_INFO, &info) == 0 &&
        (info.caps & HMMGPU_CAP_COMPUTE) != 0) {
      *name = info.name;
      return fd;
    }
    if (fd >= 0) ::close(fd);
  }
  return -1;
}

hmmgpu_launch launch(int fd, uint32_t kernel, void* x, uint64_t count, uint64_t scalar) {
  hmmgpu_launch l{};
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.kernel = kernel;
  l.count = count;
  l.x = reinterpret_cast<uintptr_t>(x);
  l.scalar = scalar;
  if (::ioctl(fd, HMMGPU_IOCTL_LAUNCH, &l) != 0) die("HMMGPU_IOCTL_LAUNCH");
  if (l.error != 0) {
    std::fprintf(stderr, "launch failed: error %d at 0x%llx\n", l.error,
                 static_cast<unsigned long long>(l.fault_addr));
    std::exit(1);
  }
  return l;
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Series {
  const char* name;
  std::vector<double> mib_s;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wrong result: %s\n", what);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 0) : 64;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const size_t len = mib << 20;
  std::string name;
  const int fd = open_compute_device(&name);
  if (fd < 0) {
    std::fprintf(stderr, "no hmmgpu device with compute\n");
    return 1;
  }
  std::vector<Series> s = {{"first touch (FILL, device faults)", {}},
                           {"prefetch (MIGRATE) + CHECKSUM", {}},
                           {"  CHECKSUM after prefetch", {}},
                           {"CHECKSUM, resident and mapped", {}},
                           {"stream (INCREMENT, faults)", {}}};
  for (int r = 0; r < reps; r++) {
    auto* p = static_cast<uint8_t*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) die("mmap");
    auto t0 = Clock::now();
    launch(fd, HMMGPU_KERNEL_FILL_U32, p, len / 4, 0x01020304);
    auto t1 = Clock::now();
    s[0].mib_s.push_back(mib / seconds(t0, t1));
    check(reinterpret_cast<uint32_t*>(p)[len / 4 - 1] == 0x01020304, "fill");
    munmap(p, len);

    p = static_cast<uint8_t*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) die("mmap");
    for (size_t i = 0; i < len; i++) p[i] = static_cast<uint8_t>(i * 7 + r);
    const uint64_t want = fnv1a(p, len);
    hmmgpu_migrate m{};
    m.addr = reinterpret_cast<uintptr_t>(p);
    m.length = len;
    m.flags = HMMGPU_MIGRATE_TO_DEVICE;
    t0 = Clock::now();
    if (::ioctl(fd, HMMGPU_IOCTL_MIGRATE, &m) != 0) die("HMMGPU_IOCTL_MIGRATE");
    auto t2 = Clock::now();
    hmmgpu_launch l = launch(fd, HMMGPU_KERNEL_CHECKSUM, p, len, 0);
    t1 = Clock::now();
    check(l.result == want, "checksum after prefetch");
    s[1].mib_s.push_back(mib / seconds(t0, t1));
    s[2].mib_s.push_back(mib / seconds(t2, t1));
    t0 = Clock::now();
    l = launch(fd, HMMGPU_KERNEL_CHECKSUM, p, len, 0);
    t1 = Clock::now();
    check(l.result == want, "checksum resident");
    s[3].mib_s.push_back(mib / seconds(t0, t1));
    munmap(p, len);

    p = static_cast<uint8_t*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) die("mmap");
    auto* w = reinterpret_cast<uint32_t*>(p);
    for (size_t i = 0; i < len / 4; i++) w[i] = static_cast<uint32_t>(i);
    t0 = Clock::now();
    launch(fd, HMMGPU_KERNEL_INCREMENT_U32, p, len / 4, 1);
    t1 = Clock::now();
    s[4].mib_s.push_back(mib / seconds(t0, t1));
    for (size_t i = 0; i < len / 4; i++) check(w[i] == static_cast<uint32_t>(i) + 1, "increment");
    munmap(p, len);
  }
  std::printf("%s, %zu MiB, %d repetitions; MiB/s best / median\n", name.c_str(), mib, reps);
  for (auto& x : s) {
    std::sort(x.mib_s.begin(), x.mib_s.end());
    std::printf("%-36s %9.1f %9.1f\n", x.name, x.mib_s.back(), x.mib_s[x.mib_s.size() / 2]);
  }
  return 0;
}
