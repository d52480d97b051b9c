// SPDX-License-Identifier: GPL-2.0
// The hmmgpu provider: enumeration through sysfs, /dev/hmmgpuN opened as a
// device_impl, and every operation as the driver's ioctls
// (driver/include/uapi/hmmgpu.h): MIGRATE, ADVISE, GET_ADVICE, RESIDENCY,
// LAUNCH and WAIT, GET_COUNTERS, NOP.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <uapi/hmmgpu.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "detail.hpp"

namespace fs = std::filesystem;

namespace uvm::detail {
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

std::vector<device_summary> list_hmmgpu() {
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
      fail(std::make_error_code(std::errc::io_error),
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

std::string present_devices() {
  std::string s;
  for (const auto& d : list_hmmgpu()) {
    s += (s.empty() ? "" : ", ") + d.path.string();
  }
  return s.empty() ? "no hmmgpu device is present (is hmmgpu.ko loaded?)" : "present: " + s;
}

// The counters the uapi of `v` lacks.
std::vector<std::string> unavailable_counters(driver_version v) {
  if (v >= driver_version{1, 4}) {
    return {};
  }
  return {"evicted_bytes",       "fault_batches",    "fault_duplicates",     "prefetched_pages",
          "remote_mapped_pages", "thrashing_events", "peer_to_device_pages", "peer_to_device_bytes",
          "tlb_invalidates",     "fault_dropped"};
}

// How long one HMMGPU_IOCTL_WAIT sleeps before the device is checked
// again (so that close() is not held up).
constexpr std::uint64_t kWaitSliceNs = 100'000'000;
// How long a launch retries while the device is busy.
constexpr auto kBusyRetry = std::chrono::seconds(5);

std::uint32_t uapi_kernel(kernel k) {
  switch (k) {
    case kernel::fill_u32:
      return HMMGPU_KERNEL_FILL_U32;
    case kernel::copy:
      return HMMGPU_KERNEL_COPY;
    case kernel::axpy_f32:
      return HMMGPU_KERNEL_AXPY_F32;
    case kernel::scale_f32:
      return HMMGPU_KERNEL_SCALE_F32;
    case kernel::increment_u32:
      return HMMGPU_KERNEL_INCREMENT_U32;
    case kernel::sum_f32:
      return HMMGPU_KERNEL_SUM_F32;
    case kernel::sum_u64:
      return HMMGPU_KERNEL_SUM_U64;
    case kernel::checksum:
      return HMMGPU_KERNEL_CHECKSUM;
  }
  return HMMGPU_KERNEL_FILL_U32;
}

// An open /dev/hmmgpuN.
class hmmgpu_device final : public device_impl {
 public:
  hmmgpu_device(int fd, pid_t owner) : device_impl(owner), fd_(fd) {}
  ~hmmgpu_device() override { close(); }
  hmmgpu_device(const hmmgpu_device&) = delete;
  hmmgpu_device& operator=(const hmmgpu_device&) = delete;
  hmmgpu_device(hmmgpu_device&&) = delete;
  hmmgpu_device& operator=(hmmgpu_device&&) = delete;

  // Reads the properties (GET_INFO); throws.
  void init(const error_context& ctx);

  [[nodiscard]] bool is_open() const noexcept override {
    std::shared_lock lk(mu_);
    return fd_ >= 0;
  }
  void close() noexcept override {
    std::unique_lock lk(mu_);
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }
  [[nodiscard]] std::string describe() const override {
    return name() + " (" + to_string(props_.backend) + ", uapi " +
           std::to_string(props_.driver.major) + "." + std::to_string(props_.driver.minor) + ")";
  }

  [[nodiscard]] memory_info memory(const error_context& ctx) const override;
  [[nodiscard]] device_state state(const error_context& ctx) const override;
  [[nodiscard]] device_counters counters(const error_context& ctx) const override;
  [[nodiscard]] std::chrono::nanoseconds ping(unsigned count,
                                              const error_context& ctx) const override;
  [[nodiscard]] bool can_access_peer(const device_impl& other) const override {
    const unsigned n = other.index();
    return other.kind() == provider::hmmgpu && n != index() && n < 64 &&
           ((props_.peer_mask >> n) & 1U) != 0;
  }
  [[nodiscard]] std::unique_ptr<queue> make_queue(unsigned /*hw*/) override {
    return std::make_unique<queue>();
  }
  prefetch_result prefetch(location to, const memory_range& range, queue* q,
                           const error_context& ctx) override;
  void advise(const memory_range& range, advice a, location loc, error_context ctx) override;
  std::vector<residency_run> residency(const memory_range& range, error_context ctx) override;
  range_advice range_attributes(const memory_range& range, error_context ctx) override;
  std::uint64_t run_kernel(queue& q, unsigned hw, const kernel_args& a,
                           const error_context& ctx) override;

 private:
  [[nodiscard]] std::string sysfs(const char* attr) const {
    return std::string(kSysClass) + "/" + name() + "/" + attr;
  }
  // Reads sysfs attribute `attr`; throws device_closed or device_lost.
  [[nodiscard]] std::string attr(const char* attr, const error_context& ctx) const;
  // ioctl(fd, req, arg), retrying EINTR: 0 or the errno. Throws
  // errc::device_closed once closed, errc::wrong_process in a child.
  int ioctl(unsigned long req, void* arg, const error_context& ctx) const;
  // ioctl() that throws fail_errno(err, c, ctx) for any error.
  void ioctl_or_throw(unsigned long req, void* arg, call c, const error_context& ctx) const;
  // HMMGPU_IOCTL_MIGRATE of the pages [begin, begin + len), filling
  // `status` (one entry per page, from `first`).
  void migrate(std::uintptr_t begin, std::size_t len, std::uint32_t flags,
               std::vector<std::uint8_t>& status, std::size_t first,
               const error_context& ctx) const;
  // Migrates again each run of pages whose status is `which`: first
  // `before` (when not 0), then `flags`.
  void redo_runs(std::uint8_t which, std::uint32_t before, std::uint32_t flags, std::uintptr_t base,
                 std::vector<std::uint8_t>& status, const error_context& ctx) const;
  // HMMGPU_IOCTL_RESIDENCY over the page-aligned `pages`, in as many calls
  // as it takes, calling on_run for each run: 0 or the errno that ended
  // it; `stop` is where the report stopped (for EFAULT, the unmapped page).
  int query_residency(const memory_range& pages, const error_context& ctx,
                      const std::function<void(const hmmgpu_run&)>& on_run,
                      std::uintptr_t& stop) const;
  // The address of the first page of `r` that is not mapped, if the
  // device can tell.
  std::optional<std::uintptr_t> first_unmapped(const memory_range& r) const;

  mutable std::shared_mutex mu_;  // held shared by calls, exclusive by close()
  int fd_;                        // -1 once closed; under mu_
};

void hmmgpu_device::init(const error_context& ctx) {
  hmmgpu_info info{};
  ioctl_or_throw(HMMGPU_IOCTL_GET_INFO, &info, call::get_info, ctx);
  device_properties& p = props_;
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
  p.pageable_memory_access = true;
  p.unavailable_counters = unavailable_counters(p.driver);
}

int hmmgpu_device::ioctl(unsigned long req, void* arg, const error_context& ctx) const {
  check_process(ctx);
  std::shared_lock lk(mu_);
  if (fd_ < 0) {
    fail(errc::device_closed, ctx, name() + " was closed");
  }
  int ret = 0;
  do {
    ret = ::ioctl(fd_, req, arg);
  } while (ret < 0 && errno == EINTR);
  return ret < 0 ? errno : 0;
}

void hmmgpu_device::ioctl_or_throw(unsigned long req, void* arg, call c,
                                   const error_context& ctx) const {
  if (int err = ioctl(req, arg, ctx)) {
    fail_errno(err, c, ctx);
  }
}

std::string hmmgpu_device::attr(const char* a, const error_context& ctx) const {
  if (!is_open()) {
    fail(errc::device_closed, ctx, "the device was closed");
  }
  auto v = read_attr(sysfs(a));
  if (!v) {
    fail(errc::device_lost, ctx, sysfs(a) + " is gone: the device was removed");
  }
  return *v;
}

memory_info hmmgpu_device::memory(const error_context& ctx) const {
  memory_info m;
  m.total = to_number(attr("vram_total", ctx)).value_or(0);
  m.used = to_number(attr("vram_used", ctx)).value_or(0);
  m.free = m.used <= m.total ? m.total - m.used : 0;
  return m;
}

device_state hmmgpu_device::state(const error_context& ctx) const {
  if (!is_open()) {
    fail(errc::device_closed, ctx, "the device was closed");
  }
  auto v = read_attr(sysfs("state"));
  return v ? state_of(*v) : device_state::lost;
}

device_counters hmmgpu_device::counters(const error_context& ctx) const {
  hmmgpu_counters c{};
  unsigned long req = HMMGPU_IOCTL_GET_COUNTERS;
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  // A driver before 1.4 knows only the structure of 1.2 and 1.3.
  if (props_.driver < driver_version{1, 4}) {
    req = _IOC(_IOC_READ | _IOC_WRITE, HMMGPU_IOCTL_MAGIC, 0x03, HMMGPU_COUNTERS_SIZE_V1);
  }
#endif
  ioctl_or_throw(req, &c, call::counters, ctx);
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

std::chrono::nanoseconds hmmgpu_device::ping(unsigned count, const error_context& ctx) const {
  hmmgpu_nop nop{};
  nop.count = count;
  ioctl_or_throw(HMMGPU_IOCTL_NOP, &nop, call::nop, ctx);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(nop.elapsed_ns));
}

void hmmgpu_device::migrate(std::uintptr_t begin, std::size_t len, std::uint32_t flags,
                            std::vector<std::uint8_t>& status, std::size_t first,
                            const error_context& ctx) const {
  hmmgpu_migrate m{};
  m.addr = begin;
  m.length = len;
  m.flags = flags;
  m.status = reinterpret_cast<std::uintptr_t>(status.data() + first);
  if (int err = ioctl(HMMGPU_IOCTL_MIGRATE, &m, ctx)) {
    error_context c = ctx;
    if (err == EFAULT) {
      c.address = first_unmapped(*ctx.range);
    }
    fail_errno(err, call::migrate, c);
  }
}

void hmmgpu_device::redo_runs(std::uint8_t which, std::uint32_t before, std::uint32_t flags,
                              std::uintptr_t base, std::vector<std::uint8_t>& status,
                              const error_context& ctx) const {
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
      migrate(at, (j - i) * ps, before, scratch, 0, ctx);
    }
    migrate(at, (j - i) * ps, flags, status, i, ctx);
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

prefetch_result hmmgpu_device::prefetch(location to, const memory_range& range, queue* /*q*/,
                                        const error_context& ctx) {
  const memory_range pages = range.pages();
  std::vector<std::uint8_t> status(pages.size() / page_size());
  if (status.empty()) {
    return {};
  }
  const std::uint32_t dir = to.is_cpu() ? HMMGPU_MIGRATE_TO_SYSTEM : HMMGPU_MIGRATE_TO_DEVICE;
  migrate(pages.begin_address(), pages.size(), dir, status, 0, ctx);
  // Pages on a device that is not a peer go through system memory.
  if (to.is_device()) {
    redo_runs(HMMGPU_PAGE_OTHER_DEVICE, HMMGPU_MIGRATE_TO_SYSTEM, dir, pages.begin_address(),
              status, ctx);
  }
  // Busy pages get one more try.
  redo_runs(HMMGPU_PAGE_BUSY, 0, dir, pages.begin_address(), status, ctx);
  return count(status);
}

void hmmgpu_device::advise(const memory_range& range, advice a, location loc, error_context ctx) {
  std::uint32_t value = 0;
  switch (a) {
    case advice::preferred_location:
      value = loc.is_cpu() ? HMMGPU_ADVISE_PREFERRED_CPU : HMMGPU_ADVISE_PREFERRED_DEVICE;
      break;
    case advice::unset_preferred_location:
      value = HMMGPU_ADVISE_UNSET_PREFERRED;
      break;
    case advice::accessed_by:
      value = HMMGPU_ADVISE_ACCESSED_BY;
      break;
    case advice::unset_accessed_by:
      value = HMMGPU_ADVISE_UNSET_ACCESSED_BY;
      break;
    case advice::read_mostly:
      value = HMMGPU_ADVISE_READ_MOSTLY;
      break;
    case advice::unset_read_mostly:
      value = HMMGPU_ADVISE_UNSET_READ_MOSTLY;
      break;
  }
  const memory_range pages = range.pages();
  hmmgpu_advise arg{};
  arg.addr = pages.begin_address();
  arg.length = pages.size();
  arg.advice = value;
  if (int err = ioctl(HMMGPU_IOCTL_ADVISE, &arg, ctx)) {
    if (err == EFAULT) {
      ctx.address = first_unmapped(range);
    }
    fail_errno(err, call::advise, ctx);
  }
}

int hmmgpu_device::query_residency(const memory_range& pages, const error_context& ctx,
                                   const std::function<void(const hmmgpu_run&)>& on_run,
                                   std::uintptr_t& stop) const {
  std::vector<hmmgpu_run> runs(256);
  stop = pages.begin_address();
  while (stop < pages.end_address()) {
    hmmgpu_residency q{};
    q.addr = stop;
    q.length = pages.end_address() - stop;
    q.runs = reinterpret_cast<std::uintptr_t>(runs.data());
    q.max_runs = static_cast<std::uint32_t>(runs.size());
    const int err = ioctl(HMMGPU_IOCTL_RESIDENCY, &q, ctx);
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

std::optional<std::uintptr_t> hmmgpu_device::first_unmapped(const memory_range& r) const {
  if (!props_.supports(capability::migrate) || r.empty()) {
    return std::nullopt;
  }
  std::uintptr_t stop = 0;
  try {
    if (query_residency(
            r.pages(), {}, [](const hmmgpu_run&) {}, stop) == EFAULT) {
      return stop;
    }
  } catch (const error&) {
    // closed meanwhile: the caller reports its own error
  }
  return std::nullopt;
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

std::vector<residency_run> hmmgpu_device::residency(const memory_range& range, error_context ctx) {
  std::vector<residency_run> out;
  std::uintptr_t stop = 0;
  const int err = query_residency(
      range.pages(), ctx, [&out](const hmmgpu_run& r) { out.push_back(to_run(r)); }, stop);
  if (err == EFAULT) {
    ctx.address = stop;
  }
  if (err != 0) {
    fail_errno(err, call::residency, ctx);
  }
  return out;
}

range_advice hmmgpu_device::range_attributes(const memory_range& range, error_context ctx) {
  const driver_version have = props_.driver;
  const std::string uapi = std::to_string(have.major) + "." + std::to_string(have.minor);
#if HMMGPU_UAPI_VERSION_MINOR >= 4
  if (have < driver_version{1, 4}) {
    fail(errc::not_supported, ctx,
         "the driver (uapi " + uapi + ") cannot report advice: that needs uapi 1.4");
  }
  const memory_range pages = range.pages();
  hmmgpu_range_advice q{};
  q.addr = pages.begin_address();
  q.length = pages.size();
  if (int err = ioctl(HMMGPU_IOCTL_GET_ADVICE, &q, ctx)) {
    if (err == EFAULT) {
      ctx.address = first_unmapped(range);
    }
    fail_errno(err, call::get_advice, ctx);
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
  (void)range;
  fail(errc::not_supported, ctx,
       "this libuvm was built against uapi 1.3, which cannot report advice (the driver has uapi " +
           uapi + "); that needs uapi 1.4");
#endif
}

std::uint64_t hmmgpu_device::run_kernel(queue& /*q*/, unsigned hw, const kernel_args& a,
                                        const error_context& ctx) {
  hmmgpu_launch l{};
  l.kernel = uapi_kernel(a.k);
  l.stream = hw;
  l.count = a.x.size() / a.element;
  l.x = a.x.begin_address();
  l.y = a.y.begin_address();
  l.scalar = a.scalar;
  const auto deadline = std::chrono::steady_clock::now() + kBusyRetry;
  for (;;) {
    const int err = ioctl(HMMGPU_IOCTL_LAUNCH, &l, ctx);
    if (err == 0) {
      break;
    }
    if (err != EBUSY || std::chrono::steady_clock::now() > deadline) {
      fail_errno(err, call::launch, ctx);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  hmmgpu_wait w{};
  for (;;) {
    w = {};
    w.stream = hw;
    w.fence = l.fence;
    w.timeout_ns = kWaitSliceNs;
    const int err = ioctl(HMMGPU_IOCTL_WAIT, &w, ctx);
    if (err == 0) {
      break;
    }
    if (err != ETIME) {
      fail_errno(err, call::wait, ctx);
    }
  }
  switch (w.error) {
    case 0:
      return w.result;
    case EFAULT: {
      error_context c = ctx;
      c.address = w.fault_addr;
      fail(errc::bad_address, c,
           "the device touched the page at " + hex(w.fault_addr) +
               ", which this process has not mapped with the access the kernel needs "
               "(the elements before it may have been processed)");
    }
    case EINVAL:
      fail(errc::invalid_argument, ctx, "the device rejected the kernel's operands");
    default:
      fail_errno(w.error, call::launch, ctx, w.error == EIO ? "the device failed" : "");
  }
}

class hmmgpu_provider_impl final : public provider_impl {
 public:
  [[nodiscard]] provider kind() const noexcept override { return provider::hmmgpu; }
  [[nodiscard]] std::vector<device_summary> list() override { return list_hmmgpu(); }
  [[nodiscard]] provider_info status() override {
    provider_info i{.provider = provider::hmmgpu, .built = true, .devices = 0, .reason = {}};
    i.devices = static_cast<unsigned>(list_hmmgpu().size());
    if (i.devices == 0) {
      i.reason =
          std::string("no hmmgpu device: ") + kSysClass + " lists none (is hmmgpu.ko loaded?)";
    }
    return i;
  }
  [[nodiscard]] std::shared_ptr<device_impl> open(unsigned index) override {
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
    auto d = std::make_shared<hmmgpu_device>(fd, ::getpid());
    d->init(ctx);
    return d;
  }
};

}  // namespace

provider_impl& hmmgpu_provider() {
  static hmmgpu_provider_impl p;
  return p;
}

std::uint32_t capability_mask(capability c) noexcept {
  switch (c) {
    case capability::nop:
      return HMMGPU_CAP_NOP;
    case capability::migrate:
      return HMMGPU_CAP_MIGRATE;
    case capability::counters:
      return HMMGPU_CAP_COUNTERS;
    case capability::compute:
      return HMMGPU_CAP_COMPUTE;
    case capability::peer_access:
      return 0;
  }
  return 0;
}

bool capability_bit(const device_properties& p, capability c) noexcept {
  if (c == capability::peer_access) {
    return p.peer_mask != 0;
  }
  return (p.capability_bits & capability_mask(c)) != 0;
}

}  // namespace uvm::detail
