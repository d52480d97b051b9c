// SPDX-License-Identifier: GPL-2.0
// The CUDA provider: CUDA devices through the CUDA runtime API. Managed
// memory is cudaMallocManaged(), prefetch cudaMemPrefetchAsync(), advice
// cudaMemAdvise(), residency and advice queries cudaMemRangeGetAttribute(),
// a uvm::stream's work runs on a CUDA stream of its own, and the kernels
// are those of kernels.cu.
//
// Every CUDA call's error is checked and reported as a uvm::error naming
// the operation, the range, the device and the CUDA error. Memory a device
// cannot use is refused before CUDA sees it: a kernel on it would leave a
// sticky error that ends the device's context for the whole process.
//
// Built only with UVM_WITH_CUDA; the runtime is linked statically and kept
// private (uvm-lib/CMakeLists.txt), so that libuvm needs no CUDA at run
// time: without a driver, cudaGetDeviceCount() fails and the provider
// reports no device, with the reason.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../detail.hpp"
#include "kernels.hpp"

namespace uvm::detail {
namespace {

// "cudaErrorNoDevice: no CUDA-capable device is detected".
std::string cuda_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Whether `e` leaves the context unusable (a sticky error).
bool sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

std::error_code code_of(cudaError_t e) {
  switch (e) {
    case cudaErrorMemoryAllocation:
      return std::make_error_code(std::errc::not_enough_memory);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
      return errc::invalid_argument;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
      return errc::no_device;
    case cudaErrorNotSupported:
      return errc::not_supported;
    case cudaErrorLaunchTimeout:
      return errc::timed_out;
    case cudaErrorDevicesUnavailable:
      return errc::busy;
    default:
      return errc::device_failed;
  }
}

// Throws the uvm::error of CUDA error `e` returned by `fn`.
[[noreturn]] void fail_cuda(cudaError_t e, const char* fn, const error_context& ctx,
                            const std::string& more = {}) {
  std::string why = std::string(fn) + " failed: " + cuda_text(e);
  if (sticky(e)) {
    why += "; the device's CUDA context is unusable from now on";
  }
  fail(code_of(e), ctx, why + more);
}

// The fields of device_counters: the CUDA runtime exposes none of them.
constexpr std::array<const char*, 24> kCounterNames{
    "to_device_pages",      "to_device_bytes",      "to_system_pages",     "to_system_bytes",
    "cpu_faults",           "fault_around_pages",   "copy_batches",        "copy_errors",
    "vram_alloc_failures",  "device_faults",        "fault_replays",       "fault_cancels",
    "evicted_chunks",       "evicted_pages",        "evicted_bytes",       "fault_batches",
    "fault_duplicates",     "prefetched_pages",     "remote_mapped_pages", "thrashing_events",
    "peer_to_device_pages", "peer_to_device_bytes", "tlb_invalidates",     "channel_busy"};

// How a kernel or a migration needs the memory.
enum class need { mapped, read, write };

// The first page of [begin, end) that is not mapped in this process with
// `n`'s access, by /proc/self/maps; nullopt when all are.
std::optional<std::uintptr_t> first_inaccessible(std::uintptr_t begin, std::uintptr_t end, need n) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::uintptr_t at = begin & ~(page_size() - 1);
  while (at < end && std::getline(maps, line)) {
    std::istringstream in(line);
    std::uintptr_t lo = 0;
    std::uintptr_t hi = 0;
    char dash = 0;
    std::string perms;
    in >> std::hex >> lo >> dash >> hi >> perms;
    if (!in || hi <= at) {
      continue;
    }
    if (lo > at) {
      return at;  // a hole
    }
    const bool ok = n == need::mapped ||
                    (perms.size() >= 2 && perms[0] == 'r' && (n == need::read || perms[1] == 'w'));
    if (!ok) {
      return at;
    }
    at = hi;
  }
  return at < end ? std::optional<std::uintptr_t>(at) : std::nullopt;
}

// A CUDA stream and an 8-byte result buffer of a uvm::stream.
class cuda_queue final : public queue {
 public:
  cuda_queue(int ordinal, const error_context& ctx) : ordinal_(ordinal) {
    if (cudaError_t e = cudaSetDevice(ordinal); e != cudaSuccess) {
      fail_cuda(e, "cudaSetDevice", ctx);
    }
    if (cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
        e != cudaSuccess) {
      fail_cuda(e, "cudaStreamCreateWithFlags", ctx);
    }
    void* p = nullptr;
    if (cudaError_t e = cudaMalloc(&p, sizeof(std::uint64_t)); e != cudaSuccess) {
      cudaStreamDestroy(stream_);
      fail_cuda(e, "cudaMalloc", ctx, " (8 bytes for kernel results)");
    }
    result_ = static_cast<std::uint64_t*>(p);
  }
  ~cuda_queue() override {
    // Errors are of no use here (e.g. the runtime unloading at exit).
    (void)cudaSetDevice(ordinal_);
    (void)cudaStreamDestroy(stream_);
    (void)cudaFree(result_);
  }
  cuda_queue(const cuda_queue&) = delete;
  cuda_queue& operator=(const cuda_queue&) = delete;
  cuda_queue(cuda_queue&&) = delete;
  cuda_queue& operator=(cuda_queue&&) = delete;

  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  [[nodiscard]] std::uint64_t* result() const noexcept { return result_; }

