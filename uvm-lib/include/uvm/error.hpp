// SPDX-License-Identifier: GPL-2.0
/// @file uvm/error.hpp
/// @brief Errors: uvm::errc, uvm::error_category(), and the exception uvm::error.
///
/// Every failure is reported; nothing is silently ignored. Functions throw
/// uvm::error (a `std::system_error`); the blocking calls also come in a
/// form that fills a `std::error_code&` instead. Errors of asynchronous
/// operations are reported by the next synchronize() of their stream (see
/// uvm::stream).
///
/// The code of an error is a uvm::errc in uvm::error_category() when the
/// library knows what it means for the operation, and otherwise the
/// driver's or the C library's errno in `std::system_category()` (e.g.
/// `ENOMEM`). CUDA errors map to uvm::errc (e.g.
/// cudaErrorMemoryAllocation to `ENOMEM`, an illegal address to
/// errc::device_failed), and the message names the CUDA error. Codes of both compare equal to the
/// matching portable `std::errc` conditions:
/// @code
/// try {
///   uvm::advise(v, uvm::advice::read_mostly, gpu);
/// } catch (const uvm::error& e) {
///   assert(e.code() == uvm::errc::not_supported);
///   assert(e.code() == std::errc::operation_not_supported);
///   std::puts(e.what());  // names the operation, the range, the device and why
/// }
/// @endcode
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>

#include "uvm/location.hpp"
#include "uvm/range.hpp"

namespace uvm {

/// The library's error codes (values of uvm::error_category()).
enum class errc {
  /// The uvm::device was closed (device::close()) or moved from.
  device_closed = 1,
  /// No such device: /dev/hmmgpuN does not exist (is hmmgpu.ko loaded?),
  /// there is no such CUDA device (or no CUDA driver, or libuvm was built
  /// without CUDA), or a location names a device that no uvm::device of
  /// this process has open.
  no_device,
  /// The device was removed (unbound) or lost; only closing it remains.
  /// (driver: ENODEV)
  device_lost,
  /// The device failed or has halted. (driver: EIO)
  device_failed,
  /// The device did not complete in time and was halted. (driver: ETIMEDOUT)
  timed_out,
  /// The device or the driver cannot do this: e.g. a sysram device runs
  /// no kernels, read-mostly advice on hmmgpu, a query the driver's uapi
  /// version lacks, ordinary memory on a CUDA device without pageable
  /// memory access. (driver: EOPNOTSUPP, ENOTTY)
  not_supported,
  /// Memory of the range is not mapped in this process, or not with the
  /// access the operation needs (e.g. a kernel writing read-only memory).
  /// (driver: EFAULT)
  bad_address,
  /// The range wraps around the address space or lies outside the user
  /// address space.
  invalid_range,
  /// A kernel operand is not aligned to its element size.
  misaligned,
  /// An argument is out of its documented range (e.g. a stream number, a
  /// kernel of more than 256 MiB, a moved-from handle). (driver: EINVAL)
  invalid_argument,
  /// The device is busy: too many launches pending, or no free
  /// address-space context. Retry later. (driver: EBUSY)
  busy,
  /// The device was opened by another process: a uvm::device, uvm::stream
  /// or memory resource must not be used in a child after fork().
  /// (driver: EPERM)
  wrong_process,
  /// The operation did not run: an earlier operation on its stream (or on
  /// a stream it waited for) failed, and that error was not yet reported
  /// by synchronize().
  canceled,
};

/// The category of uvm::errc: `name()` is "uvm", `message()` describes
/// each code; codes compare equal to the matching `std::errc` (e.g.
/// errc::bad_address to std::errc::bad_address, errc::not_supported to
/// std::errc::operation_not_supported).
///
/// @return a reference to the one category object.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] const std::error_category& error_category() noexcept;

/// A `std::error_code` of uvm::error_category(); found by ADL, so
/// `std::error_code ec = uvm::errc::bad_address;` works.
[[nodiscard]] std::error_code make_error_code(errc e) noexcept;

/// What an error was about. Every field that applies is set.
struct error_context {
  /// The operation, e.g. "prefetch", "advise(read_mostly)", "fill_u32".
  std::string operation{};
  /// The number of the device the operation used, when it used one: N of
  /// /dev/hmmgpuN, or the CUDA device ordinal (see `provider`).
  std::optional<unsigned> device{};
  /// The memory the operation applied to (as the caller gave it), when any.
  std::optional<memory_range> range{};
  /// A single address the error is about: the page a kernel faulted on,
  /// the first unmapped page of a range.
  std::optional<std::uintptr_t> address{};
  /// The provider of `device`.
  uvm::provider provider = uvm::provider::hmmgpu;
};

/// The exception the library throws: a `std::system_error` whose code is a
/// uvm::errc or a system errno, and whose what() says what failed, where and
/// why, e.g. "prefetch of [0x7f..000, 0x7f..000) to hmmgpu1: the page at
/// 0x7f..000 is not mapped in this process: memory not mapped or not
/// accessible (bad address)".
///
/// @par Thread safety
/// Immutable once constructed; copies share the context.
class error : public std::system_error {
 public:
  /// An error with code `ec`, a message `what` (the library appends
  /// ": " and the code's message) and its context.
  error(std::error_code ec, const std::string& what, error_context context = {});

  /// What the error was about.
  [[nodiscard]] const error_context& context() const noexcept { return *context_; }

 private:
  std::shared_ptr<const error_context> context_;
};

}  // namespace uvm

namespace std {
/// uvm::errc is an error-code enum: it converts to `std::error_code`.
template <>
struct is_error_code_enum<uvm::errc> : true_type {};
}  // namespace std
