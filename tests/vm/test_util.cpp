// SPDX-License-Identifier: GPL-2.0
#include "test_util.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace fs = std::filesystem;

namespace hmmgpu::test {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int Fd::release() noexcept { return std::exchange(fd_, -1); }

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

std::string Device::attr(const std::string& name) const {
  return read_file(sysfs + "/" + name).value_or("<missing>");
}

std::string Device::parent() const {
  std::error_code ec;
  return fs::canonical(sysfs + "/device", ec).string();
}

std::vector<Device> list_devices() {
  std::vector<Device> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/class/hmmgpu", ec)) {
    auto name = e.path().filename().string();
    out.push_back({name, e.path().string()});
  }
  auto minor = [](const Device& d) { return std::stol(d.node.substr(6)); };
  std::sort(out.begin(), out.end(),
            [&](const Device& a, const Device& b) { return minor(a) < minor(b); });
  return out;
}

std::vector<Device> devices_with_backend(const std::string& backend) {
  std::vector<Device> out;
  for (auto& d : list_devices())
    if (d.attr("backend") == backend) out.push_back(d);
  return out;
}

int xioctl(int fd, unsigned long request, void* arg) {
  int ret;
  do {
    ret = ::ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  return ret < 0 ? -errno : 0;
}

long env_long(const char* name, long def) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  char* end = nullptr;
  long n = std::strtol(v, &end, 0);
  return (end != nullptr && *end == '\0') ? n : def;
}

}  // namespace hmmgpu::test
