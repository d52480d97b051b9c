// SPDX-License-Identifier: GPL-2.0
//
// Host tests of the uvm library: what works without a device — version,
// the error category, ranges and locations, managed memory without advice,
// events without streams, and the errors of a machine without hmmgpu
// devices (or of devices that are not open).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory_resource>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "uvm/uvm.hpp"

namespace {

std::size_t page() { return uvm::page_size(); }

bool page_aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % page() == 0; }

// The run-time version is the headers' version.
TEST(Version, MatchesHeaders) {
  const uvm::version_info v = uvm::version();
  EXPECT_EQ(v.major, UVM_VERSION_MAJOR);
  EXPECT_EQ(v.minor, UVM_VERSION_MINOR);
  EXPECT_EQ(v.patch, UVM_VERSION_PATCH);
  EXPECT_STREQ(v.string, UVM_VERSION_STRING);
  EXPECT_EQ(UVM_VERSION, UVM_VERSION_MAJOR * 10000 + UVM_VERSION_MINOR * 100 + UVM_VERSION_PATCH);
}

// The category has a name, a distinct message per code, and maps each code
// to the portable condition.
TEST(ErrorCategory, NamesMessagesAndConditions) {
  const std::error_category& c = uvm::error_category();
  EXPECT_STREQ(c.name(), "uvm");
  std::map<std::string, int> seen;
  for (int i = static_cast<int>(uvm::errc::device_closed);
       i <= static_cast<int>(uvm::errc::canceled); i++) {
    const std::string m = c.message(i);
    EXPECT_FALSE(m.empty());
    EXPECT_TRUE(seen.emplace(m, i).second) << "code " << i << " repeats \"" << m << "\"";
  }
  EXPECT_NE(c.message(999).find("999"), std::string::npos);
  const std::error_code ec = uvm::errc::bad_address;  // make_error_code through ADL
  EXPECT_EQ(&ec.category(), &c);
  EXPECT_EQ(ec, std::errc::bad_address);
  EXPECT_EQ(uvm::make_error_code(uvm::errc::not_supported), std::errc::operation_not_supported);
  EXPECT_EQ(std::error_code(uvm::errc::device_lost), std::errc::no_such_device);
  EXPECT_EQ(std::error_code(uvm::errc::device_failed), std::errc::io_error);
  EXPECT_EQ(std::error_code(uvm::errc::timed_out), std::errc::timed_out);
  EXPECT_EQ(std::error_code(uvm::errc::busy), std::errc::device_or_resource_busy);
  EXPECT_EQ(std::error_code(uvm::errc::wrong_process), std::errc::operation_not_permitted);
  EXPECT_EQ(std::error_code(uvm::errc::invalid_range), std::errc::invalid_argument);
  EXPECT_EQ(std::error_code(uvm::errc::misaligned), std::errc::invalid_argument);
  EXPECT_EQ(std::error_code(uvm::errc::canceled), std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(uvm::errc::device_closed), std::errc::bad_file_descriptor);
  EXPECT_EQ(std::error_code(uvm::errc::no_device), std::errc::no_such_device_or_address);
  EXPECT_NE(std::error_code(uvm::errc::invalid_argument), std::errc::bad_address);
  static_assert(std::is_error_code_enum_v<uvm::errc>);
}

