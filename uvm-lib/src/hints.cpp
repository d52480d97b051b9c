// SPDX-License-Identifier: GPL-2.0
// Prefetch, advice, residency and range attributes: the arguments checked
// and the device chosen here, the work done by the device's provider.
#include "uvm/hints.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "detail.hpp"
#include "uvm/stream.hpp"

namespace uvm {
namespace {

using detail::device_impl;

error_context prefetch_context(const memory_range& range, location to) {
  return {.operation = "prefetch to " + to_string(to), .device = {}, .range = range};
}

// The device a prefetch to `to` uses: `to` itself, or for the CPU any open
// device (the stream's first).
std::shared_ptr<device_impl> prefetch_device(location to, error_context& ctx,
                                             const std::shared_ptr<device_impl>& prefer) {
  auto dev = to.is_device() ? detail::device_for(to, ctx) : detail::some_device(ctx, prefer);
  dev->name_in(ctx);
  dev->require(capability::migrate, ctx);
  return dev;
}

}  // namespace

prefetch_result prefetch(memory_range range, location to) {
  error_context ctx = prefetch_context(range, to);
  if (range.empty()) {
    return {};
  }
  detail::check_range(range, ctx);
  auto dev = prefetch_device(to, ctx, nullptr);
  return dev->prefetch(to, range, nullptr, ctx);
}

prefetch_result prefetch(memory_range range, location to, std::error_code& ec) noexcept {
  // Not `r = prefetch(...)` into the returned object: GCC 12 then builds
  // the result in place and drops its zeroing for the throwing path.
  std::optional<prefetch_result> r;
  detail::to_error_code(ec, [&] { r = prefetch(range, to); });
  return r.value_or(prefetch_result{});
}

std::future<prefetch_result> prefetch(memory_range range, location to, stream& s) {
  auto& st = detail::impl_of(s, "prefetch");
  error_context ctx = prefetch_context(range, to);
  detail::check_range(range, ctx);
  std::shared_ptr<device_impl> dev;
  if (!range.empty()) {
    dev = prefetch_device(to, ctx, st.dev());
  }
  ctx.operation += " on " + st.name();
  // The stream's queue serves a prefetch through its own device only.
  detail::queue* q = dev == st.dev() ? &st.provider_queue() : nullptr;
  return st.enqueue_task<prefetch_result>(ctx, [dev, to, range, ctx, q] {
    return dev ? dev->prefetch(to, range, q, ctx) : prefetch_result{};
  });
}

const char* to_string(advice a) noexcept {
  return detail::enum_name(
      a, std::array{"preferred_location", "unset_preferred_location", "accessed_by",
                    "unset_accessed_by", "read_mostly", "unset_read_mostly"});
}

void advise(memory_range range, advice a, location loc) {
  error_context ctx{
      .operation = std::string("advise(") + to_string(a) + ", " + to_string(loc) + ")",
      .device = {},
      .range = range};
  detail::check_range(range, ctx);
  if (range.empty()) {
    return;
  }
  switch (a) {
    case advice::preferred_location:
    case advice::unset_preferred_location:
    case advice::read_mostly:
    case advice::unset_read_mostly:
      break;
    case advice::accessed_by:
    case advice::unset_accessed_by:
      if (loc.is_cpu()) {
        detail::fail(errc::not_supported, ctx,
                     "only a device can be an accessed-by processor: the CPU always reaches "
                     "every page through its own page tables");
      }
      break;
    default:
      detail::fail(errc::invalid_argument, ctx, "unknown advice value");
  }
  // Advice naming a device goes through that device.
  auto dev = loc.is_device() ? detail::device_for(loc, ctx) : detail::some_device(ctx);
  dev->name_in(ctx);
  dev->advise(range, a, loc, ctx);
}

const char* to_string(device_mapping m) noexcept {
  return detail::enum_name(m, std::array{"none", "local", "peer", "system"});
}

std::vector<residency_run> residency(memory_range range, const device& observer) {
  const auto& dev = detail::impl_of(observer, "residency");
  error_context ctx = dev->context("residency");
  ctx.range = range;
  detail::check_range(range, ctx);
  if (range.empty()) {
    return {};
  }
  dev->require(capability::migrate, ctx);
  return dev->residency(range, ctx);
}

std::size_t residency_summary::at(location l) const noexcept {
  if (l.is_cpu()) {
    return cpu;
  }
  const auto& v = l.provider() == provider::cuda ? on_cuda_device : on_device;
  return l.device_index() < v.size() ? v[l.device_index()] : 0;
}

residency_summary summarize(std::span<const residency_run> runs) {
  residency_summary s;
  for (const auto& r : runs) {
    const std::size_t n = r.pages.page_count();
    if (!r.where) {
      s.unpopulated += n;
    } else if (r.where->is_cpu()) {
      s.cpu += n;
    } else {
      auto& v = r.where->provider() == provider::cuda ? s.on_cuda_device : s.on_device;
      const unsigned d = r.where->device_index();
      if (v.size() <= d) {
        v.resize(d + 1);
      }
      v[d] += n;
    }
  }
  return s;
}

range_advice range_attributes(memory_range range) {
  error_context ctx{.operation = "range_attributes", .device = {}, .range = range};
  detail::check_range(range, ctx);
  if (range.empty()) {
    detail::fail(errc::invalid_range, ctx, "the range is empty");
  }
  auto dev = detail::some_device(ctx);
  dev->name_in(ctx);
  return dev->range_attributes(range, ctx);
}

}  // namespace uvm
