// SPDX-License-Identifier: GPL-2.0
// uvm::errc, its category, uvm::error, and the explanations of the hmmgpu
// driver's errno values per call (driver/include/uapi/hmmgpu.h). The CUDA
// provider explains CUDA's errors itself (cuda/cuda.cpp).
#include "uvm/error.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <utility>

#include "detail.hpp"

namespace uvm {
namespace {

class category final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "uvm"; }

  [[nodiscard]] std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::device_closed:
        return "the device handle is closed";
      case errc::no_device:
        return "no such device";
      case errc::device_lost:
        return "the device was removed or lost";
      case errc::device_failed:
        return "the device failed";
      case errc::timed_out:
        return "the device did not complete in time";
      case errc::not_supported:
        return "not supported";
      case errc::bad_address:
        return "memory not mapped, or not with the access needed";
      case errc::invalid_range:
        return "invalid memory range";
      case errc::misaligned:
        return "operand not aligned to its element size";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::busy:
        return "the device is busy";
      case errc::wrong_process:
        return "the device belongs to another process";
      case errc::canceled:
        return "not run: an earlier operation on the stream failed";
    }
    return "unknown uvm error " + std::to_string(code);
  }

  [[nodiscard]] std::error_condition default_error_condition(int code) const noexcept override {
    switch (static_cast<errc>(code)) {
      case errc::device_closed:
        return std::errc::bad_file_descriptor;
      case errc::no_device:
        return std::errc::no_such_device_or_address;
      case errc::device_lost:
        return std::errc::no_such_device;
      case errc::device_failed:
        return std::errc::io_error;
      case errc::timed_out:
        return std::errc::timed_out;
      case errc::not_supported:
        return std::errc::operation_not_supported;
      case errc::bad_address:
        return std::errc::bad_address;
      case errc::invalid_range:
      case errc::misaligned:
      case errc::invalid_argument:
        return std::errc::invalid_argument;
      case errc::busy:
        return std::errc::device_or_resource_busy;
      case errc::wrong_process:
        return std::errc::operation_not_permitted;
      case errc::canceled:
        return std::errc::operation_canceled;
    }
    return {code, *this};
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

error::error(std::error_code ec, const std::string& what, error_context context)
    : std::system_error(ec, what),
      context_(std::make_shared<const error_context>(std::move(context))) {}

namespace detail {

std::string hex(std::uintptr_t a) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%#lx", static_cast<unsigned long>(a));
  return buf.data();
}

std::string device_name(provider p, unsigned index) {
  return std::string(to_string(p)) + std::to_string(index);
}

namespace {

std::error_code code_of(int err) {
  switch (err) {
    case ENODEV:
      return errc::device_lost;
    case EIO:
      return errc::device_failed;
    case ETIMEDOUT:
      return errc::timed_out;
    case EOPNOTSUPP:
    case ENOTTY:
      return errc::not_supported;
    case EFAULT:
      return errc::bad_address;
    case EINVAL:
      return errc::invalid_argument;
    case EBUSY:
      return errc::busy;
    case EPERM:
      return errc::wrong_process;
    default:
      return {err, std::system_category()};
  }
}

const char* call_name(call c) {
  switch (c) {
    case call::open:
      return "opening the device";
    case call::get_info:
      return "reading the device's properties";
    case call::nop:
      return "a round trip of empty commands";
    case call::migrate:
      return "migration";
    case call::counters:
      return "reading counters";
    case call::launch:
      return "kernel launch";
    case call::wait:
      return "waiting for a kernel";
    case call::residency:
      return "residency query";
    case call::advise:
      return "advice";
    case call::get_advice:
      return "advice query";
  }
  return "the call";
}

// Why errno `err` of call `c` happened, in the terms of the uapi header.
std::string explain(int err, call c, const error_context& ctx) {
  switch (err) {
    case ENODEV:
      return "the device was removed or has been lost; only closing it remains";
    case EIO:
      if (c == call::migrate) {
        return "the device failed and nothing moved";
      }
      return "the device reported an error or has halted";
    case ETIMEDOUT:
      return "the device did not complete within the driver's fence timeout and was halted";
    case EOPNOTSUPP:
      if (c == call::advise) {
        return "read-mostly advice is not supported: read-only copies of a page on several "
               "processors cannot be kept coherent, because the kernel cannot tell the driver "
               "of the CPU's next write to such a page";
      }
      return std::string(call_name(c)) + " is not supported here";
    case ENOTTY:
      return std::string("the device (or its driver version) does not support ") + call_name(c);
    case EFAULT:
      if (ctx.address) {
        return "the page at " + hex(*ctx.address) + " is not mapped in this process";
      }
      if (c == call::launch || c == call::wait) {
        return "the device touched memory this process has not mapped with the access it needs";
      }
      return "part of the range is not mapped in this process";
    case EPERM:
      return "the device was opened by another process: a uvm::device must not be used in a "
             "child after fork()";
    case EBUSY:
      return "the device file has the most launches pending, or the device has no free "
             "address-space context for this process";
    case EINVAL:
      return std::string("the driver rejected the arguments of ") + call_name(c);
    case ENOMEM:
      return "the kernel ran out of memory";
    default:
      return std::string(call_name(c)) + " failed";
  }
}

}  // namespace

std::string describe(const error_context& ctx) {
  std::string s = ctx.operation;
  if (ctx.range) {
    s += " of " + to_string(*ctx.range);
  }
  // The device, unless the operation already names it ("prefetch to hmmgpu1").
  if (ctx.device) {
    const std::string dev = device_name(ctx.provider, *ctx.device);
    if (ctx.operation.find(dev) == std::string::npos) {
      s += " on " + dev;
    }
  }
  return s;
}

void fail(std::error_code code, const error_context& ctx, const std::string& why) {
  throw error(code, describe(ctx) + ": " + why, ctx);
}

void fail_errno(int err, call c, const error_context& ctx, const std::string& why) {
  // The calls on ranges are validated before they reach the driver but
  // for the end of the user address space, which only the kernel knows.
  const bool on_range =
      c == call::migrate || c == call::residency || c == call::advise || c == call::get_advice;
  if (err == EINVAL && on_range && why.empty()) {
    fail(errc::invalid_range, ctx, "the range lies outside the user address space");
  }
  fail(code_of(err), ctx, why.empty() ? explain(err, c, ctx) : why);
}

void check_range(const memory_range& r, const error_context& ctx) {
  if (r.end_address() < r.begin_address()) {
    fail(errc::invalid_range, ctx, "the range wraps around the end of the address space");
  }
  if (r.end_address() > (std::uintptr_t{1} << 57)) {
    fail(errc::invalid_range, ctx, "the range lies outside the user address space");
  }
}

std::exception_ptr canceled(const error_context& ctx, const std::exception_ptr& cause) {
  std::string why = "not run, because an earlier operation on the stream failed";
  try {
    std::rethrow_exception(cause);
  } catch (const std::exception& e) {
    why += " (" + std::string(e.what()) + ")";
  } catch (...) {  // NOLINT(bugprone-empty-catch): the cause is named when it can be
  }
  return std::make_exception_ptr(error(errc::canceled, describe(ctx) + ": " + why, ctx));
}

}  // namespace detail
}  // namespace uvm
