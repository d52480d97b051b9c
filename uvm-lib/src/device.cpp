// SPDX-License-Identifier: GPL-2.0
// Devices: enumeration through sysfs, the open device (device_impl) and
// the registry of open devices, uvm::device, counters.
#include "uvm/device.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "detail.hpp"
#include "uvm/error.hpp"

namespace fs = std::filesystem;

namespace uvm {
namespace {

const char* const kSysClass = "/sys/class/hmmgpu";

std::optional<std::string> read_attr(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

std::optional<std::uint64_t> to_number(const std::string& s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

backend backend_of(const std::string& s) {
  if (s == "emu") {
    return backend::emu;
  }
  if (s == "sysram") {
    return backend::sysram;
  }
  return backend::unknown;
}

device_state state_of(const std::string& s) {
  if (s == "ready") {
    return device_state::ready;
  }
  if (s == "halted") {
    return device_state::halted;
  }
  if (s == "lost") {
    return device_state::lost;
  }
  return device_state::unknown;
}

// N of a "hmmgpuN" name.
std::optional<unsigned> index_of(const std::string& name) {
  if (!name.starts_with("hmmgpu")) {
    return std::nullopt;
  }
  auto n = to_number(name.substr(6));
  if (!n || *n > 0xffff) {
    return std::nullopt;
  }
  return static_cast<unsigned>(*n);
}

// The registry of open devices: a device location resolves to one.
std::mutex& registry_mutex() {
  static std::mutex mu;
  return mu;
}
std::vector<std::weak_ptr<detail::device_impl>>& registry() {
  static std::vector<std::weak_ptr<detail::device_impl>> devices;
  return devices;
}

void add_to_registry(const std::shared_ptr<detail::device_impl>& d) {
  std::lock_guard lk(registry_mutex());
  auto& r = registry();
  std::erase_if(r, [](const auto& w) { return w.expired(); });
  r.push_back(d);
}

std::string present_devices() {
  std::string s;
  for (const auto& d : list_devices()) {
    s += (s.empty() ? "" : ", ") + d.path.string();
  }
  return s.empty() ? "no hmmgpu device is present (is hmmgpu.ko loaded?)" : "present: " + s;
}

}  // namespace

const char* to_string(backend b) noexcept {
  return detail::enum_name(b, std::array{"emu", "sysram", "unknown"});
}

const char* to_string(device_state s) noexcept {
  return detail::enum_name(s, std::array{"ready", "halted", "lost", "unknown"});
}

std::vector<device_summary> list_devices() {
  std::vector<device_summary> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kSysClass, ec)) {
    const std::string name = e.path().filename().string();
    auto index = index_of(name);
    if (!index) {
      continue;
    }
    auto attr = [&](const char* a) { return read_attr(e.path() / a); };
    const auto total = attr("vram_total");
    const auto used = attr("vram_used");
    const auto channels = attr("channels");
    const auto dev_name = attr("name");
    const auto back = attr("backend");
    const auto state = attr("state");
    if (!total || !used || !channels || !dev_name || !back || !state) {
      if (!fs::exists(e.path())) {
        continue;  // removed meanwhile
      }
      detail::fail(std::make_error_code(std::errc::io_error),
                   {.operation = "list_devices", .device = index},
                   "cannot read the attributes in " + e.path().string());
    }
    device_summary s;
    s.index = *index;
    s.path = "/dev/" + name;
    s.name = *dev_name;
    s.backend = backend_of(*back);
    s.vram_total = to_number(*total).value_or(0);
    s.vram_used = to_number(*used).value_or(0);
    s.copy_channels = static_cast<unsigned>(to_number(*channels).value_or(0));
    s.state = state_of(*state);
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  return out;
}

bool device_properties::supports(capability c) const noexcept {
  switch (c) {
    case capability::nop:
      return (capability_bits & HMMGPU_CAP_NOP) != 0;
    case capability::migrate:
      return (capability_bits & HMMGPU_CAP_MIGRATE) != 0;
    case capability::counters:
      return (capability_bits & HMMGPU_CAP_COUNTERS) != 0;
    case capability::compute:
      return (capability_bits & HMMGPU_CAP_COMPUTE) != 0;
    case capability::peer_access:
      return peer_mask != 0;
  }
  return false;
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

namespace detail {

std::shared_ptr<device_impl> device_impl::open(unsigned index) {
  const std::string path = "/dev/hmmgpu" + std::to_string(index);
  const error_context ctx{.operation = "open", .device = index};
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      fail(errc::no_device, ctx, "there is no " + path + "; " + present_devices());
    }
    if (err == ENODEV || err == ENXIO) {
      fail(errc::device_lost, ctx, path + " is being removed");
    }
    fail(std::error_code(err, std::system_category()), ctx, "cannot open " + path);
  }
  auto d = std::make_shared<device_impl>(fd, ::getpid());
  hmmgpu_info info{};
  d->ioctl_or_throw(HMMGPU_IOCTL_GET_INFO, &info, call::get_info, ctx);
  device_properties& p = d->props_;
  p.index = info.index;
  p.name.assign(info.name, strnlen(info.name, sizeof(info.name)));
  p.backend = info.backend == HMMGPU_BACKEND_EMU      ? backend::emu
              : info.backend == HMMGPU_BACKEND_SYSRAM ? backend::sysram
                                                      : backend::unknown;
  p.hw_version = info.hw_version;
  p.vram_total = info.vram_size;
  p.copy_channels = info.num_channels;
  p.streams = (info.caps & HMMGPU_CAP_COMPUTE) != 0 ? info.num_streams : 0;
  p.contexts = info.num_contexts;
  p.driver = {info.uapi_version >> 16, info.uapi_version & 0xffff};
  p.capability_bits = info.caps;
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  if (p.driver >= driver_version{1, 4}) {
    p.peer_mask = info.peers;
  }
#endif
  add_to_registry(d);
  return d;
}

device_impl::~device_impl() { close(); }

bool device_impl::is_open() const noexcept {
  std::shared_lock lk(mu_);
  return fd_ >= 0;
}

std::string device_impl::sysfs(const char* attr) const {
  return std::string(kSysClass) + "/hmmgpu" + std::to_string(index()) + "/" + attr;
}

void device_impl::check_process(const error_context& ctx) const {
  if (::getpid() != owner_) {
    fail(errc::wrong_process, ctx,
         "hmmgpu" + std::to_string(index()) +
             " was opened by the parent process: a uvm::device (and its streams) must not be "
             "used in a child after fork(); open the device again in the child");
  }
}

int device_impl::ioctl(unsigned long req, void* arg, const error_context& ctx) const {
  check_process(ctx);
  std::shared_lock lk(mu_);
  if (fd_ < 0) {
    fail(errc::device_closed, ctx, "hmmgpu" + std::to_string(index()) + " was closed");
  }
  int ret = 0;
  do {
    ret = ::ioctl(fd_, req, arg);
  } while (ret < 0 && errno == EINTR);
  return ret < 0 ? errno : 0;
}

void device_impl::ioctl_or_throw(unsigned long req, void* arg, call c,
                                 const error_context& ctx) const {
  if (int err = ioctl(req, arg, ctx)) {
    fail_errno(err, c, ctx);
  }
}

void device_impl::require(capability cap, const error_context& ctx) const {
  if (props_.supports(cap)) {
    return;
  }
  const std::string dev = "hmmgpu" + std::to_string(index()) + " (" + to_string(props_.backend) +
                          ", uapi " + std::to_string(props_.driver.major) + "." +
                          std::to_string(props_.driver.minor) + ")";
  switch (cap) {
    case capability::compute:
      fail(errc::not_supported, ctx, dev + " runs no kernels: its backend has no compute engine");
    case capability::migrate:
      fail(errc::not_supported, ctx, dev + " cannot migrate memory");
    case capability::counters:
      fail(errc::not_supported, ctx, dev + " has no counters");
    case capability::nop:
      fail(errc::not_supported, ctx, dev + " cannot run empty commands");
    case capability::peer_access:
      fail(errc::not_supported, ctx, dev + " has no peers");
  }
  fail(errc::not_supported, ctx, dev + " lacks the capability");
}

void device_impl::close() noexcept {
  std::unique_lock lk(mu_);
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
}

unsigned device_impl::next_hardware_stream() noexcept {
  const unsigned n = props_.streams;
  return n == 0 ? 0 : next_stream_.fetch_add(1, std::memory_order_relaxed) % n;
}

std::shared_ptr<device_impl> find_device(unsigned index) {
  std::lock_guard lk(registry_mutex());
  for (const auto& w : registry()) {
    auto d = w.lock();
    if (d && d->index() == index && d->is_open()) {
      return d;
    }
  }
  return nullptr;
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
  auto d = find_device(loc.device_index());
  if (!d) {
    fail(errc::no_device, ctx,
         to_string(loc) + " is not open in this process: open it with uvm::device(" +
             std::to_string(loc.device_index()) + ") first");
  }
  return d;
}

std::shared_ptr<device_impl> some_device(const error_context& ctx,
                                         const std::shared_ptr<device_impl>& prefer) {
  auto d = any_device(prefer);
  if (!d) {
    fail(errc::no_device, ctx,
         "no hmmgpu device is open in this process: open one with uvm::device first");
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

int query_residency(const device_impl& dev, const memory_range& pages, const error_context& ctx,
                    const std::function<void(const hmmgpu_run&)>& on_run, std::uintptr_t& stop) {
  std::vector<hmmgpu_run> runs(256);
  stop = pages.begin_address();
  while (stop < pages.end_address()) {
    hmmgpu_residency q{};
    q.addr = stop;
    q.length = pages.end_address() - stop;
    q.runs = reinterpret_cast<std::uintptr_t>(runs.data());
    q.max_runs = static_cast<std::uint32_t>(runs.size());
    const int err = dev.ioctl(HMMGPU_IOCTL_RESIDENCY, &q, ctx);
    for (const hmmgpu_run& r : std::span(runs).first(std::min<std::size_t>(q.nruns, runs.size()))) {
      on_run(r);
    }
    if (err != 0) {
      stop = q.next;
      return err;
    }
    if (q.next <= stop) {
      return EIO;  // no progress: cannot happen with max_runs >= 1
    }
    stop = q.next;
  }
  return 0;
}

std::optional<std::uintptr_t> first_unmapped(const device_impl& dev, const memory_range& r) {
  if (!dev.props().supports(capability::migrate) || r.empty()) {
    return std::nullopt;
  }
  std::uintptr_t stop = 0;
  try {
    if (query_residency(
            dev, r.pages(), {}, [](const hmmgpu_run&) {}, stop) == EFAULT) {
      return stop;
    }
  } catch (const error&) {
    // closed meanwhile: the caller reports its own error
  }
  return std::nullopt;
}

}  // namespace detail

device::device(unsigned index) : impl_(detail::device_impl::open(index)) {}

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

namespace {

// Reads sysfs attribute `attr` of an open device; throws device_closed or
// device_lost.
std::string device_attr(const detail::device_impl& d, const char* attr, const char* operation) {
  const error_context ctx{.operation = operation, .device = d.index()};
  if (!d.is_open()) {
    detail::fail(errc::device_closed, ctx, "the device was closed");
  }
  auto v = read_attr(d.sysfs(attr));
  if (!v) {
    detail::fail(errc::device_lost, ctx, d.sysfs(attr) + " is gone: the device was removed");
  }
  return *v;
}

}  // namespace

memory_info device::memory() const {
  const auto& d = *detail::impl_of(*this, "memory");
  memory_info m;
  m.total = to_number(device_attr(d, "vram_total", "memory")).value_or(0);
  m.used = to_number(device_attr(d, "vram_used", "memory")).value_or(0);
  m.free = m.used <= m.total ? m.total - m.used : 0;
  return m;
}

device_state device::state() const {
  const auto& d = *detail::impl_of(*this, "state");
  const error_context ctx{.operation = "state", .device = d.index()};
  if (!d.is_open()) {
    detail::fail(errc::device_closed, ctx, "the device was closed");
  }
  auto v = read_attr(d.sysfs("state"));
  return v ? state_of(*v) : device_state::lost;
}

device_counters device::counters() const {
  const auto& d = *detail::impl_of(*this, "counters");
  const error_context ctx{.operation = "counters", .device = d.index()};
  d.require(capability::counters, ctx);
  hmmgpu_counters c{};
  unsigned long req = HMMGPU_IOCTL_GET_COUNTERS;
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  // A driver before 1.4 knows only the structure of 1.2 and 1.3.
  if (d.props().driver < driver_version{1, 4}) {
    req = _IOC(_IOC_READ | _IOC_WRITE, HMMGPU_IOCTL_MAGIC, 0x03, HMMGPU_COUNTERS_SIZE_V1);
  }
#endif
  d.ioctl_or_throw(req, &c, detail::call::counters, ctx);
  device_counters r;
  r.to_device_pages = c.to_device_pages;
  r.to_device_bytes = c.to_device_bytes;
  r.to_system_pages = c.to_system_pages;
  r.to_system_bytes = c.to_system_bytes;
  r.cpu_faults = c.cpu_faults;
  r.fault_around_pages = c.fault_around_pages;
  r.copy_batches = c.copy_batches;
  r.copy_errors = c.copy_errors;
  r.vram_alloc_failures = c.vram_alloc_failures;
  r.device_faults = c.device_faults;
  r.fault_replays = c.fault_replays;
  r.fault_cancels = c.fault_cancels;
  r.evicted_chunks = c.evicted_chunks;
  r.evicted_pages = c.evicted_pages;
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  r.evicted_bytes = c.evicted_bytes;
  r.fault_batches = c.fault_batches;
  r.fault_duplicates = c.fault_duplicates;
  r.prefetched_pages = c.prefetched_pages;
  r.remote_mapped_pages = c.remote_mapped_pages;
  r.thrashing_events = c.thrashing_events;
  r.peer_to_device_pages = c.peer_to_device_pages;
  r.peer_to_device_bytes = c.peer_to_device_bytes;
  r.tlb_invalidates = c.tlb_invalidates;
  r.fault_dropped = c.fault_dropped;
#endif
  const std::span<const __u64> busy(c.channel_busy_ns);
  for (__u64 ns : busy.first(std::min<std::size_t>(c.num_channels, busy.size()))) {
    r.channel_busy.emplace_back(static_cast<std::int64_t>(ns));
  }
  return r;
}

bool device::can_access_peer(const device& other) const {
  const auto& a = *detail::impl_of(*this, "can_access_peer");
  const auto& b = *detail::impl_of(other, "can_access_peer");
  const unsigned n = b.index();
  return n != a.index() && n < 64 && ((a.props().peer_mask >> n) & 1U) != 0;
}

std::chrono::nanoseconds device::ping(unsigned count) const {
  const auto& d = *detail::impl_of(*this, "ping");
  const error_context ctx{.operation = "ping", .device = d.index()};
  if (count < 1 || count > HMMGPU_NOP_MAX) {
    detail::fail(
        errc::invalid_argument, ctx,
        "count " + std::to_string(count) + " is not in 1.." + std::to_string(HMMGPU_NOP_MAX));
  }
  d.require(capability::nop, ctx);
  hmmgpu_nop nop{};
  nop.count = count;
  d.ioctl_or_throw(HMMGPU_IOCTL_NOP, &nop, detail::call::nop, ctx);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(nop.elapsed_ns));
}

void device::close() noexcept {
  if (impl_) {
    impl_->close();
  }
}

bool device::is_open() const noexcept { return impl_ && impl_->is_open(); }

location::location(const device& d) : device_(static_cast<int>(d.index())) {}

}  // namespace uvm
