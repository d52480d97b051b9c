// SPDX-License-Identifier: GPL-2.0
// uvm::stream: an in-order queue of work run by a thread of its own;
// uvm::event: marks in a stream's work.
#include "uvm/stream.hpp"

#include <unistd.h>

#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "detail.hpp"

namespace uvm {
namespace detail {

void marker::complete(const std::exception_ptr& err) noexcept {
  std::lock_guard lk(mu);
  when = std::chrono::steady_clock::now();
  error = err;
  done = true;
  cv.notify_all();
}

void marker::wait() noexcept {
  std::unique_lock lk(mu);
  cv.wait(lk, [this] { return done; });
}

bool marker::is_done() noexcept {
  std::lock_guard lk(mu);
  return done;
}

stream_impl::stream_impl(std::shared_ptr<device_impl> dev, unsigned hardware_stream)
    : dev_(std::move(dev)),
      hw_(hardware_stream),
      queue_state_(dev_->make_queue(hw_)),
      owner_(::getpid()),
      thread_([this] { work(); }) {}

stream_impl::~stream_impl() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::string stream_impl::name() const {
  return "stream " + std::to_string(hw_) + " of " + dev_->name();
}

void stream_impl::check_process(const char* operation) const {
  if (::getpid() != owner_) {
    fail(errc::wrong_process, dev_->context(operation),
         "the stream was created by the parent process: streams must not be used in a child "
         "after fork()");
  }
}

void stream_impl::enqueue(stream_op op) {
  check_process("enqueue");
  {
    std::lock_guard lk(mu_);
    queue_.push_back(std::move(op));
    enqueued_++;
  }
  work_cv_.notify_one();
}

void stream_impl::work() {
  std::unique_lock lk(mu_);
  for (;;) {
    work_cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stopping, and nothing left
    }
    stream_op op = std::move(queue_.front());
    queue_.pop_front();
    const std::exception_ptr poison = poison_;
    lk.unlock();
    std::exception_ptr err = op.run(poison);
    op = {};  // drop what the work held before it counts as done
    lk.lock();
    if (err && !poison_) {
      poison_ = err;
    }
    completed_++;
    done_cv_.notify_all();
  }
}

void stream_impl::synchronize() {
  std::unique_lock lk(mu_);
  const std::uint64_t target = enqueued_;
  done_cv_.wait(lk, [&] { return completed_ >= target; });
  if (std::exception_ptr e = std::exchange(poison_, nullptr)) {
    std::rethrow_exception(e);
  }
}

bool stream_impl::query() {
  std::lock_guard lk(mu_);
  return completed_ == enqueued_;
}

stream_impl& impl_of(const stream& s, const char* operation) {
  const auto& impl = access::impl(s);
  if (!impl) {
    fail(errc::invalid_argument, {.operation = operation}, "the stream was moved from");
  }
  impl->check_process(operation);
  return *impl;
}

// The impl of a uvm::event, or throws errc::invalid_argument.
event_impl& impl_of(const event& e, const char* operation) {
  const auto& impl = access::impl(e);
  if (!impl) {
    fail(errc::invalid_argument, {.operation = operation}, "the event was moved from");
  }
  return *impl;
}

// The latest mark of `e`, or null; throws errc::wrong_process when a
// stream of the parent process made it.
static std::shared_ptr<marker> latest_mark(const event& e, const char* operation) {
  std::shared_ptr<marker> m = impl_of(e, operation).latest();
  if (m && m->owner != ::getpid()) {
    fail(errc::wrong_process, {.operation = operation},
         "the event was recorded by the parent process: events must not be used in a child "
         "after fork()");
  }
  return m;
}

// Rethrows the error a marker carries, as an error of `operation`.
static void rethrow_marked(const marker& m, const char* operation) {
  if (!m.error) {
    return;
  }
  try {
    std::rethrow_exception(m.error);
  } catch (const error& e) {
    throw error(e.code(),
                std::string(operation) + ": the work before the event failed (" + e.what() + ")",
                e.context());
  }
}

}  // namespace detail

namespace {

// A new stream_impl, owned so that a child after fork() never destroys it:
// its thread, mutex and condition variables are the parent's (destroying a
// condition variable the parent's thread waits on would block forever).
std::shared_ptr<detail::stream_impl> make_stream(std::shared_ptr<detail::device_impl> dev,
                                                 unsigned hw) {
  return {new detail::stream_impl(std::move(dev), hw),  // NOLINT(cppcoreguidelines-owning-memory)
          [](detail::stream_impl* p) {
            if (p->owner() == ::getpid()) {
              delete p;  // NOLINT(cppcoreguidelines-owning-memory)
            }
          }};
}

// The device of a new stream: open, and of this process.
const std::shared_ptr<detail::device_impl>& stream_device(const device& dev) {
  const auto& d = detail::impl_of(dev, "stream");
  const error_context ctx = d->context("stream");
  d->check_process(ctx);
  if (!d->is_open()) {
    detail::fail(errc::device_closed, ctx, "the device was closed");
  }
  return d;
}

}  // namespace

