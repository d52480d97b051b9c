// SPDX-License-Identifier: GPL-2.0
#include "test_util.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <utility>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

std::vector<OpenDevice> open_devices_with_caps(uint32_t caps) {
  std::vector<OpenDevice> out;
  for (auto& d : list_devices()) {
    OpenDevice o;
    o.fd = Fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    o.dev = std::move(d);
    if (o.fd.valid() && xioctl(o.fd.get(), HMMGPU_IOCTL_GET_INFO, &o.info) == 0 &&
        (o.info.caps & caps) == caps)
      out.push_back(std::move(o));
  }
  return out;
}

std::vector<Device> devices_with_caps(uint32_t caps) {
  std::vector<Device> out;
  for (auto& o : open_devices_with_caps(caps)) out.push_back(std::move(o.dev));
  return out;
}

Mapping::Mapping(size_t len, int prot, int flags, int fd) : len_(len) {
  void* p = ::mmap(nullptr, len, prot, flags, fd, 0);
  base_ = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, len_);
}

Aligned::Aligned(size_t len, size_t align) : map(len + align) {
  auto a = reinterpret_cast<uintptr_t>(map.get());
  ptr = reinterpret_cast<char*>((a + align - 1) & ~(uintptr_t)(align - 1));
}

Isolated::Isolated(size_t len, size_t align) : map(len + align + 2 * kPage, PROT_NONE) {
  if (map.get() == nullptr) return;
  auto a = reinterpret_cast<uintptr_t>(map.get() + kPage);
  char* p = reinterpret_cast<char*>((a + align - 1) & ~(uintptr_t)(align - 1));
  if (::mprotect(p, len, PROT_READ | PROT_WRITE) == 0) ptr = p;
}

namespace {
uint64_t word(uint64_t seed, size_t page, size_t i) {
  return (seed * 0x9e3779b97f4a7c15ULL) ^ (page << 20) ^ i;
}
}  // namespace

void fill(char* p, size_t pages, uint64_t seed) {
  for (size_t pg = 0; pg < pages; pg++) {
    auto* w = reinterpret_cast<uint64_t*>(p + pg * kPage);
    for (size_t i = 0; i < kPage / 8; i++) w[i] = word(seed, pg, i);
  }
}

long first_bad(const char* p, size_t pages, uint64_t seed) {
  for (size_t pg = 0; pg < pages; pg++) {
    const auto* w = reinterpret_cast<const uint64_t*>(p + pg * kPage);
    for (size_t i = 0; i < kPage / 8; i++)
      if (w[i] != word(seed, pg, i)) return static_cast<long>(pg);
  }
  return -1;
}

int migrate(int fd, void* addr, size_t len, uint32_t flags, std::vector<uint8_t>* status,
            hmmgpu_migrate* out) {
  hmmgpu_migrate arg{};
  arg.addr = reinterpret_cast<uintptr_t>(addr);
  arg.length = len;
  arg.flags = flags;
  if (status != nullptr) {
    status->assign(len / kPage, 0xff);
    arg.status = reinterpret_cast<uintptr_t>(status->data());
  }
  int ret = xioctl(fd, HMMGPU_IOCTL_MIGRATE, &arg);
  if (out != nullptr) *out = arg;
  return ret;
}

size_t count(const std::vector<uint8_t>& s, uint8_t v, size_t from, size_t to) {
  size_t n = 0;
  for (size_t i = from; i < std::min(to, s.size()); i++) n += s[i] == v;
  return n;
}

bool in_child(const std::function<bool()>& fn) {
  pid_t pid = fork();
  if (pid == 0) _exit(fn() ? 0 : 1);
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

ParamOverride::ParamOverride(const std::string& name, const std::string& value)
    : path_("/sys/module/hmmgpu/parameters/" + name), old_(read_file(path_)) {
  ok_ = old_.has_value() && write_file(path_, value) && read_file(path_) == value;
}

ParamOverride::~ParamOverride() {
  if (old_) write_file(path_, *old_);
}

std::optional<int> emu_index(const Device& d) {
  std::string name = d.attr("name");
  auto pos = name.rfind("gpu");
  if (d.attr("backend") != "emu" || pos == std::string::npos) return std::nullopt;
  return std::stoi(name.substr(pos + 3));
}

std::optional<Device> emu_device(int i) {
  for (const auto& d : devices_with_backend("emu"))
    if (emu_index(d) == i) return d;
  return std::nullopt;
}

::testing::AssertionResult control(const std::string& line, bool wait_ack) {
  const char* path = std::getenv("HMMGPU_EMU_CONTROL");
  if (path == nullptr) return ::testing::AssertionFailure() << "HMMGPU_EMU_CONTROL not set";
  Fd fd(::open(path, O_WRONLY | O_APPEND | O_CLOEXEC));
  if (!fd.valid())
    return ::testing::AssertionFailure() << "open " << path << ": " << strerror(errno);
  std::string text = line + "\n";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return ::testing::AssertionFailure() << "write " << path << ": " << strerror(errno);
  fd = Fd();
  if (!wait_ack) return ::testing::AssertionSuccess();
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  long lines = std::count(all.begin(), all.end(), '\n');  // ours is the last
  std::string ack_path = std::string(path) + ".ack";
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto ack = read_file(ack_path);
    if (ack && !ack->empty() && std::stol(*ack) >= lines) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(5ms);
  }
  return ::testing::AssertionFailure() << "no ack for '" << line << "' (line " << lines << ")";
}

}  // namespace hmmgpu::test
