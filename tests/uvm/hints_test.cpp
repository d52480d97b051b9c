// SPDX-License-Identifier: GPL-2.0
//
// uvm library, on every provider's devices: prefetch (both forms and on a
// stream, page rounding, between devices), advice (every value, its effect
// on kernels, its errors), residency and range attributes, and the errors
// of bad, unmapped and foreign ranges.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "uvm_test.h"

namespace uvm::test {
namespace {

class Prefetch : public DeviceTest {};

// Prefetch reports what moved: all pages, then all resident, then back.
TEST_P(Prefetch, CountsAndRoundTrip) {
  managed_vector<std::uint32_t> v(32 * kPage / 4);
  for (std::size_t i = 0; i < v.size(); i++) {
    v[i] = static_cast<std::uint32_t>(i);
  }
  prefetch_result r = prefetch(v, dev());
  EXPECT_EQ(r.pages, 32U);
  EXPECT_EQ(r.migrated, 32U);
  r = prefetch(v, dev());
  EXPECT_EQ(r.resident, 32U);
  EXPECT_EQ(r.migrated, 0U);
  r = prefetch(v, cpu);
  EXPECT_EQ(r.migrated, 32U);
  r = prefetch(v, cpu);
  EXPECT_EQ(r.resident, 32U);
  for (std::size_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(v[i], i);
  }
}

// Pages never touched: to the device they are allocated there; to the
// CPU there is nothing to move.
TEST_P(Prefetch, UnpopulatedPages) {
  UVM_HMMGPU_ONLY("CUDA reports no per-page outcome of a prefetch");
  Mapping m(4 * kPage);
  EXPECT_EQ(prefetch({m.get(), m.size()}, cpu).not_present, 4U);
  EXPECT_EQ(summarize(residency({m.get(), m.size()}, dev())).unpopulated, 4U);
  const prefetch_result r = prefetch({m.get(), m.size()}, dev());
  EXPECT_EQ(r.migrated + r.not_present, 4U);
  EXPECT_EQ(static_cast<int>(m.get()[kPage]), 0);
}

// A range applies to the pages it overlaps: 2 bytes across a page
// boundary move two pages, and nothing else.
TEST_P(Prefetch, RoundsToOverlappingPages) {
  UVM_HMMGPU_ONLY("CUDA reports no per-page residency");
  managed_vector<char> v(6 * kPage, 'a');
  const memory_range r(v.data() + 2 * kPage - 1, 2);
  EXPECT_EQ(prefetch(r, dev()).migrated, 2U);
  const auto runs = residency(v, dev());
  const residency_summary s = summarize(runs);
  EXPECT_EQ(s.at(dev()), 2U);
  EXPECT_EQ(s.cpu, 4U);
  ASSERT_EQ(runs.size(), 3U);
  EXPECT_EQ(runs[1].pages, memory_range(v.data() + kPage, 2 * kPage));
  EXPECT_EQ(runs[1].where, location(dev()));
}

// The error_code form reports instead of throwing.
TEST_P(Prefetch, ErrorCodeForm) {
  UVM_NEEDS_PAGEABLE();
  Mapping m(2 * kPage);
  std::error_code ec = errc::busy;
  const prefetch_result ok = prefetch({m.get(), m.size()}, dev(), ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(ok.pages, 2U);
  ASSERT_EQ(::munmap(m.get() + kPage, kPage), 0);
  const prefetch_result bad = prefetch({m.get(), 2 * kPage}, dev(), ec);
  EXPECT_EQ(ec, errc::bad_address);
  EXPECT_EQ(bad.pages, 0U);
  ASSERT_EQ(::munmap(m.get(), kPage), 0);
  m.forget();
}

// Unmapped memory: EFAULT as bad_address, naming the operation, the
// range, the device and the first unmapped page.
TEST_P(Prefetch, UnmappedMemoryNamesThePage) {
  UVM_NEEDS_PAGEABLE();
  Mapping m(8 * kPage);
  char* hole = m.get() + 5 * kPage;
  ASSERT_EQ(::munmap(hole, kPage), 0);
  const memory_range r(m.get(), m.size());
  EXPECT_TRUE(throws_error([&] { (void)prefetch(r, dev()); }, errc::bad_address,
                           {"prefetch to " + dev_name() + " of " + to_string(r) + ": the page at " +
                            hex(hole) + " is not mapped in this process"}));
  try {
    (void)prefetch(r, cpu);
    ADD_FAILURE() << "no error";
  } catch (const error& e) {
    EXPECT_EQ(e.context().address, reinterpret_cast<std::uintptr_t>(hole));
    EXPECT_EQ(e.context().range, r);
    EXPECT_EQ(e.context().device, dev().index());
    EXPECT_EQ(e.code(), std::errc::bad_address);
  }
}

// A stream's prefetch runs in order and returns its counts in a future.
TEST_P(Prefetch, OnAStream) {
  stream s(dev());
  managed_vector<std::uint64_t> v(16 * kPage / 8, 9);
  auto to = prefetch(v, dev(), s);
  auto back = prefetch(v, cpu, s);
  s.synchronize();
  EXPECT_EQ(to.get().migrated, 16U);
  EXPECT_EQ(back.get().migrated, 16U);
  EXPECT_EQ(v[5], 9U);
  // Bad ranges are refused when enqueued; an empty one does nothing.
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  const auto* top = reinterpret_cast<const char*>(~std::uintptr_t{0} - kPage + 1);
  EXPECT_TRUE(throws_error(
      [&] {
        (void)prefetch({top, 2 * kPage}, cpu, s);
      },
      errc::invalid_range, {"wraps"}));
  EXPECT_EQ(prefetch(memory_range(), dev(), s).get().pages, 0U);
}

// The end of the user address space is the driver's to check: beyond it
// is an invalid range.
TEST_P(Prefetch, OutsideUserSpace) {
  UVM_HMMGPU_ONLY("the end of the user address space is the hmmgpu driver's to check");
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  const auto* high = reinterpret_cast<const char*>(std::uintptr_t{1} << 56);
  EXPECT_TRUE(throws_error(
      [&] {
        (void)prefetch({high, kPage}, dev());
      },
      errc::invalid_range, {"outside the user address space"}));
}

// A child after fork() must not use its parent's devices and streams.
TEST_P(Prefetch, UseAfterForkFails) {
  stream s(dev());
  managed_vector<int> v(kPage / sizeof(int));
  event mark;
  mark.record(s);
  EXPECT_TRUE(hmmgpu::test::in_child([&] {
    bool ok = true;
    try {
      (void)prefetch(v, dev());
      ok = false;
    } catch (const error& e) {
      ok = ok && e.code() == errc::wrong_process &&
           std::string(e.what()).find("fork") != std::string::npos;
    }
    try {
      (void)prefetch(v, cpu, s);
      ok = false;
    } catch (const error& e) {
      ok = ok && e.code() == errc::wrong_process;
    }
    try {
      s.synchronize();
      ok = false;
    } catch (const error& e) {
      ok = ok && e.code() == errc::wrong_process;
    }
    try {
      mark.synchronize();
      ok = false;
    } catch (const error& e) {
      ok = ok && e.code() == errc::wrong_process;
    }
    stream moved = std::move(s);  // destroyed in the child: leaves the parent's thread
    return ok;
  }));
  EXPECT_EQ(prefetch(v, dev()).migrated, 1U);  // the parent goes on
  mark.record(s);
  mark.synchronize();
}

// A device location needs that device open in the process.
TEST_P(Prefetch, DeviceNotOpen) {
  std::vector<int> v(10);
  const location nowhere = location::of_device(60);
  EXPECT_TRUE(throws_error([&] { (void)prefetch(v, nowhere); }, errc::no_device,
                           {"hmmgpu60 is not open", "uvm::device(60)"}));
  EXPECT_TRUE(
      throws_error([&] { advise(v, advice::preferred_location, nowhere); }, errc::no_device));
}

INSTANTIATE_TEST_SUITE_P(All, Prefetch, ::testing::ValuesIn(or_absent(migrate_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Prefetch);

// Prefetch from one hmmgpu device to another that is not its peer (a
// sysram device, or any device before uapi 1.4) moves every page, through
// the CPU: the source sends them to system memory.
TEST(PrefetchBetweenDevices, NonPeersGoThroughTheCpu) {
  std::optional<device> a;
  std::optional<device> b;
  std::vector<device_summary> devs;
  for (const auto& s : migrate_devices()) {
    if (s.provider() == provider::hmmgpu) {
      devs.push_back(s);
    }
  }
  for (const auto& x : devs) {
    for (const auto& y : devs) {
      if (x.index == y.index || a) {
        continue;
      }
      device dx(x);
      device dy(y);
      if (!dy.can_access_peer(dx)) {
        a.emplace(std::move(dx));
        b.emplace(std::move(dy));
      }
    }
  }
  if (!a) {
    GTEST_SKIP() << "no two devices that can migrate and are not peers";
  }
  managed_vector<std::uint64_t> v(16 * kPage / 8);
  for (std::size_t i = 0; i < v.size(); i++) {
    v[i] = i * i;
  }
  ASSERT_EQ(prefetch(v, *a).migrated, 16U);
  const device_counters a0 = a->counters();
  const prefetch_result r = prefetch(v, *b);
  EXPECT_EQ(r.migrated, 16U);
  EXPECT_EQ(r.other_device, 0U);
  EXPECT_GE((a->counters() - a0).to_system_pages, 16U);
  EXPECT_EQ(summarize(residency(v, *a)).at(*b), 16U);
  for (std::size_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(v[i], i * i);
  }
}

// Between two peers (uapi 1.4) pages move VRAM to VRAM: the target counts
// them as peer_to_device_pages, the source sends none to system memory.
TEST(PrefetchBetweenDevices, PeersMoveDirectly) {
  const auto emus = devices_of(backend::emu);
  if (emus.size() < 2) {
    GTEST_SKIP() << "fewer than two emulated GPUs";
  }
  device a(emus[0].index);
  device b(emus[1].index);
  if (!b.can_access_peer(a)) {
    GTEST_SKIP() << "no peer link (driver uapi < 1.4)";
  }
  managed_vector<std::uint32_t> v(32 * kPage / 4);
  for (std::size_t i = 0; i < v.size(); i++) {
    v[i] = static_cast<std::uint32_t>(i + 1);
  }
  ASSERT_EQ(prefetch(v, a).migrated, 32U);
  const device_counters a0 = a.counters();
  const device_counters b0 = b.counters();
  EXPECT_EQ(prefetch(v, b).migrated, 32U);
  const device_counters da = a.counters() - a0;
  const device_counters db = b.counters() - b0;
  EXPECT_GE(db.peer_to_device_pages, 32U);
  EXPECT_GE(db.peer_to_device_bytes, 32 * kPage);
  EXPECT_EQ(da.to_system_pages, 0U);
  EXPECT_EQ(summarize(residency(v, b)).at(b), 32U);
  for (std::size_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(v[i], i + 1);
  }
}

class Advice : public DeviceTest {
 protected:
  // Drops the device's mappings of r: a migration there and back.
  void unmap_device(memory_range r) {
    ASSERT_EQ(prefetch(r, dev()).failed(), 0U);
    ASSERT_EQ(prefetch(r, cpu).failed(), 0U);
  }
  // Runs increment on r on the device and returns its runs as it sees them.
  std::vector<residency_run> touch(std::span<std::uint32_t> x) {
    stream s(dev());
    increment(x, 1, s).get();
    return residency(x, dev());
  }
};

// Preferred location CPU: the device maps system memory instead of
// migrating; once unset, its first touch migrates again.
TEST_P(Advice, PreferredCpuThenUnset) {
  UVM_HMMGPU_ONLY("CUDA reports no device mappings");
  managed_vector<std::uint32_t> v(8 * kPage / 4, 1);
  advise(v, advice::preferred_location, cpu);
  auto runs = touch(v);
  EXPECT_EQ(summarize(runs).cpu, 8U);
  ASSERT_EQ(runs.size(), 1U);
  EXPECT_EQ(runs[0].mapping, device_mapping::system);
  EXPECT_TRUE(runs[0].writable);
  advise(v, advice::unset_preferred_location);
  unmap_device(v);
  runs = touch(v);
  EXPECT_EQ(summarize(runs).at(dev()), 8U);
  EXPECT_EQ(runs[0].mapping, device_mapping::local);
  EXPECT_EQ(v[0], 3U);
}

// Preferred location the device: its faults migrate the pages even with
// the module's fault_migrate off.
TEST_P(Advice, PreferredDeviceMigratesWithoutFaultMigrate) {
  UVM_HMMGPU_ONLY("hmmgpu.ko's fault_migrate parameter");
  hmmgpu::test::ParamOverride policy("fault_migrate", "N");
  ASSERT_TRUE(policy.ok());
  managed_vector<std::uint32_t> plain(4 * kPage / 4, 1);
  managed_vector<std::uint32_t> preferred(4 * kPage / 4, 1);
  advise(preferred, advice::preferred_location, dev());
  EXPECT_EQ(summarize(touch(plain)).cpu, 4U);
  EXPECT_EQ(summarize(touch(preferred)).at(dev()), 4U);
  EXPECT_EQ(preferred[3], 2U);
}

// Accessed-by this device: pages stay in system memory and are mapped
// there; once unset, first touch migrates again.
TEST_P(Advice, AccessedByThenUnset) {
  UVM_HMMGPU_ONLY("CUDA reports no device mappings");
  managed_vector<std::uint32_t> v(8 * kPage / 4, 5);
  advise(v, advice::accessed_by, dev());
  const device_counters before = dev().counters();
  auto runs = touch(v);
  EXPECT_EQ(summarize(runs).cpu, 8U);
  EXPECT_EQ(runs[0].mapping, device_mapping::system);
  if (dev().properties().driver >= driver_version{1, 4}) {
    EXPECT_GE((dev().counters() - before).remote_mapped_pages, 8U);
  }
  advise(v, advice::unset_accessed_by, dev());
  unmap_device(v);
  EXPECT_EQ(summarize(touch(v)).at(dev()), 8U);
  EXPECT_EQ(v[7], 7U);
}

// Read-mostly is refused as not supported, saying why; so is the CPU as
// an accessed-by processor; unmapped memory names the page.
TEST_P(Advice, Errors) {
  UVM_HMMGPU_ONLY("CUDA takes read-mostly advice (CudaProvider.ReadMostly)");
  Mapping m(4 * kPage);
  const memory_range r(m.get(), m.size());
  EXPECT_TRUE(throws_error([&] { advise(r, advice::read_mostly, dev()); }, errc::not_supported,
                           {"advise(read_mostly", to_string(r), "cannot be kept coherent"}));
  EXPECT_TRUE(throws_error([&] { advise(r, advice::unset_read_mostly); }, errc::not_supported));
  EXPECT_TRUE(throws_error([&] { advise(r, advice::accessed_by, cpu); }, errc::not_supported,
                           {"only a device"}));
  EXPECT_TRUE(
      throws_error([&] { advise(r, advice::unset_accessed_by, cpu); }, errc::not_supported));
  EXPECT_TRUE(throws_error([&] { advise(r, static_cast<advice>(99)); }, errc::invalid_argument));
  ASSERT_EQ(::munmap(m.get() + 3 * kPage, kPage), 0);
  EXPECT_TRUE(throws_error([&] { advise(r, advice::preferred_location, dev()); }, errc::bad_address,
                           {hex(m.get() + 3 * kPage)}));
  try {
    advise(r, advice::read_mostly, dev());
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::operation_not_supported);
  }
}

// Range attributes report the advice the whole range shares (uapi 1.4),
// or say that the driver cannot.
TEST_P(Advice, RangeAttributes) {
  managed_vector<std::uint32_t> v(8 * kPage / 4);
  if (dev().properties().driver < driver_version{1, 4}) {
    EXPECT_TRUE(
        throws_error([&] { (void)range_attributes(v); }, errc::not_supported, {"uapi 1.4"}));
    return;
  }
  range_advice a = range_attributes(v);
  EXPECT_FALSE(a.preferred_location);
  EXPECT_TRUE(a.accessed_by.empty());
  EXPECT_FALSE(a.read_mostly);
  advise(v, advice::preferred_location, dev());
  advise(v, advice::accessed_by, dev());
  a = range_attributes(v);
  EXPECT_EQ(a.preferred_location, location(dev()));
  ASSERT_EQ(a.accessed_by.size(), 1U);
  EXPECT_EQ(a.accessed_by[0], location(dev()));
  // Half the range prefers the CPU: the whole has no common preference.
  advise(std::span(v).first(v.size() / 2), advice::preferred_location, cpu);
  EXPECT_EQ(range_attributes(std::span(v).first(v.size() / 2)).preferred_location, location(cpu));
  EXPECT_FALSE(range_attributes(v).preferred_location);
  advise(v, advice::unset_accessed_by, dev());
  EXPECT_TRUE(range_attributes(v).accessed_by.empty());
  EXPECT_TRUE(throws_error([&] { (void)range_attributes(memory_range()); }, errc::invalid_range));
  if (dev().properties().pageable_memory_access) {
    Mapping m(2 * kPage);
    ASSERT_EQ(::munmap(m.get() + kPage, kPage), 0);
    EXPECT_TRUE(throws_error(
        [&] {
          (void)range_attributes({m.get(), 2 * kPage});
        },
        errc::bad_address));
  }
}

INSTANTIATE_TEST_SUITE_P(All, Advice, ::testing::ValuesIn(or_absent(compute_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Advice);

class Residency : public DeviceTest {};

// Runs cover the range in order; a page not mapped fails naming it; a
// sysram device reports too.
TEST_P(Residency, RunsAndErrors) {
  Mapping m(10 * kPage);
  for (std::size_t pg = 0; pg < 10; pg += 2) {
    m.get()[pg * kPage] = 1;  // alternate pages
  }
  auto runs = residency({m.get(), m.size()}, dev());
  ASSERT_EQ(runs.size(), 10U);
  auto at = reinterpret_cast<std::uintptr_t>(m.get());
  for (std::size_t i = 0; i < runs.size(); i++) {
    EXPECT_EQ(runs[i].pages.begin_address(), at);
    at = runs[i].pages.end_address();
    EXPECT_EQ(runs[i].where.has_value(), i % 2 == 0);
    EXPECT_EQ(runs[i].mapping, device_mapping::none);
  }
  const residency_summary s = summarize(runs);
  EXPECT_EQ(s.cpu, 5U);
  EXPECT_EQ(s.unpopulated, 5U);
  EXPECT_EQ(s.at(location::of_device(9)), 0U);
  EXPECT_TRUE(residency(memory_range(), dev()).empty());
  ASSERT_EQ(::munmap(m.get() + 7 * kPage, kPage), 0);
  EXPECT_TRUE(throws_error(
      [&] {
        (void)residency({m.get(), m.size()}, dev());
      },
      errc::bad_address, {"residency", hex(m.get() + 7 * kPage)}));
}

// Many runs (more than one driver call holds) are all reported.
TEST_P(Residency, ManyRuns) {
  managed_vector<char> v(600 * kPage, 'x');
  for (std::size_t pg = 0; pg < 600; pg += 2) {
    (void)prefetch({v.data() + pg * kPage, 1}, dev());
  }
  const auto runs = residency(v, dev());
  EXPECT_EQ(runs.size(), 600U);
  const residency_summary s = summarize(runs);
  EXPECT_EQ(s.at(dev()), 300U);
  EXPECT_EQ(s.cpu, 300U);
}

// hmmgpu's per-page residency (CUDA has none: CudaProvider.LastPrefetchLocation).
INSTANTIATE_TEST_SUITE_P(All, Residency,
                         ::testing::ValuesIn(or_absent(only(migrate_devices(), provider::hmmgpu),
                                                       {provider::hmmgpu})),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Residency);

}  // namespace
}  // namespace uvm::test
