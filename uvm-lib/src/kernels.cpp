// SPDX-License-Identifier: GPL-2.0
// The device's kernels (HMMGPU_IOCTL_LAUNCH, HMMGPU_IOCTL_WAIT), enqueued
// on a stream.
#include "uvm/kernels.hpp"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "detail.hpp"

namespace uvm {
namespace {

using detail::call;
using detail::device_impl;

// One kernel: the uapi's operands.
struct launch_args {
  std::uint32_t kernel = 0;
  const char* name = "";
  std::size_t element = 1;  // bytes per element
  memory_range x;           // operand x (its size is count * element)
  memory_range y;           // operand y, of a kernel with one
  bool has_y = false;
  std::uint64_t scalar = 0;
};

// How long one HMMGPU_IOCTL_WAIT sleeps before the device is checked
// again (so that close() is not held up).
constexpr std::uint64_t kWaitSliceNs = 100'000'000;
// How long a launch retries while the device is busy.
constexpr auto kBusyRetry = std::chrono::seconds(5);

std::string hex(std::uintptr_t a) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%#lx", static_cast<unsigned long>(a));
  return buf.data();
}

// Runs the kernel on the stream's hardware stream and waits for it:
// returns its result or throws.
std::uint64_t run_kernel(const device_impl& dev, unsigned hw, const launch_args& a,
                         const error_context& ctx) {
  hmmgpu_launch l{};
  l.kernel = a.kernel;
  l.stream = hw;
  l.count = a.x.size() / a.element;
  l.x = a.x.begin_address();
  l.y = a.y.begin_address();
  l.scalar = a.scalar;
  const auto deadline = std::chrono::steady_clock::now() + kBusyRetry;
  for (;;) {
    const int err = dev.ioctl(HMMGPU_IOCTL_LAUNCH, &l, ctx);
    if (err == 0) {
      break;
    }
    if (err != EBUSY || std::chrono::steady_clock::now() > deadline) {
      detail::fail_errno(err, call::launch, ctx);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  hmmgpu_wait w{};
  for (;;) {
    w = {};
    w.stream = hw;
    w.fence = l.fence;
    w.timeout_ns = kWaitSliceNs;
    const int err = dev.ioctl(HMMGPU_IOCTL_WAIT, &w, ctx);
    if (err == 0) {
      break;
    }
    if (err != ETIME) {
      detail::fail_errno(err, call::wait, ctx);
    }
  }
  switch (w.error) {
    case 0:
      return w.result;
    case EFAULT: {
      error_context c = ctx;
      c.address = w.fault_addr;
      detail::fail(errc::bad_address, c,
                   "the device touched the page at " + hex(w.fault_addr) +
                       ", which this process has not mapped with the access the kernel needs "
                       "(the elements before it may have been processed)");
    }
    case EINVAL:
      detail::fail(errc::invalid_argument, ctx, "the device rejected the kernel's operands");
    default:
      detail::fail_errno(w.error, call::launch, ctx, w.error == EIO ? "the device failed" : "");
  }
}

// Checks one operand; `what` names it.
void check_operand(const memory_range& r, std::size_t element, const char* what,
                   const error_context& ctx) {
  detail::check_range(r, ctx);
  if (r.begin_address() % element != 0 || r.size() % element != 0) {
    detail::fail(errc::misaligned, ctx,
                 std::string("operand ") + what + " at " + hex(r.begin_address()) +
                     " is not aligned to " + std::to_string(element) + " bytes");
  }
  if (r.size() > max_kernel_bytes) {
    detail::fail(errc::invalid_argument, ctx,
                 std::string("operand ") + what + " has " + std::to_string(r.size()) +
                     " bytes; a kernel takes at most 256 MiB per operand");
  }
}

// Checks `a` and enqueues it on `s`; the future gets convert(result).
template <class T, class Convert>
std::future<T> enqueue(stream& s, const launch_args& a, Convert convert) {
  auto& st = detail::impl_of(s, a.name);
  const auto& dev = st.dev();
  error_context ctx{
      .operation = std::string(a.name) + " on " + st.name(), .device = dev->index(), .range = a.x};
  dev->require(capability::compute, ctx);
  check_operand(a.x, a.element, "x", ctx);
  if (a.has_y) {
    check_operand(a.y, a.element, "y", ctx);
    if (a.y.size() != a.x.size()) {
      detail::fail(errc::invalid_argument, ctx,
                   "the operands differ in size (" + std::to_string(a.x.size()) + " and " +
                       std::to_string(a.y.size()) + " bytes)");
    }
  }
  const unsigned hw = st.hardware_stream();
  return st.enqueue_task<T>(ctx, [dev, hw, a, ctx, convert] {
    // No elements: nothing to launch; the result of an empty input.
    if (a.x.empty()) {
      return convert(a.kernel == HMMGPU_KERNEL_CHECKSUM ? 0xcbf29ce484222325ULL : 0);
    }
    return convert(run_kernel(*dev, hw, a, ctx));
  });
}

std::future<void> enqueue_void(stream& s, const launch_args& a) {
  return enqueue<void>(s, a, [](std::uint64_t) {});
}

std::future<std::uint64_t> enqueue_u64(stream& s, const launch_args& a) {
  return enqueue<std::uint64_t>(s, a, [](std::uint64_t v) { return v; });
}

}  // namespace

std::future<void> fill(std::span<std::uint32_t> x, std::uint32_t value, stream& s) {
  return enqueue_void(s, {.kernel = HMMGPU_KERNEL_FILL_U32,
                          .name = "fill",
                          .element = 4,
                          .x = x,
                          .y = {},
                          .scalar = value});
}

std::future<void> copy_bytes(memory_range dst, memory_range src, stream& s) {
  const bool overlap =
      dst.begin_address() < src.end_address() && src.begin_address() < dst.end_address();
  if (overlap && !dst.empty() && !src.empty()) {
    detail::fail(errc::invalid_argument, {.operation = "copy_bytes", .device = {}, .range = dst},
                 "the source " + to_string(src) + " overlaps the destination");
  }
  return enqueue_void(s, {.kernel = HMMGPU_KERNEL_COPY,
                          .name = "copy_bytes",
                          .element = 1,
                          .x = dst,
                          .y = src,
                          .has_y = true,
                          .scalar = 0});
}

std::future<void> axpy(float a, std::span<const float> x, std::span<float> y, stream& s) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &a, sizeof(bits));
  // The device computes its x = a * y + x: its x is our y.
  return enqueue_void(s, {.kernel = HMMGPU_KERNEL_AXPY_F32,
                          .name = "axpy",
                          .element = 4,
                          .x = y,
                          .y = x,
                          .has_y = true,
                          .scalar = bits});
}