 private:
  int ordinal_;
  cudaStream_t stream_ = nullptr;
  std::uint64_t* result_ = nullptr;
};

#if CUDART_VERSION >= 13000
cudaMemLocation mem_location(location l) {
  cudaMemLocation m{};
  m.type = l.is_cpu() ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
  m.id = l.is_cpu() ? 0 : static_cast<int>(l.device_index());
  return m;
}
cudaError_t mem_prefetch(const memory_range& r, location to, cudaStream_t s) {
  return cudaMemPrefetchAsync(r.data(), r.size(), mem_location(to), 0, s);
}
cudaError_t mem_advise(const memory_range& r, cudaMemoryAdvise a, location l) {
  return cudaMemAdvise(r.data(), r.size(), a, mem_location(l));
}
#else
int device_id(location l) {
  return l.is_cpu() ? cudaCpuDeviceId : static_cast<int>(l.device_index());
}
cudaError_t mem_prefetch(const memory_range& r, location to, cudaStream_t s) {
  return cudaMemPrefetchAsync(r.data(), r.size(), device_id(to), s);
}
cudaError_t mem_advise(const memory_range& r, cudaMemoryAdvise a, location l) {
  return cudaMemAdvise(r.data(), r.size(), a, device_id(l));
}
#endif

// A device id of cudaMemRangeGetAttribute as a location: nullopt for
// cudaInvalidDeviceId (none, or the pages differ).
std::optional<location> location_of_id(int id) {
  if (id == cudaCpuDeviceId) {
    return location(cpu);
  }
  if (id >= 0) {
    return location::of_device(provider::cuda, static_cast<unsigned>(id));
  }
  return std::nullopt;
}

// An int attribute of the range [p, p + n); the error when CUDA has none.
cudaError_t range_attribute(int& v, cudaMemRangeAttribute a, const void* p, std::size_t n) {
  v = cudaInvalidDeviceId;
  const cudaError_t e = cudaMemRangeGetAttribute(&v, sizeof(v), a, p, n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it
  }
  return e;
}

// An open CUDA device (its primary context).
class cuda_device final : public device_impl {
 public:
  cuda_device(int ordinal, pid_t owner) : device_impl(owner), ordinal_(ordinal) {}
  ~cuda_device() override = default;
  cuda_device(const cuda_device&) = delete;
  cuda_device& operator=(const cuda_device&) = delete;
  cuda_device(cuda_device&&) = delete;
  cuda_device& operator=(cuda_device&&) = delete;

  // Reads the properties; throws.
  void init(int count, const error_context& ctx);

  [[nodiscard]] bool is_open() const noexcept override {
    std::shared_lock lk(mu_);
    return open_;
  }
  void close() noexcept override {
    std::unique_lock lk(mu_);
    open_ = false;
  }
  [[nodiscard]] std::string describe() const override {
    return name() + " (" + props_.name + ", sm_" + std::to_string(props_.compute_capability) + ")";
  }

