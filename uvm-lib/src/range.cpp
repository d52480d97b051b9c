// SPDX-License-Identifier: GPL-2.0
// uvm::memory_range and uvm::location helpers, and uvm::version().
#include "uvm/range.hpp"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <ostream>
#include <string>

#include "uvm/location.hpp"
#include "uvm/version.hpp"

namespace uvm {

std::size_t page_size() noexcept {
  static const auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

memory_range memory_range::pages() const noexcept {
  if (empty()) {
    return {};
  }
  const std::uintptr_t mask = page_size() - 1;
  const std::uintptr_t begin = addr_ & ~mask;
  const std::uintptr_t end = (addr_ + bytes_ + mask) & ~mask;
  return {reinterpret_cast<const void*>(begin), end - begin};  // NOLINT(performance-no-int-to-ptr)
}

std::size_t memory_range::page_count() const noexcept { return pages().size() / page_size(); }

std::string to_string(const memory_range& r) {
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "[%#lx, %#lx)",
                static_cast<unsigned long>(r.begin_address()),
                static_cast<unsigned long>(r.end_address()));
  return buf.data();
}

std::ostream& operator<<(std::ostream& os, const memory_range& r) { return os << to_string(r); }

const char* to_string(provider p) noexcept { return p == provider::cuda ? "cuda" : "hmmgpu"; }

std::string to_string(const location& l) {
  return l.is_cpu() ? std::string("cpu")
                    : to_string(l.provider()) + std::to_string(l.device_index());
}

std::ostream& operator<<(std::ostream& os, const location& l) { return os << to_string(l); }

version_info version() noexcept {
  return {UVM_VERSION_MAJOR, UVM_VERSION_MINOR, UVM_VERSION_PATCH, UVM_VERSION_STRING};
}

}  // namespace uvm