std::future<void> scale(float a, std::span<float> x, stream& s) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &a, sizeof(bits));
  return enqueue_void(s, {.kernel = HMMGPU_KERNEL_SCALE_F32,
                          .name = "scale",
                          .element = 4,
                          .x = x,
                          .y = {},
                          .scalar = bits});
}

std::future<void> increment(std::span<std::uint32_t> x, std::uint32_t by, stream& s) {
  return enqueue_void(s, {.kernel = HMMGPU_KERNEL_INCREMENT_U32,
                          .name = "increment",
                          .element = 4,
                          .x = x,
                          .y = {},
                          .scalar = by});
}

std::future<double> sum(std::span<const float> x, stream& s) {
  return enqueue<double>(s,
                         {.kernel = HMMGPU_KERNEL_SUM_F32,
                          .name = "sum(float)",
                          .element = 4,
                          .x = x,
                          .y = {},
                          .scalar = 0},
                         [](std::uint64_t v) {
                           double d = 0;
                           std::memcpy(&d, &v, sizeof(d));
                           return d;
                         });
}

std::future<std::uint64_t> sum(std::span<const std::uint64_t> x, stream& s) {
  return enqueue_u64(s, {.kernel = HMMGPU_KERNEL_SUM_U64,
                         .name = "sum(uint64)",
                         .element = 8,
                         .x = x,
                         .y = {},
                         .scalar = 0});
}

std::future<std::uint64_t> checksum(memory_range bytes, stream& s) {
  return enqueue_u64(s, {.kernel = HMMGPU_KERNEL_CHECKSUM,
                         .name = "checksum",
                         .element = 1,
                         .x = bytes,
                         .y = {},
                         .scalar = 0});
}

}  // namespace uvm