  [[nodiscard]] memory_info memory(const error_context& ctx) const override {
    auto lk = enter(ctx);
    std::size_t free = 0;
    std::size_t total = 0;
    if (cudaError_t e = cudaMemGetInfo(&free, &total); e != cudaSuccess) {
      fail_cuda(e, "cudaMemGetInfo", ctx);
    }
    return {.total = total, .used = total - std::min(free, total), .free = free};
  }
  [[nodiscard]] device_state state(const error_context& ctx) const override {
    if (!is_open()) {
      fail(errc::device_closed, ctx, name() + " was closed");
    }
    return failed_ ? device_state::halted : device_state::ready;
  }
  [[nodiscard]] device_counters counters(const error_context& ctx) const override {
    // The CUDA runtime exposes none of them (unavailable_counters says so).
    auto lk = enter(ctx);
    return {};
  }
  [[nodiscard]] std::chrono::nanoseconds ping(unsigned count,
                                              const error_context& ctx) const override;
  [[nodiscard]] bool can_access_peer(const device_impl& other) const override {
    const unsigned n = other.index();
    return n < 64 && ((props_.peer_mask >> n) & 1U) != 0;
  }
  [[nodiscard]] std::unique_ptr<queue> make_queue(unsigned /*hw*/) override {
    const error_context ctx = context("stream");
    auto lk = enter(ctx);
    return std::make_unique<cuda_queue>(ordinal_, ctx);
  }
  prefetch_result prefetch(location to, const memory_range& range, queue* q,
                           const error_context& ctx) override;
  void advise(const memory_range& range, advice a, location loc, error_context ctx) override;
  std::vector<residency_run> residency(const memory_range& range, error_context ctx) override;
  range_advice range_attributes(const memory_range& range, error_context ctx) override;
  std::uint64_t run_kernel(queue& q, unsigned hw, const kernel_args& a,
                           const error_context& ctx) override;

 private:
  // Checks the process, that the device is open and usable, and makes it
  // the calling thread's current device; the lock keeps close() waiting.
  [[nodiscard]] std::shared_lock<std::shared_mutex> enter(const error_context& ctx) const;
  // Throws unless this device may use `r` with access `n`: managed memory,
  // or with pageable memory access, memory mapped with that access.
  void check_memory(const memory_range& r, need n, const error_context& ctx) const;
  // Waits for `s`; throws the error of what ran on it as `what`'s.
  void sync(cudaStream_t s, const char* what, const error_context& ctx) const;
  // Appends the runs of [p, p + pages pages) clipped to `range` to `out`.
  void walk(const memory_range& range, std::uintptr_t p, std::size_t pages,
            std::vector<residency_run>& out) const;

