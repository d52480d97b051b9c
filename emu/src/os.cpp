// SPDX-License-Identifier: GPL-2.0
#include "os.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace hmmgpu {

template <typename T>
T check_sys(T ret, const char* what) {
  if (ret < 0) {
    throw std::system_error(errno, std::generic_category(), what);
  }
  return ret;
}
template int check_sys<int>(int, const char*);
template ssize_t check_sys<ssize_t>(ssize_t, const char*);

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset(std::exchange(other.fd_, -1));
  }
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = fd;
}

Mapping::Mapping(int fd, size_t size)
    : addr_(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)), size_(size) {
  if (addr_ == MAP_FAILED) {
    addr_ = nullptr;
    size_ = 0;
    throw std::system_error(errno, std::generic_category(), "mmap");
  }
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void Mapping::reset() {
  if (addr_ != nullptr) {
    ::munmap(addr_, size_);
  }
  addr_ = nullptr;
  size_ = 0;
}

UniqueFd make_eventfd() {
  return UniqueFd(check_sys(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd"));
}

UniqueFd make_memfd(const char* name, size_t size) {
  UniqueFd fd(check_sys(::memfd_create(name, MFD_CLOEXEC), "memfd_create"));
  check_sys(::ftruncate(fd.get(), static_cast<off_t>(size)), "ftruncate memfd");
  return fd;
}

void signal_eventfd(int fd, uint64_t value) {
  // A full counter (EAGAIN) already wakes the reader; nothing else can fail for a valid eventfd.
  [[maybe_unused]] ssize_t ret = ::write(fd, &value, sizeof(value));
}

uint64_t drain_eventfd(int fd) {
  uint64_t value = 0;
  if (::read(fd, &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) {
    return 0;
  }
  return value;
}

}  // namespace hmmgpu
