// SPDX-License-Identifier: GPL-2.0
// Internals of libuvm shared by its source files: the open device behind a
// uvm::device (device_impl), the registry of open devices that resolves a
// device location, the stream machinery, and the error helpers. Only the
// implementation includes the kernel's uapi header.
#pragma once

#include <sys/types.h>
#include <uapi/hmmgpu.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

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

// Describes what `ctx` was about: "prefetch to hmmgpu1 of [a, b) on hmmgpu1".
std::string describe(const error_context& ctx);

// Throws uvm::error with `code`, its context and why.
[[noreturn]] void fail(std::error_code code, const error_context& ctx, const std::string& why);

// Throws the uvm::error for errno `err` returned by driver call `c`; `why`
// replaces the default explanation when not empty.
[[noreturn]] void fail_errno(int err, call c, const error_context& ctx,
                             const std::string& why = {});

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

// An open /dev/hmmgpuN. Shared by the uvm::device that opened it and by
// the streams and queued work that use it; close() ends it for all.
class device_impl {
 public:
  // Opens /dev/hmmgpu`index` and reads its properties; throws uvm::error.
  static std::shared_ptr<device_impl> open(unsigned index);
  ~device_impl();
  device_impl(const device_impl&) = delete;
  device_impl& operator=(const device_impl&) = delete;
  device_impl(device_impl&&) = delete;
  device_impl& operator=(device_impl&&) = delete;

  [[nodiscard]] unsigned index() const noexcept { return props_.index; }
  [[nodiscard]] const device_properties& props() const noexcept { return props_; }
  [[nodiscard]] bool is_open() const noexcept;
  [[nodiscard]] std::string sysfs(const char* attr) const;

  // ioctl(fd, req, arg), retrying EINTR: 0 or the errno. Throws
  // errc::device_closed once closed, errc::wrong_process in a child.
  int ioctl(unsigned long req, void* arg, const error_context& ctx) const;
  // ioctl() that throws fail_errno(err, c, ctx) for any error.
  void ioctl_or_throw(unsigned long req, void* arg, call c, const error_context& ctx) const;
  // Throws errc::wrong_process in a child of the opener.
  void check_process(const error_context& ctx) const;
  // Throws errc::not_supported naming the device when it lacks `cap`.
  void require(capability cap, const error_context& ctx) const;

  void close() noexcept;
  // The next hardware stream, round robin.
  unsigned next_hardware_stream() noexcept;

  explicit device_impl(int fd, pid_t owner) : fd_(fd), owner_(owner) {}

 private:
  mutable std::shared_mutex mu_;  // held shared by calls, exclusive by close()
  int fd_;                        // -1 once closed; under mu_
  pid_t owner_;
  device_properties props_;
  std::atomic<unsigned> next_stream_{0};
};

// The open device of this process with number `index`, or null.
std::shared_ptr<device_impl> find_device(unsigned index);
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

// HMMGPU_IOCTL_RESIDENCY over the page-aligned `pages`, in as many calls as
// it takes, calling on_run for each run: 0 or the errno that ended it;
// `stop` is where the report stopped (for EFAULT, the unmapped page).
int query_residency(const device_impl& dev, const memory_range& pages, const error_context& ctx,
                    const std::function<void(const hmmgpu_run&)>& on_run, std::uintptr_t& stop);

// The address of the first page of `r` that is not mapped, if `dev` can tell.
std::optional<std::uintptr_t> first_unmapped(const device_impl& dev, const memory_range& r);

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
  [[nodiscard]] std::string name() const;

 private:
  void work();

  std::shared_ptr<device_impl> dev_;
  unsigned hw_;
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