  int ordinal_;
  mutable std::shared_mutex mu_;             // held shared by calls, exclusive by close()
  bool open_ = true;                         // under mu_
  mutable std::atomic<bool> failed_{false};  // a sticky error was seen
};

void cuda_device::init(int count, const error_context& ctx) {
  cudaDeviceProp prop{};
  if (cudaError_t e = cudaGetDeviceProperties(&prop, ordinal_); e != cudaSuccess) {
    fail_cuda(e, "cudaGetDeviceProperties", ctx);
  }
  auto attr = [&](cudaDeviceAttr a, const char* what) {
    int v = 0;
    if (cudaError_t e = cudaDeviceGetAttribute(&v, a, ordinal_); e != cudaSuccess) {
      fail_cuda(e, "cudaDeviceGetAttribute", ctx, std::string(" (") + what + ")");
    }
    return v;
  };
  int driver = 0;
  if (cudaError_t e = cudaDriverGetVersion(&driver); e != cudaSuccess) {
    fail_cuda(e, "cudaDriverGetVersion", ctx);
  }
  device_properties& p = props_;
  p.index = static_cast<unsigned>(ordinal_);
  p.name.assign(prop.name, strnlen(prop.name, sizeof(prop.name)));
  p.backend = backend::cuda;
  p.vram_total = prop.totalGlobalMem;
  p.copy_channels = static_cast<unsigned>(std::max(prop.asyncEngineCount, 0));
  p.streams = 8;
  p.contexts = 0;
  p.driver = {static_cast<unsigned>(driver / 1000), static_cast<unsigned>(driver % 1000 / 10)};
  p.compute_capability = static_cast<unsigned>(prop.major * 10 + prop.minor);
  p.pageable_memory_access =
      attr(cudaDevAttrPageableMemoryAccess, "cudaDevAttrPageableMemoryAccess") != 0;
  const bool concurrent =
      attr(cudaDevAttrConcurrentManagedAccess, "cudaDevAttrConcurrentManagedAccess") != 0;
  p.capability_bits = capability_mask(capability::nop) | capability_mask(capability::counters) |
                      capability_mask(capability::compute) |
                      (concurrent ? capability_mask(capability::migrate) : 0U);
  for (int j = 0; j < count && j < 64; j++) {
    int can = 0;
    if (j != ordinal_ && cudaDeviceCanAccessPeer(&can, ordinal_, j) == cudaSuccess && can != 0) {
      p.peer_mask |= std::uint64_t{1} << j;
    }
  }
  p.unavailable_counters.assign(kCounterNames.begin(), kCounterNames.end());
}

std::shared_lock<std::shared_mutex> cuda_device::enter(const error_context& ctx) const {
  check_process(ctx);
  std::shared_lock lk(mu_);
  if (!open_) {
    fail(errc::device_closed, ctx, name() + " was closed");
  }
  if (failed_) {
    fail(errc::device_failed, ctx,
         name() + " has failed: its CUDA context holds an earlier sticky error");
  }
  if (cudaError_t e = cudaSetDevice(ordinal_); e != cudaSuccess) {
    fail_cuda(e, "cudaSetDevice", ctx);
  }
  return lk;
}

void cuda_device::check_memory(const memory_range& r, need n, const error_context& ctx) const {
  if (r.empty()) {
    return;
  }
  // Managed memory (or this device's own memory for a kernel) at both ends.
  auto type_at = [](std::uintptr_t a) {
    cudaPointerAttributes at{};
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    if (cudaPointerGetAttributes(&at, reinterpret_cast<const void*>(a)) != cudaSuccess) {
      (void)cudaGetLastError();
      return cudaMemoryTypeUnregistered;
    }
    return at.type;
  };
  const cudaMemoryType first = type_at(r.begin_address());
  const cudaMemoryType last = type_at(r.end_address() - 1);
  if (first == cudaMemoryTypeManaged && last == cudaMemoryTypeManaged) {
    return;
  }
  if (!props_.pageable_memory_access) {
    fail(errc::not_supported, ctx,
         to_string(r) + " is not CUDA managed memory, and " + describe() +
             " cannot use ordinary memory: it has no pageable memory access "
             "(cudaDevAttrPageableMemoryAccess is 0; that needs HMM with NVIDIA's open kernel "
             "modules); allocate it with uvm::managed_vector, uvm::make_managed or a "
             "uvm::managed_resource (cudaMallocManaged)");
  }
  if (auto bad = first_inaccessible(r.begin_address(), r.end_address(), n)) {
    error_context c = ctx;
    c.address = *bad;
    fail(errc::bad_address, c,
         "the page at " + hex(*bad) + " is not mapped in this process" +
             (n == need::mapped ? std::string() : " with the access the operation needs"));
  }
}

void cuda_device::sync(cudaStream_t s, const char* what, const error_context& ctx) const {
  const cudaError_t e = cudaStreamSynchronize(s);
  if (e == cudaSuccess) {
    return;
  }
  if (sticky(e)) {
    failed_ = true;
  }
  fail_cuda(e, what, ctx, " (reported by cudaStreamSynchronize)");
}

std::chrono::nanoseconds cuda_device::ping(unsigned count, const error_context& ctx) const {
  auto lk = enter(ctx);
  cudaStream_t s = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); e != cudaSuccess) {
    fail_cuda(e, "cudaStreamCreateWithFlags", ctx);
  }
  const auto start = std::chrono::steady_clock::now();
  cudaError_t e = cudaSuccess;
  for (unsigned i = 0; i < count && e == cudaSuccess; i++) {
    e = cuda_kernels::nop(s);
  }
  if (e == cudaSuccess) {
    e = cudaStreamSynchronize(s);
  }
  const auto t = std::chrono::steady_clock::now() - start;
  (void)cudaStreamDestroy(s);
  if (e != cudaSuccess) {
    failed_ = failed_ || sticky(e);
    fail_cuda(e, "an empty kernel", ctx);
  }
  return std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(t),
                  std::chrono::nanoseconds(1));
}