stream::stream(const device& dev) {
  const auto& d = stream_device(dev);
  impl_ = make_stream(d, d->next_hardware_stream());
}

stream::stream(const device& dev, unsigned hardware_stream) {
  const auto& d = stream_device(dev);
  const error_context ctx = d->context("stream");
  const unsigned n = d->props().streams;
  if (hardware_stream >= n) {
    detail::fail(errc::invalid_argument, ctx,
                 "hardware stream " + std::to_string(hardware_stream) +
                     " does not exist: " + d->name() + " has " + std::to_string(n) +
                     (n == 1 ? " compute stream" : " compute streams") +
                     (n == 0 ? "" : " (0-" + std::to_string(n - 1) + ")"));
  }
  impl_ = make_stream(d, hardware_stream);
}

stream::~stream() = default;
stream::stream(stream&& other) noexcept = default;
stream& stream::operator=(stream&& other) noexcept = default;

// NOLINTNEXTLINE(readability-make-member-function-const): it changes the stream
void stream::synchronize() { detail::impl_of(*this, "synchronize").synchronize(); }

void stream::synchronize(std::error_code& ec) noexcept {
  detail::to_error_code(ec, [this] { synchronize(); });
}

bool stream::query() const { return detail::impl_of(*this, "query").query(); }

// NOLINTNEXTLINE(readability-make-member-function-const): it changes the stream
void stream::wait(const event& e) {
  auto& st = detail::impl_of(*this, "wait");
  std::shared_ptr<detail::marker> m = detail::latest_mark(e, "wait");
  if (!m) {
    st.enqueue({[](const std::exception_ptr&) { return std::exception_ptr(); }});
    return;
  }
  const std::string name = "wait for an event on " + st.name();
  st.enqueue({[m, name](const std::exception_ptr& poison) {
    if (poison) {
      return std::exception_ptr();  // the stream is failed already
    }
    m->wait();
    try {
      detail::rethrow_marked(*m, name.c_str());
    } catch (...) {
      return std::current_exception();
    }
    return std::exception_ptr();
  }});
}

// NOLINTNEXTLINE(readability-make-member-function-const): it changes the stream
std::future<void> stream::host_call(std::function<void()> fn) {
  auto& st = detail::impl_of(*this, "host_call");
  auto p = std::make_shared<std::promise<void>>();
  std::future<void> f = p->get_future();
  // Runs even after an error: a host call is the caller's own code.
  st.enqueue({[p, fn = std::move(fn)](const std::exception_ptr&) noexcept {
    fn();
    p->set_value();
    return std::exception_ptr();
  }});
  return f;
}

unsigned stream::device_index() const {
  return detail::impl_of(*this, "device_index").dev()->index();
}

location stream::device_location() const {
  return detail::impl_of(*this, "device_location").dev()->where();
}

unsigned stream::hardware_stream() const {
  return detail::impl_of(*this, "hardware_stream").hardware_stream();
}

event::event() : impl_(std::make_shared<detail::event_impl>()) {}
event::~event() = default;
event::event(event&& other) noexcept = default;
event& event::operator=(event&& other) noexcept = default;

void event::record(stream& s) {  // NOLINT(readability-make-member-function-const)
  auto& st = detail::impl_of(s, "record");
  auto& ev = detail::impl_of(*this, "record");
  auto m = std::make_shared<detail::marker>(st.owner());
  st.enqueue({[m](const std::exception_ptr& poison) {
    m->complete(poison);
    return std::exception_ptr();
  }});
  std::lock_guard lk(ev.mu);
  ev.current = std::move(m);
}

void event::synchronize() const {
  auto m = detail::latest_mark(*this, "event synchronize");
  if (!m) {
    return;
  }
  m->wait();
  detail::rethrow_marked(*m, "event synchronize");
}

void event::synchronize(std::error_code& ec) const noexcept {
  detail::to_error_code(ec, [this] { synchronize(); });
}

bool event::query() const {
  auto m = detail::latest_mark(*this, "event query");
  return !m || m->is_done();
}

bool event::recorded() const noexcept { return impl_ && impl_->latest() != nullptr; }

std::chrono::nanoseconds elapsed_time(const event& start, const event& end) {
  auto a = detail::latest_mark(start, "elapsed_time");
  auto b = detail::latest_mark(end, "elapsed_time");
  if (!a || !b) {
    detail::fail(errc::invalid_argument, {.operation = "elapsed_time"},
                 std::string(!a ? "the start" : "the end") + " event was never recorded");
  }
  a->wait();
  b->wait();
  auto when = [](detail::marker& m) {
    std::lock_guard lk(m.mu);
    return m.when;
  };
  return std::chrono::duration_cast<std::chrono::nanoseconds>(when(*b) - when(*a));
}

}  // namespace uvm
