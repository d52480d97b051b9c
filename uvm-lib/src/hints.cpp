// SPDX-License-Identifier: GPL-2.0
// Prefetch (HMMGPU_IOCTL_MIGRATE), advice (HMMGPU_IOCTL_ADVISE,
// HMMGPU_IOCTL_GET_ADVICE) and residency (HMMGPU_IOCTL_RESIDENCY).
#include "uvm/hints.hpp"

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "detail.hpp"
#include "uvm/stream.hpp"

namespace uvm {
namespace {

using detail::call;
using detail::device_impl;

// HMMGPU_IOCTL_MIGRATE of the pages [begin, begin + len) on `dev`, filling
// `status` (one entry per page, from `first`).
void migrate(const device_impl& dev, std::uintptr_t begin, std::size_t len, std::uint32_t flags,
             std::vector<std::uint8_t>& status, std::size_t first, const error_context& ctx) {
  hmmgpu_migrate m{};
  m.addr = begin;
  m.length = len;
  m.flags = flags;
  m.status = reinterpret_cast<std::uintptr_t>(status.data() + first);
  if (int err = dev.ioctl(HMMGPU_IOCTL_MIGRATE, &m, ctx)) {
    error_context c = ctx;
    if (err == EFAULT) {
      c.address = detail::first_unmapped(dev, *ctx.range);
    }
    detail::fail_errno(err, call::migrate, c);
  }
}

// Migrates again each run of pages whose status is `which`: first
// `before` (when not 0) through `before_dev`, then `flags` through `dev`.
void redo_runs(const device_impl& dev, const device_impl& before_dev, std::uint8_t which,
               std::uint32_t before, std::uint32_t flags, std::uintptr_t base,
               std::vector<std::uint8_t>& status, const error_context& ctx) {
  const std::size_t ps = page_size();
  for (std::size_t i = 0; i < status.size();) {
    if (status[i] != which) {
      i++;
      continue;
    }
    std::size_t j = i;
    while (j < status.size() && status[j] == which) {
      j++;
    }
    const std::uintptr_t at = base + i * ps;
    if (before != 0) {
      std::vector<std::uint8_t> scratch(j - i);
      migrate(before_dev, at, (j - i) * ps, before, scratch, 0, ctx);
    }
    migrate(dev, at, (j - i) * ps, flags, status, i, ctx);
    i = j;
  }
}

prefetch_result count(const std::vector<std::uint8_t>& status) {
  prefetch_result r;
  r.pages = status.size();
  for (std::uint8_t s : status) {
    switch (s) {
      case HMMGPU_PAGE_MIGRATED:
        r.migrated++;
        break;
      case HMMGPU_PAGE_RESIDENT:
        r.resident++;
        break;
      case HMMGPU_PAGE_NOT_PRESENT:
        r.not_present++;
        break;
      case HMMGPU_PAGE_FILE:
        r.file_backed++;
        break;
      case HMMGPU_PAGE_BUSY:
        r.busy++;
        break;
      case HMMGPU_PAGE_NO_VRAM:
        r.no_vram++;
        break;
      case HMMGPU_PAGE_COPY_FAILED:
        r.copy_failed++;
        break;
      default:
        r.other_device++;
        break;
    }
  }
  return r;
}

error_context prefetch_context(const memory_range& range, location to) {
  return {.operation = "prefetch to " + to_string(to), .device = {}, .range = range};
}

// The device a prefetch to `to` uses: `to` itself, or for the CPU any open
// device (the stream's first).
std::shared_ptr<device_impl> prefetch_device(location to, error_context& ctx,
                                             const std::shared_ptr<device_impl>& prefer) {
  auto dev = to.is_device() ? detail::device_for(to, ctx) : detail::some_device(ctx, prefer);
  ctx.device = dev->index();
  dev->require(capability::migrate, ctx);
  return dev;
}

// The prefetch itself, on the pages of `range`, through `dev`.
prefetch_result run_prefetch(const device_impl& dev, location to, const memory_range& range,
                             const error_context& ctx) {
  const memory_range pages = range.pages();
  std::vector<std::uint8_t> status(pages.size() / page_size());
  if (status.empty()) {
    return {};
  }
  const std::uint32_t dir = to.is_cpu() ? HMMGPU_MIGRATE_TO_SYSTEM : HMMGPU_MIGRATE_TO_DEVICE;
  migrate(dev, pages.begin_address(), pages.size(), dir, status, 0, ctx);
  // Pages on a device that is not a peer go through system memory.
  if (to.is_device()) {
    redo_runs(dev, dev, HMMGPU_PAGE_OTHER_DEVICE, HMMGPU_MIGRATE_TO_SYSTEM, dir,
              pages.begin_address(), status, ctx);
  }
  // Busy pages get one more try.
  redo_runs(dev, dev, HMMGPU_PAGE_BUSY, 0, dir, pages.begin_address(), status, ctx);
  return count(status);
}

// A driver's run as the library reports it.
residency_run to_run(const hmmgpu_run& r) {
  residency_run o;
  o.pages =
      memory_range(reinterpret_cast<const void*>(r.addr),  // NOLINT(performance-no-int-to-ptr)
                   r.npages * page_size());
  if (r.location == HMMGPU_LOC_SYSTEM) {
    o.where = cpu;
  } else if (r.location == HMMGPU_LOC_DEVICE) {
    o.where = location::of_device(r.device);
  }
  switch (r.mapping) {
    case HMMGPU_MAP_LOCAL:
      o.mapping = device_mapping::local;
      break;
    case HMMGPU_MAP_PEER:
      o.mapping = device_mapping::peer;
      break;
    case HMMGPU_MAP_SYSTEM:
      o.mapping = device_mapping::system;
      break;
    default:
      o.mapping = device_mapping::none;
      break;
  }
  o.writable = (r.flags & HMMGPU_RUN_WRITE) != 0;
  return o;
}

}  // namespace

prefetch_result prefetch(memory_range range, location to) {
  error_context ctx = prefetch_context(range, to);
  if (range.empty()) {
    return {};
  }
  detail::check_range(range, ctx);
  auto dev = prefetch_device(to, ctx, nullptr);
  return run_prefetch(*dev, to, range, ctx);
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
  return st.enqueue_task<prefetch_result>(ctx, [dev, to, range, ctx] {
    return dev ? run_prefetch(*dev, to, range, ctx) : prefetch_result{};
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
  std::uint32_t value = 0;
  switch (a) {
    case advice::preferred_location:
      value = loc.is_cpu() ? HMMGPU_ADVISE_PREFERRED_CPU : HMMGPU_ADVISE_PREFERRED_DEVICE;
      break;
    case advice::unset_preferred_location:
      value = HMMGPU_ADVISE_UNSET_PREFERRED;
      break;
    case advice::accessed_by:
    case advice::unset_accessed_by:
      if (loc.is_cpu()) {
        detail::fail(errc::not_supported, ctx,
                     "only a device can be an accessed-by processor: the CPU always reaches "
                     "every page through its own page tables");
      }
      value =
          a == advice::accessed_by ? HMMGPU_ADVISE_ACCESSED_BY : HMMGPU_ADVISE_UNSET_ACCESSED_BY;
      break;
    case advice::read_mostly:
    case advice::unset_read_mostly:
      value =
          a == advice::read_mostly ? HMMGPU_ADVISE_READ_MOSTLY : HMMGPU_ADVISE_UNSET_READ_MOSTLY;
      break;
    default:
      detail::fail(errc::invalid_argument, ctx, "unknown advice value");
  }
  // Advice naming a device goes through that device's file.
  auto dev = loc.is_device() ? detail::device_for(loc, ctx) : detail::some_device(ctx);
  ctx.device = dev->index();
  const memory_range pages = range.pages();
  hmmgpu_advise arg{};
  arg.addr = pages.begin_address();
  arg.length = pages.size();
  arg.advice = value;
  if (int err = dev->ioctl(HMMGPU_IOCTL_ADVISE, &arg, ctx)) {
    if (err == EFAULT) {
      ctx.address = detail::first_unmapped(*dev, range);
    }
    detail::fail_errno(err, call::advise, ctx);
  }
}

const char* to_string(device_mapping m) noexcept {
  return detail::enum_name(m, std::array{"none", "local", "peer", "system"});
}

std::vector<residency_run> residency(memory_range range, const device& observer) {
  const auto& dev = detail::impl_of(observer, "residency");
  error_context ctx{.operation = "residency", .device = dev->index(), .range = range};
  detail::check_range(range, ctx);
  std::vector<residency_run> out;
  if (range.empty()) {
    return out;
  }
  dev->require(capability::migrate, ctx);
  std::uintptr_t stop = 0;
  const int err = detail::query_residency(
      *dev, range.pages(), ctx, [&out](const hmmgpu_run& r) { out.push_back(to_run(r)); }, stop);
  if (err == EFAULT) {
    ctx.address = stop;
  }
  if (err != 0) {
    detail::fail_errno(err, call::residency, ctx);
  }
  return out;
}

std::size_t residency_summary::at(location l) const noexcept {
  if (l.is_cpu()) {
    return cpu;
  }
  return l.device_index() < on_device.size() ? on_device[l.device_index()] : 0;
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
      const unsigned d = r.where->device_index();
      if (s.on_device.size() <= d) {
        s.on_device.resize(d + 1);
      }
      s.on_device[d] += n;
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
  ctx.device = dev->index();
  const driver_version have = dev->props().driver;
  const std::string uapi = std::to_string(have.major) + "." + std::to_string(have.minor);
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  if (have < driver_version{1, 4}) {
    detail::fail(errc::not_supported, ctx,
                 "the driver (uapi " + uapi + ") cannot report advice: that needs uapi 1.4");
  }
  const memory_range pages = range.pages();
  hmmgpu_range_advice q{};
  q.addr = pages.begin_address();
  q.length = pages.size();
  if (int err = dev->ioctl(HMMGPU_IOCTL_GET_ADVICE, &q, ctx)) {
    if (err == EFAULT) {
      ctx.address = detail::first_unmapped(*dev, range);
    }
    detail::fail_errno(err, call::get_advice, ctx);
  }
  range_advice r;
  if (q.preferred == HMMGPU_PREFERRED_CPU) {
    r.preferred_location = cpu;
  } else if (q.preferred == HMMGPU_PREFERRED_DEVICE) {
    r.preferred_location = location::of_device(q.preferred_device);
  }
  for (unsigned i = 0; i < 64; i++) {
    if (((q.accessed_by >> i) & 1U) != 0) {
      r.accessed_by.push_back(location::of_device(i));
    }
  }
  return r;
#else
  detail::fail(errc::not_supported, ctx,
               "this libuvm was built against uapi 1.3, which cannot report advice (the driver "
               "has uapi " +
                   uapi + "); that needs uapi 1.4");
#endif
}

}  // namespace uvm