// uvm::error is a std::system_error whose what() has the message and the
// code's text, and which keeps its context (shared by copies).
TEST(Error, CarriesContext) {
  int x = 0;
  const uvm::memory_range r(&x, sizeof(x));
  const uvm::error e(uvm::errc::bad_address, "prefetch of something",
                     {.operation = "prefetch", .device = 3U, .range = r, .address = 0x1000U});
  const std::system_error& base = e;
  EXPECT_EQ(base.code(), uvm::errc::bad_address);
  EXPECT_NE(std::string(e.what()).find("prefetch of something"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("not mapped"), std::string::npos);
  const uvm::error copy = e;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(&copy.context(), &e.context());
  EXPECT_EQ(copy.context().operation, "prefetch");
  EXPECT_EQ(copy.context().device, 3U);
  EXPECT_EQ(copy.context().range, r);
  EXPECT_EQ(copy.context().address, 0x1000U);
}

// A range covers the pages it overlaps; it is built from a pointer and a
// length, a span, or a contiguous container; it prints as [begin, end).
TEST(MemoryRange, PagesAndConversions) {
  const std::uintptr_t base = 0x10000 * page();
  const auto* p = reinterpret_cast<const char*>(base);  // NOLINT(performance-no-int-to-ptr)
  const uvm::memory_range r(p + 10, page());            // straddles two pages
  EXPECT_EQ(r.size(), page());
  EXPECT_EQ(r.page_count(), 2U);
  EXPECT_EQ(r.pages(), uvm::memory_range(p, 2 * page()));
  EXPECT_EQ(uvm::memory_range(p, page()).page_count(), 1U);
  EXPECT_EQ(uvm::memory_range(p + page() - 1, 1).pages(), uvm::memory_range(p, page()));
  EXPECT_TRUE(uvm::memory_range().empty());
  EXPECT_EQ(uvm::memory_range(p, 0).page_count(), 0U);
  EXPECT_TRUE(uvm::memory_range(p, 0).pages().empty());

  std::vector<float> v(100);
  const uvm::memory_range from_vector = v;
  EXPECT_EQ(from_vector.data(), v.data());
  EXPECT_EQ(from_vector.size(), 400U);
  const std::vector<float>& cv = v;
  EXPECT_EQ(uvm::memory_range(cv).size(), 400U);
  const uvm::memory_range from_span = std::span(v).subspan(10, 5);
  EXPECT_EQ(from_span.data(), v.data() + 10);
  EXPECT_EQ(from_span.size(), 20U);
  std::uint64_t arr[4] = {};  // NOLINT(*-avoid-c-arrays)
  EXPECT_EQ(uvm::memory_range(arr).size(), 32U);
  EXPECT_EQ(from_vector.end_address() - from_vector.begin_address(), 400U);

  std::ostringstream os;
  os << uvm::memory_range(reinterpret_cast<void*>(0x1000), 0x2000);
  EXPECT_EQ(os.str(), "[0x1000, 0x3000)");
  EXPECT_EQ(uvm::to_string(uvm::memory_range(reinterpret_cast<void*>(0x1000), 0x10)),
            "[0x1000, 0x1010)");
}

// Locations are values: the CPU, or a device number; ordered and printable.
TEST(Location, ValuesCompareAndPrint) {
  const uvm::location c = uvm::cpu;
  const uvm::location d1 = uvm::location::of_device(1);
  EXPECT_TRUE(c.is_cpu());
  EXPECT_FALSE(c.is_device());
  EXPECT_TRUE(d1.is_device());
  EXPECT_EQ(d1.device_index(), 1U);
  EXPECT_EQ(c, uvm::location());
  EXPECT_EQ(c, uvm::cpu);
  EXPECT_NE(c, d1);
  EXPECT_LT(c, d1);
  EXPECT_LT(d1, uvm::location::of_device(2));
  EXPECT_EQ(uvm::to_string(c), "cpu");
  EXPECT_EQ(uvm::to_string(d1), "hmmgpu1");
  std::ostringstream os;
  os << d1;
  EXPECT_EQ(os.str(), "hmmgpu1");
}

// A CUDA device is a location of its own: cudaN is not hmmgpuN, and CUDA
// devices order after the hmmgpu devices.
TEST(Location, CudaDevices) {
  constexpr uvm::location c1 = uvm::location::of_device(uvm::provider::cuda, 1);
  static_assert(c1.is_device() && c1.device_index() == 1);
  static_assert(c1.provider() == uvm::provider::cuda);
  static_assert(uvm::location::of_device(3).provider() == uvm::provider::hmmgpu);
  static_assert(uvm::location::of_device(uvm::provider::hmmgpu, 3) == uvm::location::of_device(3));
  EXPECT_NE(c1, uvm::location::of_device(1));
  EXPECT_LT(uvm::location::of_device(65535), uvm::location::of_device(uvm::provider::cuda, 0));
  EXPECT_LT(uvm::location(uvm::cpu), uvm::location::of_device(uvm::provider::cuda, 0));
  EXPECT_LT(c1, uvm::location::of_device(uvm::provider::cuda, 2));
  EXPECT_EQ(uvm::to_string(c1), "cuda1");
  EXPECT_STREQ(uvm::to_string(uvm::provider::cuda), "cuda");
  EXPECT_STREQ(uvm::to_string(uvm::provider::hmmgpu), "hmmgpu");
  EXPECT_EQ(uvm::location::of_device(uvm::provider::cuda, 65535).device_index(), 65535U);
}

// Residency summaries keep each provider's devices apart.
TEST(Location, SummaryPerProvider) {
  const auto p = page();
  const auto* base =
      reinterpret_cast<const char*>(0x10000 * p);  // NOLINT(performance-no-int-to-ptr)
  std::vector<uvm::residency_run> runs(3);
  runs[0].pages = {base, 2 * p};
  runs[0].where = uvm::location::of_device(1);
  runs[1].pages = {base + 2 * p, 3 * p};
  runs[1].where = uvm::location::of_device(uvm::provider::cuda, 1);
  runs[2].pages = {base + 5 * p, p};
  const uvm::residency_summary s = uvm::summarize(runs);
  EXPECT_EQ(s.at(uvm::location::of_device(1)), 2U);
  EXPECT_EQ(s.at(uvm::location::of_device(uvm::provider::cuda, 1)), 3U);
  EXPECT_EQ(s.at(uvm::location::of_device(uvm::provider::cuda, 0)), 0U);
  EXPECT_EQ(s.unpopulated, 1U);
}

// The enums print their names.
TEST(Names, EnumsPrint) {
  EXPECT_STREQ(uvm::to_string(uvm::backend::emu), "emu");
  EXPECT_STREQ(uvm::to_string(uvm::backend::sysram), "sysram");
  EXPECT_STREQ(uvm::to_string(uvm::backend::unknown), "unknown");
  EXPECT_STREQ(uvm::to_string(uvm::backend::cuda), "cuda");
  EXPECT_STREQ(uvm::to_string(uvm::device_state::ready), "ready");
  EXPECT_STREQ(uvm::to_string(uvm::device_state::halted), "halted");
  EXPECT_STREQ(uvm::to_string(uvm::device_state::lost), "lost");
  EXPECT_STREQ(uvm::to_string(uvm::device_state::unknown), "unknown");
  EXPECT_STREQ(uvm::to_string(uvm::advice::preferred_location), "preferred_location");
  EXPECT_STREQ(uvm::to_string(uvm::advice::unset_preferred_location), "unset_preferred_location");
  EXPECT_STREQ(uvm::to_string(uvm::advice::accessed_by), "accessed_by");
  EXPECT_STREQ(uvm::to_string(uvm::advice::unset_accessed_by), "unset_accessed_by");
  EXPECT_STREQ(uvm::to_string(uvm::advice::read_mostly), "read_mostly");
  EXPECT_STREQ(uvm::to_string(uvm::advice::unset_read_mostly), "unset_read_mostly");
  EXPECT_STREQ(uvm::to_string(uvm::device_mapping::none), "none");
  EXPECT_STREQ(uvm::to_string(uvm::device_mapping::local), "local");
  EXPECT_STREQ(uvm::to_string(uvm::device_mapping::peer), "peer");
  EXPECT_STREQ(uvm::to_string(uvm::device_mapping::system), "system");
}

// Each allocation is a page-aligned mapping of its own; standard
// containers work with the allocator.
TEST(ManagedAllocator, ContainersGetPageAlignedMemory) {
  uvm::managed_vector<int> v(1000, 7);
  EXPECT_TRUE(page_aligned(v.data()));
  EXPECT_EQ(v[999], 7);
  v.resize(100000, 8);  // reallocates
  EXPECT_TRUE(page_aligned(v.data()));
  EXPECT_EQ(v[99999], 8);

  std::deque<std::uint64_t, uvm::managed_allocator<std::uint64_t>> d;
  for (std::uint64_t i = 0; i < 5000; i++) {
    d.push_back(i);
  }
  for (std::uint64_t i = 0; i < 5000; i++) {
    ASSERT_EQ(d[i], i);
  }
  EXPECT_TRUE(page_aligned(&d[0]));

  std::list<int, uvm::managed_allocator<int>> l{1, 2, 3};  // rebinds to its node type
  EXPECT_EQ(l.back(), 3);
}

// Allocators are equal when their resource is the same; rebinding and
// copying keep the resource.
TEST(ManagedAllocator, EqualityMeansSameResource) {
  uvm::managed_resource other;
  const uvm::managed_allocator<int> a;
  const uvm::managed_allocator<int> b;
  const uvm::managed_allocator<int> c(other);
  const uvm::managed_allocator<double> rebound(c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(rebound, c);
  EXPECT_EQ(a.resource(), &uvm::default_managed_resource());
  EXPECT_EQ(rebound.resource(), &other);
  EXPECT_TRUE(other.is_equal(other));
  EXPECT_FALSE(other.is_equal(uvm::default_managed_resource()));
  EXPECT_FALSE(other.advice().preferred_location.has_value());
  uvm::managed_allocator<int> m = a;
  EXPECT_THROW((void)m.allocate(static_cast<std::size_t>(-1) / 2), std::bad_array_new_length);
}

// The resource serves std::pmr containers and refuses alignments beyond a page.
TEST(ManagedResource, PmrAndAlignment) {
  uvm::managed_resource r;
  std::pmr::vector<double> v(&r);
  v.assign(3000, 1.5);
  EXPECT_TRUE(page_aligned(v.data()));
  void* p = r.allocate(10, 64);
  EXPECT_TRUE(page_aligned(p));
  r.deallocate(p, 10, 64);
  void* z = r.allocate(0);
  EXPECT_NE(z, nullptr);
  r.deallocate(z, 0);
  EXPECT_THROW((void)r.allocate(page(), 2 * page()), std::bad_alloc);
}

// make_managed value-initialises the array; the deleter knows its size.
TEST(MakeManaged, ZeroedAndOwned) {
  auto a = uvm::make_managed<std::uint32_t[]>(3000);  // NOLINT(*-avoid-c-arrays)
  EXPECT_TRUE(page_aligned(a.get()));
  EXPECT_EQ(a.get_deleter().size(), 3000U);
  for (std::size_t i = 0; i < 3000; i++) {
    ASSERT_EQ(a[i], 0U);
  }
  a[2999] = 5;
  auto empty = uvm::make_managed<float[]>(0);  // NOLINT(*-avoid-c-arrays)
  EXPECT_NE(empty.get(), nullptr);
  uvm::managed_resource r;
  // The deleter destroys the strings.
  auto b = uvm::make_managed<std::string[]>(4, r);  // NOLINT(*-avoid-c-arrays)
  b[3] = std::string(100, 'x');
  EXPECT_EQ(b[0], "");
}

// Advice that names a device not open fails the allocation with no_device,
// and leaves no mapping behind.
TEST(ManagedResource, AdviceForDeviceNotOpen) {
  uvm::managed_resource r({.preferred_location = uvm::location::of_device(77), .accessed_by = {}});
  try {
    (void)r.allocate(100);
    FAIL() << "allocated";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::no_device);
    EXPECT_NE(std::string(e.what()).find("hmmgpu77"), std::string::npos) << e.what();
  }
}

// Without a device open, operations that need one say so.
TEST(NoDevice, ErrorsNameTheMissingDevice) {
  std::vector<int> v(100);
  try {
    (void)uvm::prefetch(v, uvm::cpu);
    FAIL() << "no error";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::no_device);
    EXPECT_NE(std::string(e.what()).find("prefetch to cpu"), std::string::npos) << e.what();
    EXPECT_EQ(e.context().range, uvm::memory_range(v));
  }
  std::error_code ec;
  const uvm::prefetch_result r = uvm::prefetch(v, uvm::location::of_device(5), ec);
  EXPECT_EQ(ec, uvm::errc::no_device);
  EXPECT_EQ(r.pages, 0U);
  EXPECT_THROW(uvm::advise(v, uvm::advice::preferred_location, uvm::cpu), uvm::error);
  EXPECT_THROW((void)uvm::range_attributes(v), uvm::error);
  // Empty ranges do nothing, even without a device.
  EXPECT_EQ(uvm::prefetch(uvm::memory_range(), uvm::cpu).pages, 0U);
  EXPECT_NO_THROW(uvm::advise(uvm::memory_range(), uvm::advice::preferred_location));
}

