// SPDX-License-Identifier: GPL-2.0
#include "devices.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace hmmgpu::bench {

const size_t kPage = static_cast<size_t>(::sysconf(_SC_PAGESIZE));

namespace {

// From the kernel's lib/test_hmm_uapi.h, which is not an installed header.
struct hmm_dmirror_cmd {
  uint64_t addr;
  uint64_t ptr;
  uint64_t npages;
  uint64_t cpages;
  uint64_t faults;
};
constexpr unsigned long kDmirrorRead = _IOWR('H', 0x00, struct hmm_dmirror_cmd);
constexpr unsigned long kDmirrorToDev = _IOWR('H', 0x02, struct hmm_dmirror_cmd);
constexpr unsigned long kDmirrorToSys = _IOWR('H', 0x03, struct hmm_dmirror_cmd);

constexpr auto kAckTimeout = std::chrono::seconds(10);

[[noreturn]] void fail_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

int xioctl(int fd, unsigned long request, void* arg) {
  int ret = 0;
  while ((ret = ::ioctl(fd, request, arg)) != 0 && errno == EINTR) {
  }
  return ret;
}

constexpr uint64_t pattern(uint64_t seed, size_t i) {
  return (seed * 0xff51afd7ed558ccdULL) ^ (i * 0x9e3779b97f4a7c15ULL);
}

uint64_t incremented(uint64_t word, uint32_t add) {
  const auto lo = static_cast<uint32_t>(word) + add;
  const auto hi = static_cast<uint32_t>(word >> 32U) + add;
  return (uint64_t{hi} << 32U) | lo;
}

std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

}  // namespace

// ---- Buffer ----

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fail_errno("mmap of " + std::to_string(bytes >> 20U) + " MiB");
  }
  data_ = static_cast<uint64_t*>(p);
}

Buffer::~Buffer() { ::munmap(data_, bytes_); }

void Buffer::fill(uint64_t seed) const {
  for (size_t i = 0; i < bytes_ / 8; ++i) {
    data_[i] = pattern(seed, i);
  }
}

void check_pattern(const uint64_t* words, size_t count, uint64_t seed, const char* what,
                   uint32_t add) {
  for (size_t i = 0; i < count; ++i) {
    const uint64_t want = incremented(pattern(seed, i), add);
    if (words[i] != want) {
      throw std::runtime_error(std::string("data wrong ") + what + ": byte offset " +
                               std::to_string(i * 8) + " holds " + hex(words[i]) + ", not " +
                               hex(want));
    }
  }
}

uint64_t Buffer::pattern_sum(uint64_t seed, size_t words) {
  uint64_t sum = 0;
  for (size_t i = 0; i < words; ++i) {
    sum += pattern(seed, i);
  }
  return sum;
}

uint64_t Buffer::touch(const std::vector<uint32_t>& order) const {
  const size_t words_per_page = kPage / 8;
  uint64_t sum = 0;
  for (const uint32_t page : order) {
    sum += static_cast<volatile uint64_t*>(data_)[page * words_per_page];
  }
  return sum;
}

std::vector<uint32_t> page_order(size_t pages, bool random) {
  std::vector<uint32_t> order(pages);
  std::iota(order.begin(), order.end(), 0U);
  if (random) {
    std::mt19937_64 rng(0x5eed);  // NOLINT(cert-msc32-c,cert-msc51-cpp): the same order every run
    std::shuffle(order.begin(), order.end(), rng);
  }
  return order;
}

uint64_t process_faults() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-union-access): glibc's rusage fields are unions
  return static_cast<uint64_t>(usage.ru_minflt) + static_cast<uint64_t>(usage.ru_majflt);
}

// ---- Device ----

Device::Device(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CLOEXEC)) {
  if (fd_ < 0) {
    fail_errno("open " + path);
  }
  if (xioctl(fd_, HMMGPU_IOCTL_GET_INFO, &info_) != 0) {
    const int err = errno;
    ::close(fd_);
    throw std::system_error(err, std::generic_category(), "HMMGPU_IOCTL_GET_INFO on " + path);
  }
}

Device::Device(Device&& other) noexcept : fd_(std::exchange(other.fd_, -1)), info_(other.info_) {}

Device::~Device() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

