// SPDX-License-Identifier: GPL-2.0
// Helpers shared by the in-VM test suites: device discovery through sysfs,
// an owned device fd, and an ioctl wrapper that retries EINTR.
#pragma once

#include <uapi/hmmgpu.h>

#include <cstdint>
#include <optional>
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

}  // namespace hmmgpu::test
