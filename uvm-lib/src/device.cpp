// SPDX-License-Identifier: GPL-2.0
// Devices: enumeration over the providers, the registry of open devices,
// what every device_impl shares, uvm::device, counters.
#include "uvm/device.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "detail.hpp"
#include "uvm/error.hpp"

namespace uvm {
namespace detail {
namespace {

// The registry of open devices: a device location resolves to one.
std::mutex& registry_mutex() {
  static std::mutex mu;
  return mu;
}
std::vector<std::weak_ptr<device_impl>>& registry() {
  static std::vector<std::weak_ptr<device_impl>> devices;
  return devices;
}

}  // namespace

std::array<provider_impl*, 2> providers() { return {&hmmgpu_provider(), &cuda_provider()}; }

provider_impl& provider_of(provider p) {
  return p == provider::cuda ? cuda_provider() : hmmgpu_provider();
}

void add_to_registry(const std::shared_ptr<device_impl>& d) {
  std::lock_guard lk(registry_mutex());
  auto& r = registry();
  std::erase_if(r, [](const auto& w) { return w.expired(); });
  r.push_back(d);
}

std::shared_ptr<device_impl> find_device(location loc) {
  std::lock_guard lk(registry_mutex());
  for (const auto& w : registry()) {
    auto d = w.lock();
    if (d && d->where() == loc && d->is_open()) {
      return d;
    }
  }
  return nullptr;
}

bool any_open(provider p) {
  std::lock_guard lk(registry_mutex());
  return std::any_of(registry().begin(), registry().end(), [p](const auto& w) {
    auto d = w.lock();
    return d && d->kind() == p && d->is_open();
  });
}

std::shared_ptr<device_impl> any_device(const std::shared_ptr<device_impl>& prefer) {
  if (prefer && prefer->is_open()) {
    return prefer;
  }
  std::shared_ptr<device_impl> other;
  std::lock_guard lk(registry_mutex());
  for (const auto& w : registry()) {
    auto d = w.lock();
    if (!d || !d->is_open()) {
      continue;
    }
    if (d->props().supports(capability::migrate)) {
      return d;
    }
    if (!other) {
      other = d;
    }
  }
  return other;
}

std::shared_ptr<device_impl> device_for(location loc, const error_context& ctx) {
  auto d = find_device(loc);
  if (!d) {
    const std::string ctor =
        loc.provider() == provider::cuda
            ? "uvm::device(uvm::provider::cuda, " + std::to_string(loc.device_index()) + ")"
            : "uvm::device(" + std::to_string(loc.device_index()) + ")";
    fail(errc::no_device, ctx,
         to_string(loc) + " is not open in this process: open it with " + ctor + " first");
  }
  return d;
}

std::shared_ptr<device_impl> some_device(const error_context& ctx,
                                         const std::shared_ptr<device_impl>& prefer) {
  auto d = any_device(prefer);
  if (!d) {
    fail(errc::no_device, ctx,
         "no device is open in this process: open one with uvm::device first");
  }
  return d;
}

const std::shared_ptr<device_impl>& impl_of(const device& d, const char* operation) {
  const auto& impl = access::impl(d);
  if (!impl) {
    fail(errc::device_closed, {.operation = operation}, "the device was moved from");
  }
  return impl;
}

error_context device_impl::context(std::string operation) const {
  error_context ctx{.operation = std::move(operation)};
  name_in(ctx);
  return ctx;
}

void device_impl::name_in(error_context& ctx) const noexcept {
  ctx.device = index();
  ctx.provider = kind();
}

void device_impl::check_process(const error_context& ctx) const {
  if (::getpid() != owner_) {
    fail(errc::wrong_process, ctx,
         name() +
             " was opened by the parent process: a uvm::device (and its streams) must not be "
             "used in a child after fork(); open the device again in the child");
  }
}

void device_impl::require(capability cap, const error_context& ctx) const {
  if (props_.supports(cap)) {
    return;
  }
  const std::string dev = describe();
  switch (cap) {
    case capability::compute:
      fail(errc::not_supported, ctx, dev + " runs no kernels: its backend has no compute engine");
    case capability::migrate:
      fail(errc::not_supported, ctx,
           dev + (kind() == provider::cuda
                      ? " cannot migrate memory: it has no concurrent managed access "
                        "(cudaDevAttrConcurrentManagedAccess is 0)"
                      : " cannot migrate memory"));
    case capability::counters:
      fail(errc::not_supported, ctx, dev + " has no counters");
    case capability::nop:
      fail(errc::not_supported, ctx, dev + " cannot run empty commands");
    case capability::peer_access:
      fail(errc::not_supported, ctx, dev + " has no peers");
  }
  fail(errc::not_supported, ctx, dev + " lacks the capability");
}

unsigned device_impl::next_hardware_stream() noexcept {
  const unsigned n = props_.streams;
  return n == 0 ? 0 : next_stream_.fetch_add(1, std::memory_order_relaxed) % n;
}

}  // namespace detail

const char* to_string(backend b) noexcept {
  return detail::enum_name(b, std::array{"emu", "sysram", "unknown", "cuda"});
}

const char* to_string(device_state s) noexcept {
  return detail::enum_name(s, std::array{"ready", "halted", "lost", "unknown"});
}

std::vector<device_summary> list_devices() {
  std::vector<device_summary> out;
  for (detail::provider_impl* p : detail::providers()) {
    auto devs = p->list();
    out.insert(out.end(), std::make_move_iterator(devs.begin()),
               std::make_move_iterator(devs.end()));
  }
  return out;
}

provider_info provider_status(provider p) { return detail::provider_of(p).status(); }

bool device_properties::supports(capability c) const noexcept {
  return detail::capability_bit(*this, c);
}

bool device_properties::reports(const std::string& counter) const {
  return std::find(unavailable_counters.begin(), unavailable_counters.end(), counter) ==
         unavailable_counters.end();
}

device_counters operator-(const device_counters& a, const device_counters& b) {
  device_counters d;
  d.to_device_pages = a.to_device_pages - b.to_device_pages;
  d.to_device_bytes = a.to_device_bytes - b.to_device_bytes;
  d.to_system_pages = a.to_system_pages - b.to_system_pages;
  d.to_system_bytes = a.to_system_bytes - b.to_system_bytes;
  d.cpu_faults = a.cpu_faults - b.cpu_faults;
  d.fault_around_pages = a.fault_around_pages - b.fault_around_pages;
  d.copy_batches = a.copy_batches - b.copy_batches;
  d.copy_errors = a.copy_errors - b.copy_errors;
  d.vram_alloc_failures = a.vram_alloc_failures - b.vram_alloc_failures;
  d.device_faults = a.device_faults - b.device_faults;
  d.fault_replays = a.fault_replays - b.fault_replays;
  d.fault_cancels = a.fault_cancels - b.fault_cancels;
  d.evicted_chunks = a.evicted_chunks - b.evicted_chunks;
  d.evicted_pages = a.evicted_pages - b.evicted_pages;
  d.evicted_bytes = a.evicted_bytes - b.evicted_bytes;
  d.fault_batches = a.fault_batches - b.fault_batches;
  d.fault_duplicates = a.fault_duplicates - b.fault_duplicates;
  d.prefetched_pages = a.prefetched_pages - b.prefetched_pages;
  d.remote_mapped_pages = a.remote_mapped_pages - b.remote_mapped_pages;
  d.thrashing_events = a.thrashing_events - b.thrashing_events;
  d.peer_to_device_pages = a.peer_to_device_pages - b.peer_to_device_pages;
  d.peer_to_device_bytes = a.peer_to_device_bytes - b.peer_to_device_bytes;
  d.tlb_invalidates = a.tlb_invalidates - b.tlb_invalidates;
  d.fault_dropped = a.fault_dropped - b.fault_dropped;
  d.channel_busy.resize(std::max(a.channel_busy.size(), b.channel_busy.size()));
  for (std::size_t i = 0; i < d.channel_busy.size(); i++) {
    auto at = [i](const device_counters& c) {
      return i < c.channel_busy.size() ? c.channel_busy[i] : std::chrono::nanoseconds(0);
    };
    d.channel_busy[i] = at(a) - at(b);
  }
  return d;
}

namespace {

std::shared_ptr<detail::device_impl> open_device(provider p, unsigned index) {
  auto d = detail::provider_of(p).open(index);
  detail::add_to_registry(d);
  return d;
}

}  // namespace

device::device(unsigned index) : impl_(open_device(provider::hmmgpu, index)) {}

device::device(provider p, unsigned index) : impl_(open_device(p, index)) {}

device::device(const device_summary& s) : impl_(open_device(s.provider(), s.index)) {}

device::~device() { close(); }

device::device(device&& other) noexcept : impl_(std::move(other.impl_)) {}

device& device::operator=(device&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

unsigned device::index() const { return detail::impl_of(*this, "index")->index(); }

const device_properties& device::properties() const {
  return detail::impl_of(*this, "properties")->props();
}

bool device::supports(capability c) const { return properties().supports(c); }

memory_info device::memory() const {
  const auto& d = *detail::impl_of(*this, "memory");
  return d.memory(d.context("memory"));
}

device_state device::state() const {
  const auto& d = *detail::impl_of(*this, "state");
  return d.state(d.context("state"));
}

device_counters device::counters() const {
  const auto& d = *detail::impl_of(*this, "counters");
  const error_context ctx = d.context("counters");
  d.require(capability::counters, ctx);
  return d.counters(ctx);
}

bool device::can_access_peer(const device& other) const {
  const auto& a = *detail::impl_of(*this, "can_access_peer");
  const auto& b = *detail::impl_of(other, "can_access_peer");
  if (&a == &b || a.kind() != b.kind() || a.index() == b.index()) {
    return false;
  }
  return a.can_access_peer(b);
}

std::chrono::nanoseconds device::ping(unsigned count) const {
  const auto& d = *detail::impl_of(*this, "ping");
  const error_context ctx = d.context("ping");
  constexpr unsigned kMax = 4096;
  if (count < 1 || count > kMax) {
    detail::fail(errc::invalid_argument, ctx,
                 "count " + std::to_string(count) + " is not in 1.." + std::to_string(kMax));
  }
  d.require(capability::nop, ctx);
  return d.ping(count, ctx);
}

void device::close() noexcept {
  if (impl_) {
    impl_->close();
  }
}

bool device::is_open() const noexcept { return impl_ && impl_->is_open(); }

location::location(const device& d) : location(detail::impl_of(d, "location")->where()) {}

}  // namespace uvm