prefetch_result cuda_device::prefetch(location to, const memory_range& range, queue* q,
                                      const error_context& ctx) {
  auto lk = enter(ctx);
  check_memory(range, need::mapped, ctx);
  // A queue of this device is a cuda_queue; without one, the thread's own stream.
  cudaStream_t s = cudaStreamPerThread;  // NOLINT(cppcoreguidelines-pro-type-cstyle-cast): CUDA's
  if (q != nullptr) {
    s = dynamic_cast<cuda_queue&>(*q).stream();
  }
  prefetch_result r;
  r.pages = range.page_count();
  // CUDA says nothing of what moved: pages last prefetched to `to` are
  // taken to be there.
  int last = cudaInvalidDeviceId;
  const bool there = range_attribute(last, cudaMemRangeAttributeLastPrefetchLocation, range.data(),
                                     range.size()) == cudaSuccess &&
                     location_of_id(last) == std::optional<location>(to);
  if (cudaError_t e = mem_prefetch(range, to, s); e != cudaSuccess) {
    fail_cuda(e, "cudaMemPrefetchAsync", ctx);
  }
  sync(s, "cudaMemPrefetchAsync", ctx);
  (there ? r.resident : r.migrated) = r.pages;
  return r;
}

void cuda_device::advise(const memory_range& range, advice a, location loc, error_context ctx) {
  auto lk = enter(ctx);
  check_memory(range, need::mapped, ctx);
  cudaMemoryAdvise value = cudaMemAdviseSetPreferredLocation;
  switch (a) {
    case advice::preferred_location:
      value = cudaMemAdviseSetPreferredLocation;
      break;
    case advice::unset_preferred_location:
      value = cudaMemAdviseUnsetPreferredLocation;
      break;
    case advice::accessed_by:
      value = cudaMemAdviseSetAccessedBy;
      break;
    case advice::unset_accessed_by:
      value = cudaMemAdviseUnsetAccessedBy;
      break;
    case advice::read_mostly:
      value = cudaMemAdviseSetReadMostly;
      break;
    case advice::unset_read_mostly:
      value = cudaMemAdviseUnsetReadMostly;
      break;
  }
  // Advice that ignores its location gets this device.
  const bool needs_loc =
      a == advice::preferred_location || a == advice::accessed_by || a == advice::unset_accessed_by;
  if (cudaError_t e = mem_advise(range, value, needs_loc ? loc : where()); e != cudaSuccess) {
    fail_cuda(e, "cudaMemAdvise", ctx);
  }
}

// Recursion halves the pages: at most log2(pages) deep.
// NOLINTNEXTLINE(misc-no-recursion)
void cuda_device::walk(const memory_range& range, std::uintptr_t p, std::size_t pages,
                       std::vector<residency_run>& out) const {
  const std::size_t ps = page_size();
  const std::uintptr_t lo = std::max(p, range.begin_address());
  const std::uintptr_t hi = std::min(p + pages * ps, range.end_address());
  int id = cudaInvalidDeviceId;
  const bool known =
      range_attribute(id, cudaMemRangeAttributeLastPrefetchLocation,
                      reinterpret_cast<const void*>(lo),  // NOLINT(performance-no-int-to-ptr)
                      hi - lo) == cudaSuccess;
  if (!known || id != cudaInvalidDeviceId || pages == 1) {
    const std::optional<location> where = known ? location_of_id(id) : std::nullopt;
    if (!out.empty() && out.back().where == where && out.back().pages.end_address() == p) {
      out.back().pages =
          memory_range(out.back().pages.data(), out.back().pages.size() + pages * ps);
    } else {
      residency_run run;
      run.pages =
          memory_range(reinterpret_cast<const void*>(p),  // NOLINT(performance-no-int-to-ptr)
                       pages * ps);
      run.where = where;
      out.push_back(run);
    }
    return;
  }
  walk(range, p, pages / 2, out);
  walk(range, p + (pages / 2) * ps, pages - pages / 2, out);
}

std::vector<residency_run> cuda_device::residency(const memory_range& range, error_context ctx) {
  auto lk = enter(ctx);
  check_memory(range, need::mapped, ctx);
  const memory_range pages = range.pages();
  std::vector<residency_run> out;
  walk(range, pages.begin_address(), pages.size() / page_size(), out);
  return out;
}

