// SPDX-License-Identifier: GPL-2.0
#include "guest_ram.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <system_error>

namespace hmmgpu {

RamLayout::RamLayout(uint64_t ram_size) : ram_size_(ram_size) {
  if (ram_size < kSplitThreshold) {
    ranges_[0] = {.gpa = 0, .size = ram_size, .file_offset = 0};
    num_ranges_ = 1;
  } else {
    ranges_[0] = {.gpa = 0, .size = kLowTop, .file_offset = 0};
    ranges_[1] = {.gpa = kHighBase, .size = ram_size - kLowTop, .file_offset = kLowTop};
    num_ranges_ = 2;
  }
}

std::optional<uint64_t> RamLayout::translate(uint64_t gpa, uint64_t len) const {
  if (len == 0) {
    return std::nullopt;
  }
  for (size_t i = 0; i < num_ranges_; ++i) {
    const RamRange& range = ranges_.at(i);
    // Written without gpa + len so that nothing can overflow.
    if (gpa >= range.gpa && gpa - range.gpa < range.size && len <= range.size - (gpa - range.gpa)) {
      return range.file_offset + (gpa - range.gpa);
    }
  }
  return std::nullopt;
}

namespace {

UniqueFd open_ram_file(const std::string& path, uint64_t ram_size) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    throw std::system_error(errno, std::generic_category(), "cannot open guest RAM file " + path);
  }
  struct stat st {};
  check_sys(::fstat(fd.get(), &st), "fstat guest RAM file");
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) < ram_size) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "guest RAM file " + path + " is smaller than --guest-ram-size");
  }
  return fd;
}

}  // namespace

GuestRam::GuestRam(const std::string& path, uint64_t ram_size)
    : layout_(ram_size),
      fd_(open_ram_file(path, ram_size)),
      map_(fd_.get(), ram_size),
      base_(map_.data()) {}

GuestRam::GuestRam(std::span<std::byte> memory) : layout_(memory.size()), base_(memory.data()) {}

std::byte* GuestRam::translate(uint64_t gpa, uint64_t len) const {
  const std::optional<uint64_t> offset = layout_.translate(gpa, len);
  if (!offset) {
    return nullptr;
  }
  return base_ + *offset;
}

}  // namespace hmmgpu
