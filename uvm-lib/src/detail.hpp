// SPDX-License-Identifier: GPL-2.0
// Internals of libuvm shared by its source files: the provider interface
// (provider_impl, the kinds of driver: hmmgpu.cpp and cuda/), the open
// device behind a uvm::device (device_impl, one subclass per provider),
// the registry of open devices that resolves a device location, the
// stream machinery, and the error helpers.
//
// The public functions (device.cpp, hints.cpp, kernels.cpp, memory.cpp,
// stream.cpp) validate their arguments, pick the device and call the
// device_impl; everything that talks to a driver is in a provider. Only
// hmmgpu.cpp includes the kernel's uapi header, only cuda/ the CUDA
// headers.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "uvm/device.hpp"
#include "uvm/error.hpp"
#include "uvm/hints.hpp"
#include "uvm/location.hpp"
#include "uvm/range.hpp"
#include "uvm/stream.hpp"

namespace uvm::detail {

// The driver call an errno came from: each documents its own meanings.
enum class call {
  open,
  get_info,
  nop,
  migrate,
  counters,
  launch,
  wait,
  residency,
  advise,
  get_advice
};

// "hmmgpuN" or "cudaN".
std::string device_name(provider p, unsigned index);

// Describes what `ctx` was about: "prefetch to hmmgpu1 of [a, b) on hmmgpu1".
std::string describe(const error_context& ctx);

// Throws uvm::error with `code`, its context and why.
[[noreturn]] void fail(std::error_code code, const error_context& ctx, const std::string& why);

// Throws the uvm::error for errno `err` returned by hmmgpu driver call `c`;
// `why` replaces the default explanation when not empty.
[[noreturn]] void fail_errno(int err, call c, const error_context& ctx,
                             const std::string& why = {});

// "%#lx" of an address.
std::string hex(std::uintptr_t a);

// The name of enumerator `e` of an enum numbered from 0, from `names` in
// declaration order; "unknown" for a value out of range.
template <class E, std::size_t N>
const char* enum_name(E e, const std::array<const char*, N>& names) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : "unknown";  // NOLINT(cppcoreguidelines-pro-bounds-constant-array-index)
}

// The error_code form of a throwing call: runs fn and sets `ec` to the code
// of what it threw (cleared when nothing).
template <class Fn>
void to_error_code(std::error_code& ec, Fn&& fn) noexcept {
  ec.clear();
  try {
    std::forward<Fn>(fn)();
  } catch (const std::system_error& e) {
    ec = e.code();
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  } catch (...) {
    ec = std::make_error_code(std::errc::state_not_recoverable);
  }
}

// Throws errc::invalid_range unless `r` stays inside the address space.
void check_range(const memory_range& r, const error_context& ctx);

// Grants the implementation access to the handles' impl_ members.
struct access {
  template <class Handle>
  static const auto& impl(const Handle& h) noexcept {
    return h.impl_;
  }
};

// One of the kernels of uvm/kernels.hpp.
enum class kernel {
  fill_u32,
  copy,
  axpy_f32,
  scale_f32,
  increment_u32,
  sum_f32,
  sum_u64,
  checksum
};

// A kernel and its operands, in the device's terms: x is the operand it
// writes (when it writes one), y the second operand. axpy computes
// x = scalar * y + x, copy copies y to x. Scalars travel as bits: an f32
// in the low 32 bits.
struct kernel_args {
  kernel k = kernel::fill_u32;
  const char* name = "";
  std::size_t element = 1;  // bytes per element
  memory_range x;           // operand x (its size is count * element)
  memory_range y;           // operand y, of a kernel with one
  bool has_y = false;
  std::uint64_t scalar = 0;
};

// What a provider keeps per uvm::stream (a CUDA stream, say): made by
// device_impl::make_queue, used only from the stream's thread.
class queue {
 public:
  queue() = default;
  virtual ~queue() = default;
  queue(const queue&) = delete;
  queue& operator=(const queue&) = delete;
  queue(queue&&) = delete;
  queue& operator=(queue&&) = delete;
};

// An open device of a provider. Shared by the uvm::device that opened it
// and by the streams and queued work that use it; close() ends it for all.
// The members that reach the driver throw errc::device_closed once closed
// and errc::wrong_process in a child of the opener.
class device_impl {
 public:
  device_impl(const device_impl&) = delete;
  device_impl& operator=(const device_impl&) = delete;
  device_impl(device_impl&&) = delete;
  device_impl& operator=(device_impl&&) = delete;
  virtual ~device_impl() = default;

  [[nodiscard]] unsigned index() const noexcept { return props_.index; }
  [[nodiscard]] provider kind() const noexcept { return props_.provider(); }
  [[nodiscard]] location where() const noexcept { return location::of_device(kind(), index()); }
  // "hmmgpuN" or "cudaN".
  [[nodiscard]] std::string name() const { return device_name(kind(), index()); }
  [[nodiscard]] const device_properties& props() const noexcept { return props_; }
  // An error context of `operation` naming this device.
  [[nodiscard]] error_context context(std::string operation) const;
  // Sets the device of `ctx` to this one.
  void name_in(error_context& ctx) const noexcept;