range_advice cuda_device::range_attributes(const memory_range& range, error_context ctx) {
  auto lk = enter(ctx);
  check_memory(range, need::mapped, ctx);
  range_advice r;
  int v = 0;
  if (cudaError_t e =
          range_attribute(v, cudaMemRangeAttributePreferredLocation, range.data(), range.size());
      e != cudaSuccess) {
    fail_cuda(e, "cudaMemRangeGetAttribute(cudaMemRangeAttributePreferredLocation)", ctx);
  }
  r.preferred_location = location_of_id(v);
  if (cudaError_t e =
          range_attribute(v, cudaMemRangeAttributeReadMostly, range.data(), range.size());
      e != cudaSuccess) {
    fail_cuda(e, "cudaMemRangeGetAttribute(cudaMemRangeAttributeReadMostly)", ctx);
  }
  r.read_mostly = v != 0;
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    fail_cuda(e, "cudaGetDeviceCount", ctx);
  }
  std::vector<int> ids(static_cast<std::size_t>(std::max(count, 1)) + 1, cudaInvalidDeviceId);
  if (cudaError_t e =
          cudaMemRangeGetAttribute(ids.data(), ids.size() * sizeof(int),
                                   cudaMemRangeAttributeAccessedBy, range.data(), range.size());
      e != cudaSuccess) {
    (void)cudaGetLastError();
    fail_cuda(e, "cudaMemRangeGetAttribute(cudaMemRangeAttributeAccessedBy)", ctx);
  }
  std::sort(ids.begin(), ids.end());
  for (int id : ids) {
    if (id >= 0) {
      r.accessed_by.push_back(location::of_device(provider::cuda, static_cast<unsigned>(id)));
    }
  }
  return r;
}

std::uint64_t cuda_device::run_kernel(queue& q, unsigned /*hw*/, const kernel_args& a,
                                      const error_context& ctx) {
  auto lk = enter(ctx);
  const bool writes = a.k == kernel::fill_u32 || a.k == kernel::copy || a.k == kernel::axpy_f32 ||
                      a.k == kernel::scale_f32 || a.k == kernel::increment_u32;
  check_memory(a.x, writes ? need::write : need::read, ctx);
  if (a.has_y) {
    check_memory(a.y, need::read, ctx);
  }
  const auto& cq = dynamic_cast<cuda_queue&>(q);
  cudaStream_t s = cq.stream();
  const std::size_t n = a.x.size() / a.element;
  float f = 0;
  const auto bits = static_cast<std::uint32_t>(a.scalar);
  std::memcpy(&f, &bits, sizeof(f));
  auto* x32 = static_cast<std::uint32_t*>(a.x.data());
  auto* xf = static_cast<float*>(a.x.data());
  cudaError_t e = cudaSuccess;
  bool result = false;
  switch (a.k) {
    case kernel::fill_u32:
      e = cuda_kernels::fill_u32(s, x32, n, bits);
      break;
    case kernel::copy:
      e = cuda_kernels::copy(s, a.x.data(), a.y.data(), a.x.size());
      break;
    case kernel::axpy_f32:
      e = cuda_kernels::axpy_f32(s, xf, static_cast<const float*>(a.y.data()), n, f);
      break;
    case kernel::scale_f32:
      e = cuda_kernels::scale_f32(s, xf, n, f);
      break;
    case kernel::increment_u32:
      e = cuda_kernels::increment_u32(s, x32, n, bits);
      break;
    case kernel::sum_f32:
      e = cuda_kernels::sum_f32(s, xf, n, cq.result());
      result = true;
      break;
    case kernel::sum_u64:
      e = cuda_kernels::sum_u64(s, static_cast<const std::uint64_t*>(a.x.data()), n, cq.result());
      result = true;
      break;
    case kernel::checksum:
      e = cuda_kernels::checksum(s, a.x.data(), a.x.size(), cq.result());
      result = true;
      break;
  }
  if (e != cudaSuccess) {
    failed_ = failed_ || sticky(e);
    fail_cuda(e, "the kernel's launch", ctx);
  }
  std::uint64_t value = 0;
  if (result) {
    if (cudaError_t c =
            cudaMemcpyAsync(&value, cq.result(), sizeof(value), cudaMemcpyDeviceToHost, s);
        c != cudaSuccess) {
      failed_ = failed_ || sticky(c);
      fail_cuda(c, "cudaMemcpyAsync", ctx, " (of the kernel's result)");
    }
  }
  sync(s, "the kernel", ctx);
  return value;
}

class cuda_provider_impl final : public provider_impl {
 public:
  [[nodiscard]] provider kind() const noexcept override { return provider::cuda; }

