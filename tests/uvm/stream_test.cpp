// SPDX-License-Identifier: GPL-2.0
//
// uvm library, on every provider's devices: streams, events and kernels — every kernel's
// result checked on the CPU, stream order, concurrent streams from several
// threads, events and cross-stream waits, asynchronous errors reported at
// synchronize (and the work after them canceled), and the errors of bad
// launches, sysram devices and hardware streams that do not exist.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "uvm_test.h"

namespace uvm::test {
namespace {

// A gate a host call waits at: holds a stream's work back until opened.
class Gate {
 public:
  std::function<void()> wait() {
    return [f = opened_.get_future().share()] { f.wait(); };
  }
  void open() { opened_.set_value(); }

 private:
  std::promise<void> opened_;
};

class Kernels : public DeviceTest {};

// Every kernel computes what the uapi says; the CPU reads the results.
TEST_P(Kernels, EveryKernel) {
  stream s(dev());
  const std::size_t n = 8 * kPage / 4;
  managed_vector<std::uint32_t> u(n);
  fill(u, 0xdeadbeef, s);
  increment(u, 2, s);
  auto c = checksum(u, s);
  s.synchronize();
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(u[i], 0xdeadbef1U) << i;
  }
  EXPECT_EQ(c.get(), fnv1a(u.data(), n * 4));

  managed_vector<std::uint32_t> dst(n);
  copy_bytes(dst, u, s).get();
  EXPECT_EQ(std::memcmp(dst.data(), u.data(), n * 4), 0);

  managed_vector<float> x(n);
  managed_vector<float> y(n);
  double want = 0;
  for (std::size_t i = 0; i < n; i++) {
    x[i] = static_cast<float>(i);
    y[i] = 1.0F;
  }
  axpy(2.0F, x, y, s);  // y = 2x + 1
  scale(0.5F, y, s);    // y = x + 0.5
  auto fsum = sum(std::span<const float>(y), s);
  for (std::size_t i = 0; i < n; i++) {
    const float yi = (2.0F * static_cast<float>(i) + 1.0F) * 0.5F;
    want += static_cast<double>(yi);
  }
  EXPECT_EQ(fsum.get(), want);
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(x[i], static_cast<float>(i)) << i;
  }

  managed_vector<std::uint64_t> w(n / 2);
  std::uint64_t wsum = 0;
  for (std::size_t i = 0; i < w.size(); i++) {
    wsum += w[i] = i * 0x100000001ULL;
  }
  EXPECT_EQ(sum(std::span<const std::uint64_t>(w), s).get(), wsum);
}

// A kernel on memory the device has never seen faults it in: the device's
// counters show the faults, their replays (and from uapi 1.4 the fault
// batches), and the pages moved to its VRAM.
TEST_P(Kernels, FirstTouchCounters) {
  UVM_HMMGPU_ONLY("the CUDA runtime exposes no counters");
  stream s(dev());
  managed_vector<std::uint32_t> v(32 * kPage / 4);
  const device_counters before = dev().counters();
  fill(v, 3, s).get();
  const device_counters d = dev().counters() - before;
  EXPECT_GE(d.device_faults, 1U);
  EXPECT_GE(d.fault_replays, 1U);
  EXPECT_GE(d.to_device_pages, 32U);
  if (dev().properties().driver >= driver_version{1, 4}) {
    EXPECT_GE(d.fault_batches, 1U);
  }
  EXPECT_EQ(summarize(residency(v, dev())).at(dev()), 32U);
  EXPECT_EQ(v[100], 3U);
}

// Kernels on no elements do nothing and give the result of nothing.
TEST_P(Kernels, Empty) {
  stream s(dev());
  std::vector<float> none;
  EXPECT_EQ(sum(std::span<const float>(none), s).get(), 0.0);
  EXPECT_EQ(checksum(memory_range(), s).get(), 0xcbf29ce484222325ULL);
  EXPECT_NO_THROW(fill(std::span<std::uint32_t>(), 1, s).get());
}

