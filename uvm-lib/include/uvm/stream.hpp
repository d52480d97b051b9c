// SPDX-License-Identifier: GPL-2.0
/// @file uvm/stream.hpp
/// @brief Execution: uvm::stream (an in-order queue of asynchronous work) and uvm::event.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <system_error>

#include "uvm/device.hpp"

namespace uvm {

namespace detail {
class stream_impl;
class event_impl;
struct access;
}  // namespace detail

class event;

/// An in-order queue of asynchronous work on a device: prefetches
/// (uvm::prefetch), kernels (uvm/kernels.hpp), host calls, event records
/// and waits. The work of one stream runs one item after the other, in the
/// order it was enqueued, while the caller goes on; the work of different
/// streams runs concurrently (kernels of streams on different hardware
/// streams also on the device).
///
/// **Errors.** Arguments are checked when work is enqueued, and bad ones
/// throw there. An error while work runs is kept: it is reported, naming
/// the operation, by the next synchronize() of the stream (and by the
/// work's future, and by synchronize() of an event recorded after it).
/// Until synchronize() has reported it, the work enqueued after the failed
/// operation does not run: it fails with errc::canceled (so a kernel never
/// runs on the output of a failed one). Once reported, the stream works
/// normally again. An error that synchronize() never reports is lost when
/// the stream is destroyed: synchronize before destroying a stream whose
/// errors matter.
///
/// Each stream has a thread of its own that issues its work to the
/// driver, and uses one of its device's hardware compute streams for its
/// kernels (several uvm::streams may share one). On a CUDA device it also
/// has a CUDA stream of its own (non-blocking), on which its prefetches
/// and kernels run; the thread waits for each before the next, so that an
/// error names its operation. Events are marks of the stream's thread on
/// either provider (their times are the host's).
///
/// @code
/// uvm::device gpu(0);
/// uvm::stream s(gpu);
/// uvm::managed_vector<std::uint32_t> v(1 << 20);
/// uvm::prefetch(v, gpu, s);
/// uvm::fill(v, 7, s);
/// auto sum = uvm::checksum(v, s);  // std::future<std::uint64_t>
/// uvm::prefetch(v, uvm::cpu, s);
/// s.synchronize();                 // throws the first error of the work above
/// std::uint64_t h = sum.get();
/// @endcode
///
/// @par Thread safety
/// Enqueueing (from any function taking the stream), synchronize(),
/// query() and wait() may be called from several threads at once. Moving,
/// assigning and destroying must not race with other calls on the same
/// object. A stream belongs to the process that created it (see
/// uvm::device): in a child after fork() every call throws
/// errc::wrong_process, and destroying it there leaves the parent's work
/// alone.
class stream {
 public:
  /// A stream on `dev` that uses the next of its hardware streams, round
  /// robin (hardware stream 0 on a device without compute).
  /// @throws uvm::error errc::device_closed; std::system_error when the
  ///         thread cannot be started.
  explicit stream(const device& dev);

  /// A stream on `dev` that runs its kernels on hardware stream
  /// `hardware_stream`.
  /// @throws uvm::error errc::invalid_argument when `hardware_stream` is
  ///         not below device_properties::streams (a device without compute
  ///         has none); errc::device_closed.
  stream(const device& dev, unsigned hardware_stream);

  /// Waits for the work queued on the stream, then ends its thread. An
  /// error not reported by synchronize() is lost.
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  /// Takes over `other`'s queue; `other` is left empty (its calls throw
  /// errc::invalid_argument).
  stream(stream&& other) noexcept;
  /// Waits for this stream's work (as the destructor), then takes over
  /// `other`'s queue.
  stream& operator=(stream&& other) noexcept;

  /// Waits until the work enqueued before the call has run.
  /// @throws uvm::error the first error of work that ran since the last
  ///         synchronize() (its operation named), which is then cleared;
  ///         errc::invalid_argument for a moved-from stream.
  void synchronize();

  /// synchronize(), reporting the error in `ec` (cleared on success).
  void synchronize(std::error_code& ec) noexcept;