std::vector<Device> Device::open_all() {
  std::vector<Device> devices;
  for (int i = 0; i < 64; ++i) {
    const std::string path = "/dev/hmmgpu" + std::to_string(i);
    if (!std::filesystem::exists(path)) {
      continue;
    }
    Device device(path);
    if ((device.info().caps & HMMGPU_CAP_MIGRATE) != 0) {
      devices.push_back(std::move(device));
    }
  }
  return devices;
}

namespace {

hmmgpu_migrate migrate_ioctl(int fd, const Buffer& buffer, uint32_t flags, const char* dir) {
  hmmgpu_migrate m{};
  m.addr = reinterpret_cast<uintptr_t>(buffer.data());
  m.length = buffer.bytes();
  m.flags = flags;
  if (xioctl(fd, HMMGPU_IOCTL_MIGRATE, &m) != 0) {
    fail_errno(std::string("HMMGPU_IOCTL_MIGRATE ") + dir);
  }
  return m;
}

}  // namespace

void Device::move_back(const Buffer& buffer) const {
  const hmmgpu_migrate m = migrate_ioctl(fd_, buffer, HMMGPU_MIGRATE_TO_SYSTEM, "to system memory");
  if (m.migrated + m.resident != buffer.pages()) {
    throw std::runtime_error("HMMGPU_IOCTL_MIGRATE to system memory left " +
                             std::to_string(buffer.pages() - m.migrated - m.resident) +
                             " pages behind");
  }
}

void Device::migrate(const Buffer& buffer, uint32_t flags) const {
  const char* dir = flags == HMMGPU_MIGRATE_TO_DEVICE ? "to the device" : "to system memory";
  const hmmgpu_migrate m = migrate_ioctl(fd_, buffer, flags, dir);
  if (m.migrated != buffer.pages() || m.failed != 0) {
    throw std::runtime_error(std::string("HMMGPU_IOCTL_MIGRATE ") + dir + " moved " +
                             std::to_string(m.migrated) + " of " + std::to_string(buffer.pages()) +
                             " pages (" + std::to_string(m.resident) + " resident, " +
                             std::to_string(m.failed) + " failed)");
  }
}

void Device::check_residency(const Buffer& buffer, bool on_device, const char* what) const {
  const auto start = reinterpret_cast<uintptr_t>(buffer.data());
  const uint64_t end = start + buffer.bytes();
  std::vector<hmmgpu_run> runs(64);
  for (uint64_t addr = start; addr < end;) {
    hmmgpu_residency r{};
    r.addr = addr;
    r.length = end - addr;
    r.runs = reinterpret_cast<uintptr_t>(runs.data());
    r.max_runs = static_cast<uint32_t>(runs.size());
    if (xioctl(fd_, HMMGPU_IOCTL_RESIDENCY, &r) != 0) {
      fail_errno("HMMGPU_IOCTL_RESIDENCY");
    }
    for (uint32_t i = 0; i < r.nruns; ++i) {
      const hmmgpu_run& run = runs[i];
      const bool right = on_device ? run.location == HMMGPU_LOC_DEVICE && run.device == info_.index
                                   : run.location == HMMGPU_LOC_SYSTEM;
      if (!right) {
        throw std::runtime_error(std::string("pages not where they belong ") + what + ": " +
                                 std::to_string(run.npages) + " pages at byte offset " +
                                 std::to_string(run.addr - start) + " have location " +
                                 std::to_string(run.location));
      }
    }
    if (r.next <= addr) {
      throw std::runtime_error("HMMGPU_IOCTL_RESIDENCY made no progress");
    }
    addr = r.next;
  }
}

hmmgpu_counters Device::counters() const {
  hmmgpu_counters c{};
  if (xioctl(fd_, HMMGPU_IOCTL_GET_COUNTERS, &c) != 0) {
    fail_errno("HMMGPU_IOCTL_GET_COUNTERS");
  }
  return c;
}

double Device::nop(uint32_t queue) const {
  hmmgpu_nop n{};
  n.count = 1;
  n.queue = queue;
  if (xioctl(fd_, HMMGPU_IOCTL_NOP, &n) != 0) {
    fail_errno("HMMGPU_IOCTL_NOP on queue " + std::to_string(queue));
  }
  return static_cast<double>(n.elapsed_ns) * 1e-9;
}

