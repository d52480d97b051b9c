// SPDX-License-Identifier: GPL-2.0
// Helpers shared by the in-VM test suites: device discovery through sysfs,
// an owned device fd, an ioctl wrapper that retries EINTR, and the
// emulator's fault injection (emu/SPEC.md 8.1).
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <uapi/hmmgpu.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace hmmgpu::test {

// An open file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release() noexcept;

 private:
  int fd_ = -1;
};

// One /sys/class/hmmgpu/hmmgpuN entry.
struct Device {
  std::string node;   // "hmmgpu0"
  std::string sysfs;  // "/sys/class/hmmgpu/hmmgpu0"
  [[nodiscard]] std::string attr(const std::string& name) const;
  [[nodiscard]] std::string dev_path() const { return "/dev/" + node; }
  // The PCI (or platform) device behind it, e.g. /sys/devices/pci0000:00/0000:00:03.0
  [[nodiscard]] std::string parent() const;
};

// Names the device in GoogleTest's messages instead of dumping its bytes.
inline void PrintTo(const Device& d, std::ostream* os) { *os << d.node; }

// Every hmmgpu device, sorted by minor.
std::vector<Device> list_devices();
std::vector<Device> devices_with_backend(const std::string& backend);

// Contents of a sysfs (or any small) file without the trailing newline.
std::optional<std::string> read_file(const std::string& path);
bool write_file(const std::string& path, const std::string& text);

// ioctl that retries EINTR; returns 0 or -errno.
int xioctl(int fd, unsigned long request, void* arg);

// An environment variable as a number, or def.
long env_long(const char* name, long def);

// The CPU page size.
extern const size_t kPage;

// The devices that have every capability of caps (HMMGPU_CAP_*).
std::vector<Device> devices_with_caps(uint32_t caps);

// The devices with HMMGPU_CAP_MIGRATE.
inline std::vector<Device> migrate_devices() { return devices_with_caps(HMMGPU_CAP_MIGRATE); }

// The devices with HMMGPU_CAP_COMPUTE.
inline std::vector<Device> compute_devices() { return devices_with_caps(HMMGPU_CAP_COMPUTE); }

// A device opened, and what HMMGPU_IOCTL_GET_INFO says of it.
struct OpenDevice {
  Device dev;
  Fd fd;
  hmmgpu_info info{};
};

// The devices that have every capability of caps, each opened (O_RDWR).
std::vector<OpenDevice> open_devices_with_caps(uint32_t caps);

// An anonymous (or file) mapping, unmapped on destruction.
class Mapping {
 public:
  explicit Mapping(size_t len, int prot = PROT_READ | PROT_WRITE,
                   int flags = MAP_PRIVATE | MAP_ANONYMOUS, int fd = -1);
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();
  [[nodiscard]] char* get() const { return base_; }
  [[nodiscard]] size_t size() const { return len_; }
  void forget() { base_ = nullptr; }

 private:
  char* base_ = nullptr;
  size_t len_;
};

// Page-aligned, `align`-aligned region of `len` bytes inside a larger mapping.
struct Aligned {
  Aligned(size_t len, size_t align);
  Mapping map;
  char* ptr;
};

// `len` read-write bytes, `align`-aligned, between PROT_NONE pages: a VMA
// of their own, which no other mapping merges with (smaps shows it alone,
// the device's prefetcher keeps to it). ptr is nullptr when mapping failed.
struct Isolated {
  explicit Isolated(size_t len, size_t align = 4096);
  Mapping map;
  char* ptr = nullptr;
};

// Fill `pages` pages at p with a pattern derived from seed (and the page index).
void fill(char* p, size_t pages, uint64_t seed);
// Index of the first page whose data differs from fill()'s pattern, or -1.
long first_bad(const char* p, size_t pages, uint64_t seed);

// HMMGPU_IOCTL_MIGRATE of [addr, addr + len); returns 0 or -errno.
int migrate(int fd, void* addr, size_t len, uint32_t flags, std::vector<uint8_t>* status = nullptr,
            hmmgpu_migrate* out = nullptr);

// Entries of s[from, to) equal to v.
size_t count(const std::vector<uint8_t>& s, uint8_t v, size_t from = 0, size_t to = SIZE_MAX);

// Run fn in a child process; true when it exited with status 0.
bool in_child(const std::function<bool()>& fn);

// Sets a module parameter of hmmgpu for the lifetime of the object.
class ParamOverride {
 public:
  ParamOverride(const std::string& name, const std::string& value);
  ParamOverride(const ParamOverride&) = delete;
  ParamOverride& operator=(const ParamOverride&) = delete;
  ~ParamOverride();
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  std::string path_;
  std::optional<std::string> old_;
  bool ok_ = false;
};

// The emulated GPU's DEVICE_INDEX (the number at the end of its name), or
// nothing for another backend.
std::optional<int> emu_index(const Device& d);
// The emu device with DEVICE_INDEX i.
std::optional<Device> emu_device(int i);

// Appends a command to the emulator's control file (emu/SPEC.md 8.1, found
// through HMMGPU_EMU_CONTROL) and waits for its ack.
::testing::AssertionResult control(const std::string& line, bool wait_ack = true);

// Cancels the fault injection of one emulated GPU (`clear GPU`) on
// destruction, whichever way the test leaves; clear() does it earlier.
class InjectionGuard {
 public:
  explicit InjectionGuard(int gpu) : gpu_(gpu) {}
  InjectionGuard(const InjectionGuard&) = delete;
  InjectionGuard& operator=(const InjectionGuard&) = delete;
  ~InjectionGuard() { EXPECT_TRUE(clear()); }
  [[nodiscard]] ::testing::AssertionResult clear() const {
    return control("clear " + std::to_string(gpu_));
  }

 private:
  int gpu_;
};

// The migrations a fixture that holds an open device makes; fixtures derive from it and open fd_.
class MigrateCalls {
 protected:
  int to_dev(void* p, size_t len, std::vector<uint8_t>* st = nullptr,
             hmmgpu_migrate* out = nullptr) const {
    return migrate(fd_.get(), p, len, HMMGPU_MIGRATE_TO_DEVICE, st, out);
  }
  int to_sys(void* p, size_t len, std::vector<uint8_t>* st = nullptr,
             hmmgpu_migrate* out = nullptr) const {
    return migrate(fd_.get(), p, len, HMMGPU_MIGRATE_TO_SYSTEM, st, out);
  }
  Fd fd_;
};

}  // namespace hmmgpu::test