  /// Whether all work enqueued so far has run. Does not report errors.
  /// @throws uvm::error errc::invalid_argument for a moved-from stream.
  [[nodiscard]] bool query() const;

  /// Makes the work enqueued on this stream after the call wait until the
  /// work before `e`'s latest record() (on any stream) has run. Waiting
  /// for an event never recorded does nothing. If that work failed, this
  /// stream's wait fails with its error (so the work after it is canceled
  /// until synchronize()).
  /// @throws uvm::error errc::invalid_argument for a moved-from stream or
  ///         event.
  void wait(const event& e);

  /// Enqueues a call of `fn` on the stream's thread, in order with the
  /// rest of its work. `fn` must not throw (std::terminate otherwise) and
  /// must not synchronize this stream.
  /// @return a future that is ready once `fn` returned.
  /// @throws uvm::error errc::invalid_argument for a moved-from stream.
  std::future<void> host_call(std::function<void()> fn);

  /// N of the device's /dev/hmmgpuN, or its CUDA device ordinal.
  /// @throws uvm::error errc::invalid_argument for a moved-from stream.
  [[nodiscard]] unsigned device_index() const;

  /// Where the stream's device is (its provider and number).
  /// @throws uvm::error errc::invalid_argument for a moved-from stream.
  [[nodiscard]] location device_location() const;

  /// The hardware compute stream its kernels run on.
  /// @throws uvm::error errc::invalid_argument for a moved-from stream.
  [[nodiscard]] unsigned hardware_stream() const;

 private:
  friend struct detail::access;
  std::shared_ptr<detail::stream_impl> impl_;
};

/// A point in a stream's work: record() marks it; synchronize(), query()
/// and stream::wait() refer to the latest mark; elapsed_time() measures
/// between two marks.
///
/// Times are taken on the host when the stream reaches the mark (all work
/// enqueued before it has run), with `std::chrono::steady_clock`.
///
/// @code
/// uvm::event start, stop;
/// start.record(s);
/// uvm::fill(v, 1, s);
/// stop.record(s);
/// other.wait(stop);                   // `other` continues after the fill
/// auto t = uvm::elapsed_time(start, stop);
/// @endcode
///
/// @par Thread safety
/// record(), synchronize(), query() and use by stream::wait() may be
/// called from several threads at once. Moving, assigning and destroying
/// must not race with other calls on the same object. In a child after
/// fork(), a mark made by the parent throws errc::wrong_process.
class event {
 public:
  /// An event never recorded.
  event();
  /// Leaves recorded marks in their streams (they complete there).
  ~event();
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  /// Takes over `other`'s marks; `other` is left empty.
  event(event&& other) noexcept;
  /// Takes over `other`'s marks.
  event& operator=(event&& other) noexcept;

  /// Marks the current end of `s`'s work (replacing an earlier mark).
  /// @throws uvm::error errc::invalid_argument for a moved-from stream or
  ///         event; errc::wrong_process.
  void record(stream& s);

  /// Waits until the marked work has run (returns at once if never
  /// recorded).
  /// @throws uvm::error the error of the marked work's stream that
  ///         synchronize() had not yet reported when the mark was reached
  ///         (the stream still reports it too); errc::invalid_argument for
  ///         a moved-from event.
  void synchronize() const;

  /// synchronize(), reporting the error in `ec` (cleared on success).
  void synchronize(std::error_code& ec) const noexcept;

  /// Whether the marked work has run (true if never recorded). Does not
  /// report errors.
  /// @throws uvm::error errc::invalid_argument for a moved-from event.
  [[nodiscard]] bool query() const;

  /// Whether record() was ever called.
  [[nodiscard]] bool recorded() const noexcept;

 private:
  friend struct detail::access;
  std::shared_ptr<detail::event_impl> impl_;
};

/// The time between the marks of `start` and `end`, waiting for both.
/// Negative when `end`'s mark was reached first.
/// @throws uvm::error errc::invalid_argument when either was never
///         recorded or is moved from.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] std::chrono::nanoseconds elapsed_time(const event& start, const event& end);

}  // namespace uvm
