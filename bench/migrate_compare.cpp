// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-migrate-compare: migration throughput of an hmmgpu device beside
// the kernel's reference HMM driver (test_hmm.ko), in the same run, on the
// same buffer size. Run it in the VM with both modules loaded:
//
//   vm/run --flavor fast --test-hmm -- build/bench/hmmgpu-migrate-compare [MiB] [reps]
//
// For each driver and repetition it fills a fresh anonymous buffer with a
// pattern, then times: migration to the device; CPU-fault migration back
// (one read per page, in address order); migration to the device again and
// explicit migration back to system memory. Every timed step is followed by
// a check of the whole buffer: a fast wrong migration is a failure (exit 1).
// The best and median of the repetitions are printed in MiB/s.
//
// test_hmm's MIGRATE_TO_DEV also copies the migrated data back into a user
// buffer for verification, so its to-device time includes that copy.

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
#include <optional>
#include <string>
#include <vector>

namespace {

// From the kernel's lib/test_hmm_uapi.h (not an installed header).
struct hmm_dmirror_cmd {
  uint64_t addr;
  uint64_t ptr;
  uint64_t npages;
  uint64_t cpages;
  uint64_t faults;
};
constexpr unsigned long kDmirrorToDev = _IOWR('H', 0x02, struct hmm_dmirror_cmd);
constexpr unsigned long kDmirrorToSys = _IOWR('H', 0x03, struct hmm_dmirror_cmd);

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

// An anonymous private mapping, unmapped on destruction.
class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::exit(2);
    }
    data_ = static_cast<uint64_t*>(p);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&&) = delete;
  Buffer& operator=(Buffer&&) = delete;
  ~Buffer() { munmap(data_, bytes_); }
  [[nodiscard]] uint64_t* data() const { return data_; }
  [[nodiscard]] size_t bytes() const { return bytes_; }
  [[nodiscard]] size_t pages() const { return bytes_ / kPage; }

  void fill(uint64_t seed) const {
    for (size_t i = 0; i < bytes_ / 8; ++i) {
      data_[i] = seed ^ (i * 0x9e3779b97f4a7c15ULL);
    }
  }
  [[nodiscard]] bool check(uint64_t seed) const {
    for (size_t i = 0; i < bytes_ / 8; ++i) {
      if (data_[i] != (seed ^ (i * 0x9e3779b97f4a7c15ULL))) {
        return false;
      }
    }
    return true;
  }
  // One read per page, in address order: every page faults back.
  [[nodiscard]] uint64_t touch() const {
    uint64_t sum = 0;
    const size_t step = kPage / 8;
    for (size_t i = 0; i < bytes_ / 8; i += step) {
      sum += static_cast<volatile uint64_t*>(data_)[i];
    }
    return sum;
  }

 private:
  uint64_t* data_ = nullptr;
  size_t bytes_ = 0;
};

// The two operations a driver under test offers.
struct Driver {
  std::string name;
  std::function<bool(const Buffer&)> to_device;
  std::function<bool(const Buffer&)> to_system;
};

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::optional<Driver> hmmgpu_driver(int fd) {
  hmmgpu_info info{};
  if (ioctl(fd, HMMGPU_IOCTL_GET_INFO, &info) != 0 || ((info.caps & HMMGPU_CAP_MIGRATE) == 0U)) {
    return std::nullopt;
  }
  auto migrate = [fd](const Buffer& b, uint32_t flags) {
    hmmgpu_migrate m{};
    m.addr = reinterpret_cast<uint64_t>(b.data());
    m.length = b.bytes();
    m.flags = flags;
    return ioctl(fd, HMMGPU_IOCTL_MIGRATE, &m) == 0 && m.failed == 0;
  };
  return Driver{std::string("hmmgpu ") + info.name,
                [=](const Buffer& b) { return migrate(b, HMMGPU_MIGRATE_TO_DEVICE); },
                [=](const Buffer& b) { return migrate(b, HMMGPU_MIGRATE_TO_SYSTEM); }};
}