  // Throws errc::wrong_process in a child of the opener.
  void check_process(const error_context& ctx) const;
  // Throws errc::not_supported naming the device when it lacks `cap`.
  void require(capability cap, const error_context& ctx) const;
  // The next hardware stream, round robin.
  unsigned next_hardware_stream() noexcept;

  [[nodiscard]] virtual bool is_open() const noexcept = 0;
  virtual void close() noexcept = 0;
  // The device as error messages name it: "hmmgpu1 (sysram, uapi 1.4)".
  [[nodiscard]] virtual std::string describe() const = 0;

  [[nodiscard]] virtual memory_info memory(const error_context& ctx) const = 0;
  // device_state::lost once gone; throws device_closed.
  [[nodiscard]] virtual device_state state(const error_context& ctx) const = 0;
  [[nodiscard]] virtual device_counters counters(const error_context& ctx) const = 0;
  [[nodiscard]] virtual std::chrono::nanoseconds ping(unsigned count,
                                                      const error_context& ctx) const = 0;
  // Whether `other` (a device of the same provider) is a peer.
  [[nodiscard]] virtual bool can_access_peer(const device_impl& other) const = 0;

  // The provider's state for a new stream of hardware stream `hw`.
  [[nodiscard]] virtual std::unique_ptr<queue> make_queue(unsigned hw) = 0;

  // Moves the pages of the non-empty, checked `range` to `to` (the CPU or
  // this device) and waits; on `q`, a queue of this device, when not null.
  virtual prefetch_result prefetch(location to, const memory_range& range, queue* q,
                                   const error_context& ctx) = 0;
  // Sets advice `a` (validated) for the non-empty, checked `range`; `loc`
  // is the CPU or this device.
  virtual void advise(const memory_range& range, advice a, location loc, error_context ctx) = 0;
  // The runs of the non-empty, checked `range` as this device sees them.
  virtual std::vector<residency_run> residency(const memory_range& range, error_context ctx) = 0;
  // The advice of the non-empty, checked `range`.
  virtual range_advice range_attributes(const memory_range& range, error_context ctx) = 0;
  // Runs `a` (validated, not empty) on `q` (a queue of this device) and
  // returns its result (the uapi's: sums as their bits), or throws.
  virtual std::uint64_t run_kernel(queue& q, unsigned hw, const kernel_args& a,
                                   const error_context& ctx) = 0;

 protected:
  explicit device_impl(pid_t owner) : owner_(owner) {}
  device_properties props_;  // set by the provider's open, fixed afterwards

 private:
  pid_t owner_;
  std::atomic<unsigned> next_stream_{0};
};

// A kind of driver: enumerates and opens its devices, and may allocate
// the process's managed memory.
class provider_impl {
 public:
  provider_impl() = default;
  provider_impl(const provider_impl&) = delete;
  provider_impl& operator=(const provider_impl&) = delete;
  provider_impl(provider_impl&&) = delete;
  provider_impl& operator=(provider_impl&&) = delete;
  virtual ~provider_impl() = default;

  [[nodiscard]] virtual provider kind() const noexcept = 0;
  // Its devices in ascending order; empty when it has none.
  [[nodiscard]] virtual std::vector<device_summary> list() = 0;
  // Whether it has devices, and why not.
  [[nodiscard]] virtual provider_info status() = 0;
  // Opens device `index`; throws errc::no_device saying why when there is none.
  [[nodiscard]] virtual std::shared_ptr<device_impl> open(unsigned index) = 0;
  // Managed memory of `bytes` (whole pages) when this provider allocates the
  // process's managed memory now, else null; throws std::bad_alloc.
  [[nodiscard]] virtual void* allocate_managed(std::size_t /*bytes*/) { return nullptr; }
  // Frees `p` when allocate_managed() returned it: true; false otherwise.
  virtual bool free_managed(void* /*p*/) noexcept { return false; }
};

// Whether properties `p` have capability `c`, and the bit of `c` in
// device_properties::capability_bits (hmmgpu's HMMGPU_CAP_*; 0 for
// peer_access, which is peer_mask != 0).
bool capability_bit(const device_properties& p, capability c) noexcept;
std::uint32_t capability_mask(capability c) noexcept;

// The providers: hmmgpu first, then CUDA (its stand-in when libuvm is built
// without it). Each lives until exit.
provider_impl& hmmgpu_provider();
provider_impl& cuda_provider();
std::array<provider_impl*, 2> providers();
provider_impl& provider_of(provider p);

