// SPDX-License-Identifier: GPL-2.0
//
// uvm library, on every provider's devices: enumeration, uvm::device
// (open, properties, memory, state, counters, ping, peers, close, move),
// use from several threads, and an hmmgpu device removed while open.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "uvm_test.h"

namespace uvm::test {
namespace {

namespace fs = std::filesystem;

// Every hmmgpu device is listed once, in order, with sysfs's values; the
// VM has emulated GPUs and a sysram device.
TEST(Enumerate, ListsEveryDevice) {
  const auto devs = devices_of(provider::hmmgpu);
  if (devs.empty()) {
    GTEST_SKIP() << provider_status(provider::hmmgpu).reason;
  }
  ASSERT_GE(devs.size(), 2U);
  for (std::size_t i = 0; i < devs.size(); i++) {
    const auto& s = devs[i];
    if (i > 0) {
      EXPECT_LT(devs[i - 1].index, s.index);
    }
    EXPECT_EQ(s.path, "/dev/hmmgpu" + std::to_string(s.index));
    EXPECT_TRUE(fs::exists(s.path));
    EXPECT_FALSE(s.name.empty());
    EXPECT_NE(s.backend, backend::unknown);
    EXPECT_GT(s.vram_total, 0U);
    EXPECT_LE(s.vram_used, s.vram_total);
    EXPECT_EQ(s.state, device_state::ready);
  }
  EXPECT_FALSE(devices_of(backend::emu).empty());
  EXPECT_FALSE(devices_of(backend::sysram).empty());
}

// Every CUDA device is listed once, in order, after the hmmgpu devices,
// with the CUDA runtime's values; without one, the provider says why.
TEST(Enumerate, ListsCudaDevices) {
  const auto all = list_devices();
  const auto devs = devices_of(provider::cuda);
  const provider_info info = provider_status(provider::cuda);
  EXPECT_EQ(info.devices, devs.size());
  if (devs.empty()) {
    EXPECT_TRUE(info.reason.starts_with("no CUDA device: ")) << info.reason;
    EXPECT_TRUE(throws_error([] { device d(provider::cuda, 0); }, errc::no_device,
                             {"cuda0", info.reason.substr(16)}));
    GTEST_SKIP() << info.reason;
  }
  EXPECT_TRUE(info.built);
  EXPECT_TRUE(info.reason.empty());
  for (std::size_t i = 0; i < all.size(); i++) {
    if (i > 0 && all[i - 1].provider() == provider::cuda) {
      EXPECT_EQ(all[i].provider(), provider::cuda) << "CUDA devices come last";
    }
  }
  for (std::size_t i = 0; i < devs.size(); i++) {
    const auto& s = devs[i];
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.backend, backend::cuda);
    EXPECT_TRUE(s.path.empty());
    EXPECT_FALSE(s.name.empty());
    EXPECT_GT(s.vram_total, 0U);
    EXPECT_LE(s.vram_used, s.vram_total);
    EXPECT_EQ(s.state, device_state::ready);
    EXPECT_EQ(s.where(), location::of_device(provider::cuda, s.index));
  }
  EXPECT_TRUE(throws_error([&] { device d(provider::cuda, static_cast<unsigned>(devs.size())); },
                           errc::no_device, {"cuda" + std::to_string(devs.size())}));
}

// Opening does not take a device exclusively: two handles, and
// enumeration, work at once.
TEST(Enumerate, OpenTwiceAndListWhileOpen) {
  const auto devs = list_devices();
  if (devs.empty()) {
    GTEST_SKIP() << provider_status(provider::hmmgpu).reason << "; "
                 << provider_status(provider::cuda).reason;
  }
  device a(devs[0]);
  device b(devs[0]);
  EXPECT_EQ(list_devices().size(), devs.size());
  EXPECT_EQ(a.index(), b.index());
  EXPECT_TRUE(a.is_open() && b.is_open());
}

class Device : public DeviceTest {};

// The properties agree with enumeration and with the backend: emulated
// GPUs run kernels on their streams, sysram devices do not; CUDA devices
// run kernels, and report no counters.
TEST_P(Device, Properties) {
  const device_properties& p = dev().properties();
  const device_summary& s = GetParam();
  EXPECT_EQ(p.index, s.index);
  EXPECT_EQ(dev().index(), s.index);
  EXPECT_EQ(p.name, s.name);
  EXPECT_EQ(p.backend, s.backend);
  EXPECT_EQ(p.vram_total, s.vram_total);
  EXPECT_EQ(p.copy_channels, s.copy_channels);
  EXPECT_EQ(location(dev()), s.where());
  if (is_cuda()) {
    EXPECT_GE(p.driver.major, 11U);
    EXPECT_GT(p.compute_capability, 0U);
    EXPECT_EQ(p.hw_version, 0U);
    EXPECT_EQ(p.streams, 8U);
    EXPECT_TRUE(dev().supports(capability::nop));
    EXPECT_TRUE(dev().supports(capability::counters));
    EXPECT_TRUE(dev().supports(capability::compute));
    EXPECT_FALSE(p.reports("to_device_pages"));
    EXPECT_FALSE(p.reports("channel_busy"));
    return;
  }
  EXPECT_TRUE(p.pageable_memory_access);
  EXPECT_EQ(p.compute_capability, 0U);
  EXPECT_TRUE(p.reports("to_device_pages"));
  EXPECT_EQ(p.reports("tlb_invalidates"), p.driver >= (driver_version{1, 4}));
  EXPECT_GE(p.driver, (driver_version{1, 3}));
  EXPECT_EQ(p.driver.major, 1U);
  EXPECT_TRUE(dev().supports(capability::nop));
  EXPECT_TRUE(dev().supports(capability::migrate));
  EXPECT_TRUE(dev().supports(capability::counters));
  if (s.backend == backend::emu) {
    EXPECT_TRUE(dev().supports(capability::compute));
    EXPECT_GE(p.streams, 1U);
    EXPECT_GE(p.contexts, 1U);
    EXPECT_NE(p.hw_version, 0U);
  } else {
    EXPECT_FALSE(dev().supports(capability::compute));
    EXPECT_EQ(p.streams, 0U);
    EXPECT_EQ(p.hw_version, 0U);
  }
  EXPECT_EQ(dev().supports(capability::peer_access), p.peer_mask != 0);
  EXPECT_EQ(location(dev()), location::of_device(s.index));
}

// memory() is sysfs's (CUDA: cudaMemGetInfo()): prefetching 4 MiB to an
// hmmgpu device raises its use.
TEST_P(Device, MemoryUse) {
  const memory_info before = dev().memory();
  EXPECT_EQ(before.total, GetParam().vram_total);
  EXPECT_EQ(before.free, before.total - before.used);
  managed_vector<char> v(4 << 20, 1);
  const prefetch_result r = prefetch(v, dev());
  ASSERT_EQ(r.migrated, v.size() / kPage);
  const memory_info after = dev().memory();
  if (!is_cuda()) {  // CUDA may reserve device memory ahead
    EXPECT_GE(after.used, before.used + v.size());
  }
  EXPECT_EQ(after.free, after.total - after.used);
  EXPECT_EQ(dev().state(), device_state::ready);
}

// The counters count a prefetch each way; a difference of two readings
// gives the interval's counts.
TEST_P(Device, CountersCountMigrations) {
  UVM_HMMGPU_ONLY("the CUDA runtime exposes no counters (CudaProvider.NoCounters)");
  const device_counters before = dev().counters();
  EXPECT_EQ(before.channel_busy.size(), std::max(1U, GetParam().copy_channels));
  managed_vector<std::uint64_t> v(64 * kPage / 8, 3);
  ASSERT_EQ(prefetch(v, dev()).migrated, 64U);
  ASSERT_EQ(prefetch(v, cpu).migrated, 64U);
  const device_counters d = dev().counters() - before;
  EXPECT_GE(d.to_device_pages, 64U);
  EXPECT_GE(d.to_device_bytes, 64 * kPage);
  EXPECT_GE(d.to_system_pages, 64U);
  EXPECT_GE(d.to_system_bytes, 64 * kPage);
  EXPECT_GE(d.copy_batches, 2U);
  EXPECT_EQ(d.copy_errors, 0U);
  std::chrono::nanoseconds busy{0};
  for (auto t : d.channel_busy) {
    busy += t;
  }
  EXPECT_GT(busy.count(), 0);
  EXPECT_EQ(v[100], 3U);
}

// A round trip of empty commands takes time; counts out of range are refused.
TEST_P(Device, Ping) {
  EXPECT_GT(dev().ping().count(), 0);
  EXPECT_GT(dev().ping(10).count(), 0);
  EXPECT_TRUE(throws_error([&] { (void)dev().ping(0); }, errc::invalid_argument, {"count 0"}));
  EXPECT_TRUE(throws_error([&] { (void)dev().ping(4097); }, errc::invalid_argument));
}

// A closed device keeps its number and properties, refuses everything
// else, and no longer resolves as a location.
TEST_P(Device, ClosedDevice) {
  const unsigned n = dev().index();
  dev().close();
  EXPECT_FALSE(dev().is_open());
  dev().close();  // idempotent
  EXPECT_EQ(dev().index(), n);
  EXPECT_EQ(dev().properties().index, n);
  const std::string name = dev_name();
  EXPECT_TRUE(throws_error([&] { (void)dev().counters(); }, errc::device_closed, {name, "closed"}));
  EXPECT_TRUE(throws_error([&] { (void)dev().ping(); }, errc::device_closed));
  EXPECT_TRUE(throws_error([&] { (void)dev().memory(); }, errc::device_closed));
  EXPECT_TRUE(throws_error([&] { (void)dev().state(); }, errc::device_closed));
  std::vector<int> v(100);
  EXPECT_TRUE(throws_error([&] { (void)residency(v, dev()); }, errc::device_closed));
  EXPECT_TRUE(throws_error([&] { stream s(dev()); }, errc::device_closed, {name}));
  EXPECT_TRUE(
      throws_error([&] { (void)prefetch(v, dev()); }, errc::no_device, {name + " is not open"}));
}

// A moved-from device is closed; the new handle works.
TEST_P(Device, MovedFrom) {
  device other = std::move(*dev_);
  EXPECT_FALSE(dev_->is_open());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(throws_error([&] { (void)dev_->index(); }, errc::device_closed, {"moved from"}));
  EXPECT_TRUE(throws_error([&] { stream s(*dev_); }, errc::device_closed));
  EXPECT_TRUE(other.is_open());
  EXPECT_GT(other.ping().count(), 0);
  *dev_ = std::move(other);
  EXPECT_TRUE(dev_->is_open());
  EXPECT_EQ(dev_->index(), GetParam().index);
}

// Peers follow the driver's mask: from uapi 1.4 the emulated GPUs of the
// VM (one emulator) are each other's peers, a sysram device is nobody's;
// no device is its own peer.
TEST_P(Device, PeerAccess) {
  EXPECT_FALSE(dev().can_access_peer(dev()));
  UVM_HMMGPU_ONLY("the peers of the VM's emulated GPUs");
  const bool has_peers = dev().properties().driver >= driver_version{1, 4};
  for (const auto& s : devices_of(provider::hmmgpu)) {
    if (s.index == GetParam().index) {
      continue;
    }
    device o(s);
    const bool mask = ((dev().properties().peer_mask >> s.index) & 1U) != 0;
    EXPECT_EQ(dev().can_access_peer(o), mask) << s.path;
    const bool both_emu = GetParam().backend == backend::emu && s.backend == backend::emu;
    EXPECT_EQ(mask, has_peers && both_emu) << s.path;
    EXPECT_EQ(o.can_access_peer(dev()), mask) << s.path;  // symmetric
  }
  const bool any_emu_peer =
      has_peers && GetParam().backend == backend::emu && devices_of(backend::emu).size() > 1;
  EXPECT_EQ(dev().supports(capability::peer_access), any_emu_peer);
}

// Several threads use one device at once: prefetches both ways and
// counters, each on its own buffer, all data intact.
TEST_P(Device, ManyThreadsOneDevice) {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      managed_vector<std::uint32_t> v(16 * kPage / 4);
      for (std::size_t i = 0; i < v.size(); i++) {
        v[i] = static_cast<std::uint32_t>(i * 31 + t);
      }
      for (int round = 0; round < 5; round++) {
        if (prefetch(v, dev()).migrated != 16) {
          failures++;
        }
        (void)dev().counters();
        if (prefetch(v, cpu).migrated != 16) {
          failures++;
        }
      }
      for (std::size_t i = 0; i < v.size(); i++) {
        if (v[i] != static_cast<std::uint32_t>(i * 31 + t)) {
          failures++;
        }
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(All, Device, ::testing::ValuesIn(or_absent(migrate_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Device);

// An emulated GPU unbound while open: every call says the device is lost,
// its state reads lost; bound again, it opens and works.
TEST(Removal, DeviceUnboundWhileOpen) {
  auto emus = devices_of(backend::emu);
  if (emus.empty()) {
    GTEST_SKIP() << "no emulated GPU in this VM";
  }
  const device_summary s = emus.back();
  const fs::path pci =
      fs::canonical("/sys/class/hmmgpu/hmmgpu" + std::to_string(s.index) + "/device");
  const std::string bdf = pci.filename().string();
  const std::string drv = fs::canonical(pci / "driver").filename().string();
  device d(s.index);
  managed_vector<int> v(kPage / sizeof(int), 5);
  ASSERT_EQ(prefetch(v, d).migrated, 1U);

  ASSERT_TRUE(hmmgpu::test::write_file("/sys/bus/pci/drivers/" + drv + "/unbind", bdf));
  const std::string name = "hmmgpu" + std::to_string(s.index);
  EXPECT_TRUE(throws_error([&] { (void)d.counters(); }, errc::device_lost, {name, "removed"}));
  EXPECT_TRUE(throws_error([&] { (void)d.ping(); }, errc::device_lost));
  EXPECT_TRUE(throws_error([&] { (void)prefetch(v, d); }, errc::device_lost, {name}));
  EXPECT_TRUE(throws_error([&] { (void)d.memory(); }, errc::device_lost));
  EXPECT_EQ(d.state(), device_state::lost);
  EXPECT_EQ(v[0], 5);  // the page came back to system memory at the removal
  d.close();

  ASSERT_TRUE(hmmgpu::test::write_file("/sys/bus/pci/drivers/" + drv + "/bind", bdf));
  const auto now = list_devices();
  auto it = std::find_if(now.begin(), now.end(), [&](const device_summary& x) {
    return fs::canonical("/sys/class/hmmgpu/hmmgpu" + std::to_string(x.index) + "/device") == pci;
  });
  ASSERT_NE(it, now.end()) << bdf << " did not come back";
  device again(it->index);
  EXPECT_GT(again.ping().count(), 0);
  EXPECT_EQ(again.state(), device_state::ready);
}

}  // namespace
}  // namespace uvm::test