  [[nodiscard]] std::vector<device_summary> list() override {
    std::vector<device_summary> out;
    int count = 0;
    if (device_count(count) != cudaSuccess) {
      return out;
    }
    int current = 0;
    const bool restore = cudaGetDevice(&current) == cudaSuccess;
    for (int i = 0; i < count; i++) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        (void)cudaGetLastError();
        continue;
      }
      device_summary s;
      s.index = static_cast<unsigned>(i);
      s.name.assign(prop.name, strnlen(prop.name, sizeof(prop.name)));
      s.backend = backend::cuda;
      s.vram_total = prop.totalGlobalMem;
      s.copy_channels = static_cast<unsigned>(std::max(prop.asyncEngineCount, 0));
      s.state = device_state::ready;
      std::size_t free = 0;
      std::size_t total = 0;
      if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess) {
        s.vram_used = total - std::min(free, total);
      } else {
        (void)cudaGetLastError();
        s.state = device_state::unknown;
      }
      out.push_back(std::move(s));
    }
    if (restore) {
      (void)cudaSetDevice(current);
    }
    return out;
  }

  [[nodiscard]] provider_info status() override {
    provider_info i{.provider = provider::cuda, .built = true, .devices = 0, .reason = {}};
    int count = 0;
    if (cudaError_t e = device_count(count); e != cudaSuccess) {
      i.reason = "no CUDA device: cudaGetDeviceCount: " + cuda_text(e);
    } else if (count == 0) {
      i.reason = "no CUDA device: cudaGetDeviceCount found none";
    }
    i.devices = static_cast<unsigned>(count);
    return i;
  }

  [[nodiscard]] std::shared_ptr<device_impl> open(unsigned index) override {
    const error_context ctx{.operation = "open",
                            .device = index,
                            .range = {},
                            .address = {},
                            .provider = provider::cuda};
    int count = 0;
    if (cudaError_t e = device_count(count); e != cudaSuccess) {
      fail(errc::no_device, ctx,
           "there is no cuda" + std::to_string(index) +
               ": no CUDA device: cudaGetDeviceCount: " + cuda_text(e));
    }
    if (index >= static_cast<unsigned>(count)) {
      fail(errc::no_device, ctx,
           "there is no cuda" + std::to_string(index) + "; the CUDA runtime has " +
               std::to_string(count) + (count == 1 ? " device" : " devices"));
    }
    auto d = std::make_shared<cuda_device>(static_cast<int>(index), ::getpid());
    d->init(count, ctx);
    // Make the primary context now, so that errors show here.
    if (cudaError_t e = cudaSetDevice(static_cast<int>(index)); e != cudaSuccess) {
      fail_cuda(e, "cudaSetDevice", ctx);
    }
    if (cudaError_t e = cudaFree(nullptr); e != cudaSuccess) {
      fail_cuda(e, "cudaFree(nullptr)", ctx, " (creating the device's context)");
    }
    return d;
  }

  [[nodiscard]] void* allocate_managed(std::size_t bytes) override {
    // CUDA's managed memory while only CUDA devices are open (see uvm/memory.hpp).
    if (!any_open(provider::cuda) || any_open(provider::hmmgpu)) {
      return nullptr;
    }
    const std::size_t ps = page_size();
    void* base = nullptr;
    if (cudaMallocManaged(&base, bytes + ps - 1, cudaMemAttachGlobal) != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::bad_alloc();
    }
    const auto b = reinterpret_cast<std::uintptr_t>(base);
    void* p =
        reinterpret_cast<void*>((b + ps - 1) & ~(ps - 1));  // NOLINT(performance-no-int-to-ptr)
    try {
      std::lock_guard lk(mu_);
      allocations_.emplace(p, base);
    } catch (...) {
      (void)cudaFree(base);
      throw;
    }
    return p;
  }

  bool free_managed(void* p) noexcept override {
    void* base = nullptr;
    {
      std::lock_guard lk(mu_);
      auto it = allocations_.find(p);
      if (it == allocations_.end()) {
        return false;
      }
      base = it->second;
      allocations_.erase(it);
    }
    (void)cudaFree(base);
    return true;
  }

 private:
  // cudaGetDeviceCount(), its error cleared.
  static cudaError_t device_count(int& count) {
    count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      count = 0;
    }
    return e;
  }

  std::mutex mu_;
  std::map<void*, void*> allocations_;  // page-aligned pointer to cudaMallocManaged's, under mu_
};

}  // namespace

provider_impl& cuda_provider() {
  static cuda_provider_impl p;
  return p;
}

}  // namespace uvm::detail
