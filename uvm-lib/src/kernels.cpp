// SPDX-License-Identifier: GPL-2.0
// The device's kernels: the operands checked and the kernel enqueued on a
// stream here, run by the stream's device's provider.
#include "uvm/kernels.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "detail.hpp"

namespace uvm {
namespace {

using detail::kernel;
using detail::kernel_args;

// Checks one operand; `what` names it.
void check_operand(const memory_range& r, std::size_t element, const char* what,
                   const error_context& ctx) {
  detail::check_range(r, ctx);
  if (r.begin_address() % element != 0 || r.size() % element != 0) {
    detail::fail(errc::misaligned, ctx,
                 std::string("operand ") + what + " at " + detail::hex(r.begin_address()) +
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
std::future<T> enqueue(stream& s, const kernel_args& a, Convert convert) {
  auto& st = detail::impl_of(s, a.name);
  const auto& dev = st.dev();
  error_context ctx = dev->context(std::string(a.name) + " on " + st.name());
  ctx.range = a.x;
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
  detail::queue* q = &st.provider_queue();
  return st.enqueue_task<T>(ctx, [dev, q, hw, a, ctx, convert] {
    // No elements: nothing to launch; the result of an empty input.
    if (a.x.empty()) {
      return convert(a.k == kernel::checksum ? 0xcbf29ce484222325ULL : 0);
    }
    return convert(dev->run_kernel(*q, hw, a, ctx));
  });
}

std::future<void> enqueue_void(stream& s, const kernel_args& a) {
  return enqueue<void>(s, a, [](std::uint64_t) {});
}

std::future<std::uint64_t> enqueue_u64(stream& s, const kernel_args& a) {
  return enqueue<std::uint64_t>(s, a, [](std::uint64_t v) { return v; });
}

}  // namespace

std::future<void> fill(std::span<std::uint32_t> x, std::uint32_t value, stream& s) {
  return enqueue_void(
      s, {.k = kernel::fill_u32, .name = "fill", .element = 4, .x = x, .y = {}, .scalar = value});
}

std::future<void> copy_bytes(memory_range dst, memory_range src, stream& s) {
  const bool overlap =
      dst.begin_address() < src.end_address() && src.begin_address() < dst.end_address();
  if (overlap && !dst.empty() && !src.empty()) {
    detail::fail(errc::invalid_argument, {.operation = "copy_bytes", .device = {}, .range = dst},
                 "the source " + to_string(src) + " overlaps the destination");
  }
  return enqueue_void(s, {.k = kernel::copy,
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
  return enqueue_void(s, {.k = kernel::axpy_f32,
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
  return enqueue_void(
      s, {.k = kernel::scale_f32, .name = "scale", .element = 4, .x = x, .y = {}, .scalar = bits});
}

std::future<void> increment(std::span<std::uint32_t> x, std::uint32_t by, stream& s) {
  return enqueue_void(s, {.k = kernel::increment_u32,
                          .name = "increment",
                          .element = 4,
                          .x = x,
                          .y = {},
                          .scalar = by});
}

std::future<double> sum(std::span<const float> x, stream& s) {
  return enqueue<double>(
      s, {.k = kernel::sum_f32, .name = "sum(float)", .element = 4, .x = x, .y = {}, .scalar = 0},
      [](std::uint64_t v) {
        double d = 0;
        std::memcpy(&d, &v, sizeof(d));
        return d;
      });
}

std::future<std::uint64_t> sum(std::span<const std::uint64_t> x, stream& s) {
  return enqueue_u64(
      s, {.k = kernel::sum_u64, .name = "sum(uint64)", .element = 8, .x = x, .y = {}, .scalar = 0});
}

std::future<std::uint64_t> checksum(memory_range bytes, stream& s) {
  return enqueue_u64(
      s,
      {.k = kernel::checksum, .name = "checksum", .element = 1, .x = bytes, .y = {}, .scalar = 0});
}

}  // namespace uvm