// Opening a device that does not exist names it.
TEST(NoDevice, OpenMissingDevice) {
  try {
    uvm::device d(4000);
    FAIL() << "opened";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::no_device);
    EXPECT_NE(std::string(e.what()).find("/dev/hmmgpu4000"), std::string::npos) << e.what();
    EXPECT_EQ(e.context().device, 4000U);
  }
}

// Ranges that wrap or leave the address space are refused before any
// device is involved.
TEST(BadRange, WrapAndOutsideUserSpace) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  const auto* top = reinterpret_cast<const char*>(~std::uintptr_t{0} - page() + 1);
  try {
    (void)uvm::prefetch({top, 2 * page()}, uvm::cpu);
    FAIL() << "no error";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::invalid_range);
    EXPECT_NE(std::string(e.what()).find("wraps"), std::string::npos) << e.what();
  }
  EXPECT_THROW(uvm::advise({top - page(), page()}, uvm::advice::preferred_location), uvm::error);
}

// Events: never recorded, they are complete; elapsed_time needs both recorded.
TEST(Event, NeverRecorded) {
  uvm::event a;
  const uvm::event b;
  EXPECT_FALSE(a.recorded());
  EXPECT_TRUE(a.query());
  EXPECT_NO_THROW(a.synchronize());
  std::error_code ec = uvm::errc::busy;
  a.synchronize(ec);
  EXPECT_FALSE(ec);
  try {
    (void)uvm::elapsed_time(a, b);
    FAIL() << "no error";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("never recorded"), std::string::npos) << e.what();
  }
  uvm::event moved = std::move(a);
  EXPECT_FALSE(a.recorded());  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW((void)a.query(), uvm::error);
  a = std::move(moved);
  EXPECT_TRUE(a.query());
}