// Adds an opened device to the registry of open devices.
void add_to_registry(const std::shared_ptr<device_impl>& d);
// The open device of this process at `loc` (a device), or null.
std::shared_ptr<device_impl> find_device(location loc);
// Whether some device of provider `p` is open in this process.
bool any_open(provider p);
// An open device that can migrate (else any open device), or null;
// `prefer` when it is open.
std::shared_ptr<device_impl> any_device(const std::shared_ptr<device_impl>& prefer = nullptr);
// The device for `loc` (a device location), or throws errc::no_device.
std::shared_ptr<device_impl> device_for(location loc, const error_context& ctx);
// any_device(prefer), or throws errc::no_device.
std::shared_ptr<device_impl> some_device(const error_context& ctx,
                                         const std::shared_ptr<device_impl>& prefer = nullptr);
// The impl of a uvm::device, or throws errc::device_closed.
const std::shared_ptr<device_impl>& impl_of(const device& d, const char* operation);

// A mark in a stream (uvm::event): completed by the stream's thread.
struct marker {
  explicit marker(pid_t pid) : owner(pid) {}
  const pid_t owner;  // the process of the stream that completes it
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;  // the stream's unreported error at the mark
  std::chrono::steady_clock::time_point when;
  void complete(const std::exception_ptr& err) noexcept;
  void wait() noexcept;
  [[nodiscard]] bool is_done() noexcept;
};

// The work of a stream. run() gets the stream's unreported error (null
// when none) and returns the error to keep, if it failed.
struct stream_op {
  std::function<std::exception_ptr(const std::exception_ptr& poison)> run;
};

// The uvm::errc::canceled error of an operation not run after `cause`.
std::exception_ptr canceled(const error_context& ctx, const std::exception_ptr& cause);

class stream_impl {
 public:
  stream_impl(std::shared_ptr<device_impl> dev, unsigned hardware_stream);
  ~stream_impl();
  stream_impl(const stream_impl&) = delete;
  stream_impl& operator=(const stream_impl&) = delete;
  stream_impl(stream_impl&&) = delete;
  stream_impl& operator=(stream_impl&&) = delete;

  // Queues `op`; throws errc::wrong_process in a child.
  void enqueue(stream_op op);
  // Throws errc::wrong_process in a child of the creator, naming `operation`.
  void check_process(const char* operation) const;
  [[nodiscard]] pid_t owner() const noexcept { return owner_; }
  // Queues fn: its result or error goes to the returned future and, for
  // an error, to the stream. Not run (errc::canceled) while the stream has
  // an unreported error.
  template <class T>
  std::future<T> enqueue_task(error_context ctx, std::function<T()> fn) {
    auto p = std::make_shared<std::promise<T>>();
    std::future<T> f = p->get_future();
    enqueue({[p, ctx = std::move(ctx), fn = std::move(fn)](const std::exception_ptr& poison) {
      if (poison) {
        p->set_exception(canceled(ctx, poison));
        return std::exception_ptr();
      }
      try {
        if constexpr (std::is_void_v<T>) {
          fn();
          p->set_value();
        } else {
          p->set_value(fn());
        }
        return std::exception_ptr();
      } catch (...) {
        std::exception_ptr e = std::current_exception();
        p->set_exception(e);
        return e;
      }
    }});
    return f;
  }

  void synchronize();
  [[nodiscard]] bool query();
  [[nodiscard]] const std::shared_ptr<device_impl>& dev() const noexcept { return dev_; }
  [[nodiscard]] unsigned hardware_stream() const noexcept { return hw_; }
  // The provider's state of this stream; used by its thread only.
  [[nodiscard]] queue& provider_queue() const noexcept { return *queue_state_; }
  [[nodiscard]] std::string name() const;

 private:
  void work();

  std::shared_ptr<device_impl> dev_;
  unsigned hw_;
  std::unique_ptr<queue> queue_state_;
  pid_t owner_;
  std::mutex mu_;
  std::condition_variable work_cv_;  // work queued, or stopping
  std::condition_variable done_cv_;  // completed_ grew
  std::deque<stream_op> queue_;      // under mu_, as the fields below
  std::uint64_t enqueued_ = 0;
  std::uint64_t completed_ = 0;
  std::exception_ptr poison_;  // first error not yet reported by synchronize()
  bool stopping_ = false;
  std::thread thread_;  // last: started once the fields above exist
};

// The impl of a uvm::stream, or throws errc::invalid_argument.
stream_impl& impl_of(const stream& s, const char* operation);
class event_impl;
// The impl of a uvm::event, or throws errc::invalid_argument.
event_impl& impl_of(const event& e, const char* operation);

class event_impl {
 public:
  std::mutex mu;
  std::shared_ptr<marker> current;  // the latest record(), under mu
  [[nodiscard]] std::shared_ptr<marker> latest() {
    std::lock_guard lk(mu);
    return current;
  }
};

}  // namespace uvm::detail