// Bad operands are refused when enqueued, before anything runs.
TEST_P(Kernels, BadOperands) {
  stream s(dev());
  managed_vector<std::uint32_t> v(kPage / 4 + 1);
  auto* odd = reinterpret_cast<std::uint32_t*>(reinterpret_cast<char*>(v.data()) + 1);
  EXPECT_TRUE(throws_error(
      [&] {
        (void)fill({odd, 4}, 1, s);
      },
      errc::misaligned, {"fill", "not aligned to 4 bytes"}));
  managed_vector<float> a(10);
  managed_vector<float> b(11);
  EXPECT_TRUE(
      throws_error([&] { (void)axpy(1.0F, a, b, s); }, errc::invalid_argument, {"differ in size"}));
  EXPECT_TRUE(throws_error(
      [&] {
        (void)copy_bytes({v.data(), 64}, {v.data() + 8, 64}, s);
      },
      errc::invalid_argument, {"overlaps"}));
  // Never touched: the size is checked first.
  const std::span<std::uint32_t> huge(v.data(), (max_kernel_bytes / 4) + 1);
  EXPECT_TRUE(
      throws_error([&] { (void)increment(huge, 1, s); }, errc::invalid_argument, {"256 MiB"}));
  s.synchronize();
  EXPECT_EQ(v[0], 0U);
}

// The device touching unmapped memory fails the kernel asynchronously:
// synchronize reports it, naming the page; the work after it is canceled
// until then; the stream then works again.
TEST_P(Kernels, AsyncErrorAtSynchronize) {
  UVM_NEEDS_PAGEABLE();
  stream s(dev());
  managed_vector<std::uint32_t> after(kPage / 4);
  Mapping m(4 * kPage);  // its hole is made last, so that no allocation lands in it
  char* hole = m.get() + 2 * kPage;
  ASSERT_EQ(::munmap(hole, kPage), 0);
  const std::span<std::uint32_t> all(reinterpret_cast<std::uint32_t*>(m.get()), 4 * kPage / 4);
  auto bad = fill(all, 7, s);
  auto skipped = fill(after, 9, s);
  EXPECT_TRUE(throws_error([&] { s.synchronize(); }, errc::bad_address,
                           {"fill on stream", dev_name(), "the page at " + hex(hole)}));
  EXPECT_TRUE(throws_error([&] { bad.get(); }, errc::bad_address));
  EXPECT_TRUE(throws_error([&] { skipped.get(); }, errc::canceled, {"not run"}));
  EXPECT_EQ(after[0], 0U);
  // Reported once; the stream works again.
  EXPECT_NO_THROW(s.synchronize());
  fill(after, 9, s).get();
  EXPECT_EQ(after[0], 9U);
  // The error_code form.
  (void)fill(all, 1, s);
  std::error_code ec;
  s.synchronize(ec);
  EXPECT_EQ(ec, errc::bad_address);
  s.synchronize(ec);
  EXPECT_FALSE(ec);
  ASSERT_EQ(::munmap(m.get(), 2 * kPage), 0);
  ASSERT_EQ(::munmap(m.get() + 3 * kPage, kPage), 0);
  m.forget();
}

// Writing read-only memory is a bad address too.
TEST_P(Kernels, ReadOnlyMemory) {
  UVM_NEEDS_PAGEABLE();
  stream s(dev());
  Mapping m(2 * kPage);
  std::memset(m.get(), 3, m.size());
  ASSERT_EQ(::mprotect(m.get(), m.size(), PROT_READ), 0);
  EXPECT_EQ(checksum({m.get(), m.size()}, s).get(), fnv1a(m.get(), m.size()));
  auto f = fill({reinterpret_cast<std::uint32_t*>(m.get()), m.size() / 4}, 1, s);
  EXPECT_TRUE(throws_error([&] { f.get(); }, errc::bad_address, {hex(m.get())}));
  EXPECT_THROW(s.synchronize(), error);
  EXPECT_EQ(m.get()[0], 3);
}

// Work of one stream runs in order: prefetch, fill, increments, checksum,
// prefetch back — the checksum sees every increment.
TEST_P(Kernels, StreamOrder) {
  stream s(dev());
  managed_vector<std::uint32_t> v(16 * kPage / 4);
  auto to = prefetch(v, dev(), s);
  fill(v, 10, s);
  for (int i = 0; i < 5; i++) {
    increment(v, 1, s);
  }
  auto c = checksum(v, s);
  prefetch(v, cpu, s);
  s.synchronize();
  EXPECT_EQ(to.get().failed(), 0U);
  for (std::size_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(v[i], 15U) << i;
  }
  EXPECT_EQ(c.get(), fnv1a(v.data(), v.size() * 4));
  EXPECT_EQ(summarize(residency(v, dev())).cpu, 16U);
}

