// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-devices: list the hmmgpu devices of this machine and time a NOP
// round trip on each (doorbell to completion interrupt). Uses only the uapi
// header. Exit status 0 when every device answered.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <uapi/hmmgpu.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

const char* backend_name(uint32_t b) {
  switch (b) {
    case HMMGPU_BACKEND_EMU:
      return "emu";
    case HMMGPU_BACKEND_SYSRAM:
      return "sysram";
    default:
      return "unknown";
  }
}

int query(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  hmmgpu_info info{};
  if (::ioctl(fd, HMMGPU_IOCTL_GET_INFO, &info) != 0) {
    std::fprintf(stderr, "%s: GET_INFO: %s\n", path.c_str(), std::strerror(errno));
    ::close(fd);
    return 1;
  }
  std::vector<double> us;
  for (int i = 0; i < 100; ++i) {
    hmmgpu_nop nop{};
    nop.count = 1;
    if (::ioctl(fd, HMMGPU_IOCTL_NOP, &nop) != 0) {
      std::fprintf(stderr, "%s: NOP: %s\n", path.c_str(), std::strerror(errno));
      ::close(fd);
      return 1;
    }
    us.push_back(static_cast<double>(nop.elapsed_ns) / 1e3);
  }
  std::sort(us.begin(), us.end());
  std::printf("%-13s %-20s %-7s %6llu MiB  %u channels  NOP round trip median %.1f us\n",
              path.c_str(), info.name, backend_name(info.backend),
              static_cast<unsigned long long>(info.vram_size >> 20), info.num_channels,
              us[us.size() / 2]);
  ::close(fd);
  return 0;
}

}  // namespace

int main() {
  std::vector<std::string> nodes;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev", ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with("hmmgpu")) {
      nodes.push_back(e.path().string());
    }
  }
  std::sort(nodes.begin(), nodes.end());
  if (nodes.empty()) {
    std::fprintf(stderr, "no hmmgpu devices (is hmmgpu.ko loaded?)\n");
    return 1;
  }
  int failed = 0;
  for (const auto& n : nodes) {
    failed |= query(n);
  }
  return failed;
}