Driver test_hmm_driver(int fd) {
  auto cmd = [fd](const Buffer& b, unsigned long req) {
    static std::vector<uint64_t> mirror;
    mirror.resize(b.bytes() / 8);
    hmm_dmirror_cmd c{};
    c.addr = reinterpret_cast<uint64_t>(b.data());
    c.ptr = reinterpret_cast<uint64_t>(mirror.data());
    c.npages = b.pages();
    return ioctl(fd, req, &c) == 0 && c.cpages == b.pages();
  };
  return Driver{"test_hmm dmirror0", [=](const Buffer& b) { return cmd(b, kDmirrorToDev); },
                [=](const Buffer& b) { return cmd(b, kDmirrorToSys); }};
}

struct Figures {
  std::vector<double> to_dev, fault_back, to_sys;
};

bool measure(const Driver& d, size_t bytes, long reps, Figures& f) {
  for (long r = 0; r < reps; ++r) {
    Buffer b(bytes);
    const uint64_t seed = 0x1234 + r;
    b.fill(seed);
    bool ok = true;
    f.to_dev.push_back(seconds([&] { ok = d.to_device(b); }));
    if (!ok) {
      return std::fprintf(stderr, "%s: migration to the device failed\n", d.name.c_str()), false;
    }
    uint64_t sink = 0;
    f.fault_back.push_back(seconds([&] { sink = b.touch(); }));
    (void)sink;
    if (!b.check(seed)) {
      return std::fprintf(stderr, "%s: data wrong after CPU faults\n", d.name.c_str()), false;
    }
    if (!d.to_device(b)) {
      return false;
    }
    f.to_sys.push_back(seconds([&] { ok = d.to_system(b); }));
    if (!ok || !b.check(seed)) {
      return std::fprintf(stderr, "%s: migration to system failed or data wrong\n", d.name.c_str()),
             false;
    }
  }
  return true;
}

void print(const std::string& name, size_t bytes, Figures& f) {
  auto row = [&](const char* what, std::vector<double>& t) {
    std::sort(t.begin(), t.end());
    const double mib = static_cast<double>(bytes) / (1 << 20);
    std::printf("%-28s %-26s %9.1f %9.1f\n", name.c_str(), what, mib / t.front(),
                mib / t[t.size() / 2]);
  };
  row("to device (ioctl)", f.to_dev);
  row("back by CPU faults", f.fault_back);
  row("to system (ioctl)", f.to_sys);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 0) : 64;
  const long reps = argc > 2 ? std::strtol(argv[2], nullptr, 0) : 5;
  if (mib == 0 || reps <= 0) {
    std::fprintf(stderr, "usage: %s [MiB (default 64)] [repetitions (default 5)]\n", argv[0]);
    return 2;
  }
  const size_t bytes = mib << 20;
  std::vector<Driver> drivers;
  std::vector<int> fds;
  for (int i = 0; i < 64; ++i) {
    int fd = open(("/dev/hmmgpu" + std::to_string(i)).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    fds.push_back(fd);
    if (auto d = hmmgpu_driver(fd)) {
      drivers.push_back(*d);
    }
  }
  if (int fd = open("/dev/hmm_dmirror0", O_RDWR | O_CLOEXEC); fd >= 0) {
    fds.push_back(fd);
    drivers.push_back(test_hmm_driver(fd));
  }
  if (drivers.empty()) {
    std::fprintf(stderr, "no hmmgpu device with migration and no test_hmm device\n");
    return 2;
  }
  std::printf("%zu MiB buffer, %ld repetitions, MiB/s\n", mib, reps);
  std::printf("%-28s %-26s %9s %9s\n", "driver", "operation", "best", "median");
  int status = 0;
  for (const Driver& d : drivers) {
    Figures f;
    if (!measure(d, bytes, reps, f)) {
      status = 1;
      continue;
    }
    print(d.name, bytes, f);
  }
  for (int fd : fds) {
    close(fd);
  }
  return status;
}
