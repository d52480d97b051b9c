// SPDX-License-Identifier: GPL-2.0
/// @file uvm/range.hpp
/// @brief uvm::memory_range, the bytes an operation applies to, and page rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>

namespace uvm {

/// The CPU page size in bytes (sysconf(_SC_PAGESIZE)).
///
/// @par Errors
/// None.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] std::size_t page_size() noexcept;

class memory_range;

/// What memory_range can view: a contiguous, sized range (`std::vector`,
/// `std::array`, a C array, a `std::span`, ...) other than memory_range.
template <class R>
concept contiguous_memory = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    !std::is_same_v<std::remove_cv_t<R>, memory_range>;

/// A range of bytes of the calling process's address space: a start
/// address and a length. It does not own the memory, and any memory of the
/// process qualifies: `malloc`, `new`, `std::vector`, the stack, mmap'd
/// files, uvm::managed_allocator.
///
/// **Page rounding.** The driver moves and advises whole pages. Every
/// operation that takes a memory_range applies to *the pages that overlap
/// it*, [pages().begin_address(), pages().end_address()), like cudaMemPrefetchAsync: data
/// that shares a page with the range moves with it. Allocate with
/// uvm::managed_allocator to keep unrelated data off those pages.
///
/// Constructible from a pointer and a byte count, a `std::span`, or any
/// contiguous, sized lvalue range (`std::vector`, `std::array`, a C array,
/// uvm::managed_vector):
/// @code
/// std::vector<float> v(1 << 20);
/// uvm::prefetch(v, gpu, s);                       // the vector's elements
/// uvm::prefetch(std::span(v).first(1024), gpu, s);  // part of it
/// uvm::prefetch({p, bytes}, uvm::cpu, s);          // pointer and length
/// @endcode
///
/// @par Thread safety
/// A value type: distinct objects may be used from different threads.
class memory_range {
 public:
  /// The empty range.
  constexpr memory_range() noexcept = default;

  /// The `bytes` bytes from `p`.
  memory_range(const void* p, std::size_t bytes) noexcept
      : addr_(reinterpret_cast<std::uintptr_t>(p)), bytes_(bytes) {}

  /// The elements of a span.
  template <class T, std::size_t Extent>
  memory_range(std::span<T, Extent> s) noexcept  // NOLINT(google-explicit-constructor)
      : memory_range(s.data(), s.size_bytes()) {}

  /// The elements of a contiguous, sized lvalue range such as a
  /// `std::vector` (not a temporary: the range must outlive the operation).
  template <contiguous_memory R>
  memory_range(R& r) noexcept  // NOLINT(google-explicit-constructor)
      : memory_range(std::ranges::data(r),
                     std::ranges::size(r) * sizeof(std::ranges::range_value_t<R>)) {}

  /// The first byte's address.
  [[nodiscard]] void* data() const noexcept {
    return reinterpret_cast<void*>(addr_);  // NOLINT(performance-no-int-to-ptr)
  }
  /// The length in bytes.
  [[nodiscard]] constexpr std::size_t size() const noexcept { return bytes_; }
  /// True for a range of 0 bytes.
  [[nodiscard]] constexpr bool empty() const noexcept { return bytes_ == 0; }
  /// The first byte's address as a number.
  [[nodiscard]] constexpr std::uintptr_t begin_address() const noexcept { return addr_; }
  /// The address one past the last byte, as a number (it may wrap for a bad range).
  [[nodiscard]] constexpr std::uintptr_t end_address() const noexcept { return addr_ + bytes_; }

  /// The pages that overlap the range: the range rounded out to page
  /// boundaries (empty for an empty range).
  [[nodiscard]] memory_range pages() const noexcept;
  /// Number of pages that overlap the range.
  [[nodiscard]] std::size_t page_count() const noexcept;

  /// Same start and length.
  friend constexpr bool operator==(const memory_range&, const memory_range&) noexcept = default;

 private:
  std::uintptr_t addr_ = 0;
  std::size_t bytes_ = 0;
};

/// "[0x7f12a0000000, 0x7f12a0004000)", the form error messages use.
[[nodiscard]] std::string to_string(const memory_range& r);
/// Writes to_string(r).
std::ostream& operator<<(std::ostream& os, const memory_range& r);

}  // namespace uvm