// query() is false while work is held back and true once it has run; a
// host call runs in order with the rest.
TEST_P(Kernels, QueryAndHostCall) {
  stream s(dev());
  Gate gate;
  managed_vector<std::uint32_t> v(kPage / 4);
  std::atomic<std::uint32_t> seen{0};
  auto held = s.host_call(gate.wait());
  fill(v, 4, s);
  auto after = s.host_call([&] { seen = v[0]; });
  EXPECT_FALSE(s.query());
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  gate.open();
  s.synchronize();
  EXPECT_TRUE(s.query());
  after.get();
  EXPECT_EQ(seen.load(), 4U);
}

// Several threads, each with its own streams (on every compute device),
// plus two threads sharing one stream: all results right.
TEST_P(Kernels, ConcurrentStreamsFromThreads) {
  std::vector<device> devs;
  for (const auto& d : only(compute_devices(), GetParam().provider())) {
    devs.emplace_back(d);
  }
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  stream shared(dev());
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      device& d = devs[static_cast<std::size_t>(t) % devs.size()];
      stream own(d);
      stream& s = t < 2 ? shared : own;
      managed_vector<std::uint32_t> v(8 * kPage / 4);
      fill(v, static_cast<std::uint32_t>(t), s);
      for (int i = 0; i < 10; i++) {
        increment(v, 1, s);
      }
      auto c = checksum(v, s);
      s.synchronize();
      const std::uint32_t want = static_cast<std::uint32_t>(t) + 10;
      for (auto x : v) {
        if (x != want) {
          failures++;
        }
      }
      if (c.get() != fnv1a(v.data(), v.size() * 4)) {
        failures++;
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

// Each stream uses a hardware stream; one that does not exist is refused.
TEST_P(Kernels, HardwareStreams) {
  const unsigned n = dev().properties().streams;
  ASSERT_GE(n, 1U);
  for (unsigned i = 0; i < n; i++) {
    stream s(dev(), i);
    EXPECT_EQ(s.hardware_stream(), i);
    EXPECT_EQ(s.device_index(), dev().index());
    managed_vector<std::uint64_t> v(kPage / 8, i + 1);
    EXPECT_EQ(sum(std::span<const std::uint64_t>(v), s).get(), (i + 1) * v.size());
  }
  stream a(dev());
  stream b(dev());
  if (n > 1) {
    EXPECT_NE(a.hardware_stream(), b.hardware_stream());  // round robin
  }
  EXPECT_TRUE(throws_error([&] { stream s(dev(), n); }, errc::invalid_argument,
                           {"hardware stream " + std::to_string(n) + " does not exist",
                            std::to_string(n) + " compute stream"}));
}

// An event marks a point: another stream waiting for it runs its work
// after the marked work, even while that is held back.
TEST_P(Kernels, CrossStreamWait) {
  stream producer(dev());
  stream consumer(dev());
  Gate gate;
  managed_vector<std::uint32_t> v(4 * kPage / 4);
  event done;
  producer.host_call(gate.wait());
  fill(v, 5, producer);
  done.record(producer);
  EXPECT_TRUE(done.recorded());
  EXPECT_FALSE(done.query());
  consumer.wait(done);
  auto c = checksum(v, consumer);
  EXPECT_EQ(c.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  gate.open();
  std::vector<std::uint32_t> fives(v.size(), 5);
  EXPECT_EQ(c.get(), fnv1a(fives.data(), fives.size() * 4));
  done.synchronize();
  EXPECT_TRUE(done.query());
  consumer.synchronize();
  producer.synchronize();
}

// Events time a stream's work; a later mark replaces an earlier one.
TEST_P(Kernels, EventTiming) {
  stream s(dev());
  event start;
  event stop;
  managed_vector<std::uint32_t> v(32 * kPage / 4);
  start.record(s);
  fill(v, 1, s);
  stop.record(s);
  EXPECT_GE(elapsed_time(start, stop).count(), 0);
  EXPECT_LE(elapsed_time(stop, start).count(), 0);  // NOLINT(readability-suspicious-call-argument)
  EXPECT_EQ(elapsed_time(start, start).count(), 0);
  std::error_code ec = errc::busy;
  stop.synchronize(ec);
  EXPECT_FALSE(ec);
  Gate gate;
  s.host_call(gate.wait());
  stop.record(s);
  EXPECT_FALSE(stop.query());  // the new mark
  gate.open();
  stop.synchronize();
  EXPECT_TRUE(stop.query());
  event moved = std::move(stop);
  EXPECT_TRUE(moved.recorded());
  EXPECT_TRUE(throws_error([&] { s.wait(stop); }, errc::invalid_argument));  // NOLINT
}

// An error before an event: the event's synchronize reports it, a stream
// waiting for the event fails and cancels its own later work; every
// stream reports once and works again.
TEST_P(Kernels, ErrorsFlowThroughEvents) {
  UVM_NEEDS_PAGEABLE();
  stream a(dev());
  stream b(dev());
  managed_vector<std::uint32_t> v(kPage / 4);
  Mapping m(kPage, PROT_NONE);  // mapped, but not for the device either
  event e;
  (void)fill({reinterpret_cast<std::uint32_t*>(m.get()), kPage / 4}, 1, a);
  e.record(a);
  b.wait(e);
  auto later = fill(v, 3, b);
  EXPECT_TRUE(
      throws_error([&] { e.synchronize(); }, errc::bad_address, {"work before the event failed"}));
  std::error_code ec;
  e.synchronize(ec);
  EXPECT_EQ(ec, errc::bad_address);
  EXPECT_TRUE(throws_error([&] { b.synchronize(); }, errc::bad_address, {"wait for an event"}));
  EXPECT_TRUE(throws_error([&] { later.get(); }, errc::canceled));
  EXPECT_TRUE(throws_error([&] { a.synchronize(); }, errc::bad_address));
  EXPECT_EQ(v[0], 0U);
  b.wait(e);  // the mark still carries the error: b fails again
  EXPECT_THROW(b.synchronize(), error);
  e.record(a);  // a fresh mark after the report is clean
  b.wait(e);
  fill(v, 3, b).get();
  EXPECT_NO_THROW(b.synchronize());
  EXPECT_EQ(v[0], 3U);
}

// Closing the device fails the stream's work still queued with device_closed.
TEST_P(Kernels, DeviceClosedUnderQueuedWork) {
  stream s(dev());
  Gate gate;
  managed_vector<std::uint32_t> v(kPage / 4);
  s.host_call(gate.wait());
  auto f = fill(v, 1, s);
  dev().close();
  gate.open();
  EXPECT_TRUE(
      throws_error([&] { s.synchronize(); }, errc::device_closed, {dev_name() + " was closed"}));
  EXPECT_THROW(f.get(), error);
  EXPECT_EQ(v[0], 0U);
}

// Destroying a stream waits for its work; a moved-from stream is refused.
TEST_P(Kernels, DestructorDrainsAndMovedFrom) {
  managed_vector<std::uint32_t> v(8 * kPage / 4);
  {
    stream s(dev());
    for (int i = 0; i < 4; i++) {
      (void)increment(v, 1, s);
    }
  }
  for (auto x : v) {
    ASSERT_EQ(x, 4U);
  }
  stream a(dev());
  stream b = std::move(a);
  EXPECT_TRUE(throws_error([&] { a.synchronize(); }, errc::invalid_argument,  // NOLINT
                           {"moved from"}));
  EXPECT_TRUE(throws_error([&] { (void)a.query(); }, errc::invalid_argument));      // NOLINT
  EXPECT_TRUE(throws_error([&] { (void)fill(v, 1, a); }, errc::invalid_argument));  // NOLINT
  std::error_code ec;
  a.synchronize(ec);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(ec, errc::invalid_argument);
  a = std::move(b);
  fill(v, 2, a).get();
  EXPECT_EQ(v[0], 2U);
}

INSTANTIATE_TEST_SUITE_P(All, Kernels, ::testing::ValuesIn(or_absent(compute_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Kernels);

class NoCompute : public DeviceTest {};

// A sysram device has no compute: kernels are refused saying so; it has
// no hardware stream to name, but a stream still prefetches.
TEST_P(NoCompute, KernelsNotSupported) {
  stream s(dev());
  managed_vector<std::uint32_t> v(kPage / 4);
  const std::string name = "hmmgpu" + std::to_string(dev().index());
  EXPECT_TRUE(throws_error([&] { (void)fill(v, 1, s); }, errc::not_supported,
                           {name + " (sysram", "runs no kernels"}));
  EXPECT_TRUE(throws_error([&] { (void)checksum(v, s); }, errc::not_supported));
  EXPECT_TRUE(
      throws_error([&] { stream t(dev(), 0); }, errc::invalid_argument, {"0 compute streams"}));
  EXPECT_EQ(prefetch(v, dev(), s).get().migrated, 1U);
  s.synchronize();
}

INSTANTIATE_TEST_SUITE_P(All, NoCompute, ::testing::ValuesIn(devices_of(backend::sysram)),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(NoCompute);

}  // namespace
}  // namespace uvm::test