uint64_t Device::launch(uint32_t kernel, const Buffer& buffer, uint64_t count,
                        uint64_t scalar) const {
  hmmgpu_launch l{};
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.kernel = kernel;
  l.count = count;
  l.x = reinterpret_cast<uintptr_t>(buffer.data());
  l.scalar = scalar;
  if (xioctl(fd_, HMMGPU_IOCTL_LAUNCH, &l) != 0) {
    fail_errno("HMMGPU_IOCTL_LAUNCH of kernel " + std::to_string(kernel));
  }
  if (l.error != 0) {
    throw std::runtime_error("kernel " + std::to_string(kernel) + " failed: " +
                             std::generic_category().message(l.error) + " at " + hex(l.fault_addr));
  }
  return l.result;
}

// ---- TestHmm ----

std::optional<TestHmm> TestHmm::open() {
  const int fd = ::open("/dev/hmm_dmirror0", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;
  }
  return TestHmm(fd);
}

TestHmm::TestHmm(TestHmm&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

TestHmm::~TestHmm() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void TestHmm::command(unsigned long request, const Buffer& buffer, uintptr_t out,
                      const char* what) const {
  hmm_dmirror_cmd c{};
  c.addr = reinterpret_cast<uintptr_t>(buffer.data());
  c.ptr = out;
  c.npages = buffer.pages();
  if (xioctl(fd_, request, &c) != 0) {
    fail_errno(what);
  }
  if (c.cpages != buffer.pages()) {
    throw std::runtime_error(std::string(what) + " did " + std::to_string(c.cpages) + " of " +
                             std::to_string(buffer.pages()) + " pages");
  }
}

void TestHmm::to_device(const Buffer& buffer, std::vector<uint64_t>& out) const {
  out.resize(buffer.bytes() / 8);
  command(kDmirrorToDev, buffer, reinterpret_cast<uintptr_t>(out.data()),
          "HMM_DMIRROR_MIGRATE_TO_DEV");
}

void TestHmm::to_system(const Buffer& buffer) const {
  command(kDmirrorToSys, buffer, 0, "HMM_DMIRROR_MIGRATE_TO_SYS");
}

void TestHmm::read(const Buffer& buffer, std::vector<uint64_t>& out) const {
  out.resize(buffer.bytes() / 8);
  command(kDmirrorRead, buffer, reinterpret_cast<uintptr_t>(out.data()), "HMM_DMIRROR_READ");
}

// ---- EmuControl ----

std::optional<EmuControl> EmuControl::from_env() {
  const char* path = std::getenv("HMMGPU_EMU_CONTROL");
  const char* gpus = std::getenv("HMMGPU_VM_GPUS");
  if (path == nullptr || *path == '\0' || gpus == nullptr) {
    return std::nullopt;
  }
  const unsigned long n = std::strtoul(gpus, nullptr, 10);
  if (n == 0 || n > 16) {
    return std::nullopt;
  }
  return EmuControl(path, static_cast<uint32_t>(n));
}

uint64_t EmuControl::acked() const {
  std::ifstream in(path_ + ".ack");
  uint64_t n = 0;
  in >> n;
  return n;
}

void EmuControl::command(const std::string& line) const {
  const uint64_t want = acked() + 1;
  {
    std::ofstream out(path_, std::ios::app);
    out << line << '\n';
    if (!out.flush()) {
      throw std::runtime_error("cannot append to the emulator's control file " + path_);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + kAckTimeout;
  while (acked() < want) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("the emulator did not acknowledge \"" + line + "\" in " + path_);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void EmuControl::copy_floor(bool on) const {
  for (uint32_t gpu = 0; gpu < gpus_; ++gpu) {
    command("copy-floor " + std::to_string(gpu) + (on ? " 1" : " 0"));
  }
}

// ---- ModuleParam ----

ModuleParam::ModuleParam(std::string name)
    : path_("/sys/module/hmmgpu/parameters/" + std::move(name)) {}

bool ModuleParam::writable() const { return ::access(path_.c_str(), W_OK) == 0; }

std::string ModuleParam::get() const {
  std::ifstream in(path_);
  std::string value;
  if (!(in >> value)) {
    throw std::runtime_error("cannot read " + path_);
  }
  return value;
}

void ModuleParam::set(const std::string& value) const {
  std::ofstream out(path_);
  out << value << '\n';
  if (!out.flush()) {
    throw std::runtime_error("cannot write " + value + " to " + path_);
  }
}

}  // namespace hmmgpu::bench