// Enumerating where no hmmgpu module is loaded gives no hmmgpu device (on
// the host), and any device in order: by provider, then by number.
TEST(ListDevices, AscendingOrEmpty) {
  const auto devs = uvm::list_devices();
  for (std::size_t i = 1; i < devs.size(); i++) {
    EXPECT_LT(devs[i - 1].where(), devs[i].where());
  }
}

// Without a CUDA device (no GPU, no driver, or a libuvm built without
// CUDA) the CUDA provider lists none, says why, and opening one fails with
// no_device and that reason; the library works on for hmmgpu devices.
TEST(Providers, CudaWithoutDevice) {
  const uvm::provider_info info = uvm::provider_status(uvm::provider::cuda);
  EXPECT_EQ(info.provider, uvm::provider::cuda);
  if (info.devices != 0) {
    GTEST_SKIP() << "this machine has " << info.devices << " CUDA device(s)";
  }
  EXPECT_TRUE(info.reason.starts_with("no CUDA device: ")) << info.reason;
  for (const auto& s : uvm::list_devices()) {
    EXPECT_NE(s.backend, uvm::backend::cuda);
  }
  try {
    uvm::device d(uvm::provider::cuda, 0);
    FAIL() << "opened";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::no_device);
    EXPECT_NE(std::string(e.what()).find("there is no cuda0: " + info.reason), std::string::npos)
        << e.what();
    EXPECT_EQ(e.context().device, 0U);
    EXPECT_EQ(e.context().provider, uvm::provider::cuda);
  }
  std::vector<int> v(100);
  try {
    (void)uvm::prefetch(v, uvm::location::of_device(uvm::provider::cuda, 0));
    FAIL() << "no error";
  } catch (const uvm::error& e) {
    EXPECT_EQ(e.code(), uvm::errc::no_device);
    EXPECT_NE(std::string(e.what()).find("uvm::device(uvm::provider::cuda, 0)"), std::string::npos)
        << e.what();
  }
  // Managed memory is the process's own without an open CUDA device.
  uvm::managed_vector<int> m(1000, 3);
  EXPECT_EQ(m[999], 3);
}

// The hmmgpu provider without hmmgpu.ko says so.
TEST(Providers, HmmgpuStatus) {
  const uvm::provider_info info = uvm::provider_status(uvm::provider::hmmgpu);
  EXPECT_TRUE(info.built);
  EXPECT_EQ(info.devices == 0, !info.reason.empty());
  if (info.devices == 0) {
    EXPECT_NE(info.reason.find("hmmgpu.ko"), std::string::npos) << info.reason;
  }
}

}  // namespace
