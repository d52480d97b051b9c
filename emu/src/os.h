// SPDX-License-Identifier: GPL-2.0
// RAII owners for file descriptors and memory mappings, and thin checked wrappers of the system
// calls the model uses. Failures throw std::system_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace hmmgpu {

// Throws std::system_error(errno) with `what` when `ret` is negative; returns `ret` otherwise.
template <typename T>
T check_sys(T ret, const char* what);

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

class Mapping {
 public:
  Mapping() = default;
  // Maps `size` bytes of `fd` at offset 0, shared and read-write.
  Mapping(int fd, size_t size);
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept;
  ~Mapping() { reset(); }

  [[nodiscard]] std::byte* data() const { return static_cast<std::byte*>(addr_); }
  [[nodiscard]] size_t size() const { return size_; }
  void reset();

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

// A non-blocking, close-on-exec eventfd.
UniqueFd make_eventfd();
// A memfd of `size` bytes (sparse, zero-filled).
UniqueFd make_memfd(const char* name, size_t size);
// Adds `value` to an eventfd counter; a full counter (EAGAIN) is ignored.
void signal_eventfd(int fd, uint64_t value = 1);
// Reads and clears an eventfd counter; 0 when it was not signaled.
uint64_t drain_eventfd(int fd);

}  // namespace hmmgpu
