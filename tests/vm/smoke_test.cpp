// SPDX-License-Identifier: GPL-2.0
//
// Platform smoke test, run in the VM against the real module and the real
// hmmgpu-emu: every device binds, answers GET_INFO consistently with sysfs,
// round-trips NOPs on every queue (doorbell in, MSI-X out), rejects bad
// input with the documented errno, and survives being unbound while open.
// vm/run loads hmmgpu.ko with sysram_devices=1 and adds a plain ivshmem
// device that the driver must leave alone.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "test_util.h"

namespace fs = std::filesystem;
using namespace hmmgpu::test;

namespace {

constexpr uint32_t kEmuVersion = 0x00010003;  // emu/SPEC.md VERSION (1.3)

Fd open_device(const Device& d) { return Fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC)); }

hmmgpu_info get_info(const Fd& fd) {
  hmmgpu_info info{};
  EXPECT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  return info;
}

int nop(const Fd& fd, uint32_t queue, uint32_t count, uint64_t* elapsed = nullptr) {
  hmmgpu_nop arg{};
  arg.count = count;
  arg.queue = queue;
  int ret = xioctl(fd.get(), HMMGPU_IOCTL_NOP, &arg);
  if (elapsed != nullptr) {
    *elapsed = arg.elapsed_ns;
  }
  return ret;
}

// PCI functions 1af4:1110 (every ivshmem device, ours or not).
std::vector<fs::path> ivshmem_functions() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator("/sys/bus/pci/devices")) {
    if (read_file(e.path() / "vendor") == "0x1af4" && read_file(e.path() / "device") == "0x1110") {
      out.push_back(e.path());
    }
  }
  return out;
}

std::string driver_of(const fs::path& pci) {
  std::error_code ec;
  auto link = fs::read_symlink(pci / "driver", ec);
  return ec ? "" : link.filename().string();
}

std::string param_name(const testing::TestParamInfo<Device>& p) {
  return p.param.node + "_" + p.param.attr("backend");
}

}  // namespace

// The module binds every emulated GPU and every sysram device it was asked for.
TEST(Platform, EveryDeviceBinds) {
  long gpus = env_long("HMMGPU_VM_GPUS", 2);
  long sysram = std::stol(read_file("/sys/module/hmmgpu/parameters/sysram_devices").value_or("0"));
  EXPECT_EQ(devices_with_backend("emu").size(), static_cast<size_t>(gpus));
  EXPECT_EQ(devices_with_backend("sysram").size(), static_cast<size_t>(sysram));
  EXPECT_EQ(list_devices().size(), static_cast<size_t>(gpus + sysram));
}

// An ivshmem device without the HMMGPU signature is left unbound.
TEST(Platform, ForeignIvshmemIsLeftAlone) {
  long gpus = env_long("HMMGPU_VM_GPUS", 2);
  size_t ours = 0;
  size_t unbound = 0;
  for (const auto& f : ivshmem_functions()) {
    std::string drv = driver_of(f);
    if (drv.starts_with("hmmgpu")) {
      ++ours;
    }
    if (drv.empty()) {
      ++unbound;
    }
  }
  EXPECT_EQ(ours, static_cast<size_t>(gpus));
  EXPECT_EQ(unbound, static_cast<size_t>(env_long("HMMGPU_VM_PLAIN_IVSHMEM", 0)))
      << "vm/run --plain-ivshmem adds one foreign ivshmem device";
}

class DeviceTest : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    fd_ = open_device(GetParam());
    ASSERT_TRUE(fd_.valid()) << GetParam().dev_path() << ": " << std::strerror(errno);
    info_ = get_info(fd_);
  }
  Fd fd_;
  hmmgpu_info info_{};
};

// GET_INFO and the sysfs attributes describe the same device.
TEST_P(DeviceTest, InfoMatchesSysfs) {
  const Device& d = GetParam();
  EXPECT_EQ(info_.uapi_version, static_cast<uint32_t>(HMMGPU_UAPI_VERSION));
  EXPECT_EQ(std::string(info_.name), d.attr("name"));
  EXPECT_EQ(std::to_string(info_.vram_size), d.attr("vram_total"));
  EXPECT_EQ(std::to_string(info_.num_channels), d.attr("channels"));
  EXPECT_EQ(info_.num_queues, info_.num_channels + info_.num_streams + 1);
  EXPECT_EQ(info_.num_streams != 0, (info_.caps & HMMGPU_CAP_COMPUTE) != 0);
  EXPECT_EQ("hmmgpu" + std::to_string(info_.index), d.node);
  EXPECT_EQ(d.attr("state"), "ready");
  EXPECT_EQ(d.attr("vram_used"), "0");
  EXPECT_NE(info_.caps & HMMGPU_CAP_NOP, 0U);
  EXPECT_EQ(info_.pad, 0U);
  for (auto r : info_.reserved) {
    EXPECT_EQ(r, 0U);
  }
  if (d.attr("backend") == "emu") {
    EXPECT_EQ(info_.backend, static_cast<uint32_t>(HMMGPU_BACKEND_EMU));
    EXPECT_EQ(info_.hw_version, kEmuVersion);
    EXPECT_EQ(info_.vram_size, 256U << 20) << "vm/run's default --vram";
    EXPECT_EQ(info_.num_channels, 2U) << "vm/run's default --channels";
    EXPECT_TRUE(std::string(info_.name).starts_with("hmmgpu-emu gpu")) << info_.name;
  } else {
    EXPECT_EQ(info_.backend, static_cast<uint32_t>(HMMGPU_BACKEND_SYSRAM));
    EXPECT_EQ(info_.vram_size, 64U << 20) << "sysram_vram_mb defaults to 64";
  }
}

// The device node is a character device any user may open (like /dev/nvidia-uvm).
TEST_P(DeviceTest, NodeIsWorldUsableCharDevice) {
  struct stat st {};
  ASSERT_EQ(::stat(GetParam().dev_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0666U);
}

// A NOP completes on every queue, with its interrupt.
TEST_P(DeviceTest, NopOnEveryQueue) {
  for (uint32_t q = 0; q < info_.num_queues; ++q) {
    uint64_t elapsed = 0;
    EXPECT_EQ(nop(fd_, q, 1, &elapsed), 0) << "queue " << q;
    EXPECT_GT(elapsed, 0U) << "queue " << q;
  }
}

// A batch larger than any ring completes: submission waits for ring space.
TEST_P(DeviceTest, NopBatchLargerThanRing) {
  for (uint32_t q = 0; q < info_.num_queues; ++q) {
    EXPECT_EQ(nop(fd_, q, HMMGPU_NOP_MAX), 0) << "queue " << q;
  }
}

// Every malformed NOP is refused with EINVAL and the device keeps working.
TEST_P(DeviceTest, NopRejectsBadInput) {
  auto submit = [&](auto&& mutate) {
    hmmgpu_nop arg{};
    arg.count = 1;
    mutate(arg);
    return xioctl(fd_.get(), HMMGPU_IOCTL_NOP, &arg);
  };
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.flags = 1; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.flags = 0x80000000U; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.count = 0; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.count = HMMGPU_NOP_MAX + 1; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.count = UINT32_MAX; }), -EINVAL);
  EXPECT_EQ(submit([&](hmmgpu_nop& a) { a.queue = info_.num_queues; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.queue = UINT32_MAX; }), -EINVAL);
  EXPECT_EQ(submit([](hmmgpu_nop& a) { a.pad = 1; }), -EINVAL);
  for (size_t i = 0; i < std::size(hmmgpu_nop{}.reserved); ++i) {
    EXPECT_EQ(submit([&](hmmgpu_nop& a) { a.reserved[i] = 1; }), -EINVAL) << "reserved " << i;
  }
  EXPECT_EQ(nop(fd_, 0, 1), 0);
}

// Unknown ioctls get ENOTTY; unreadable or unwritable arguments get EFAULT.
TEST_P(DeviceTest, BadIoctls) {
  EXPECT_EQ(xioctl(fd_.get(), _IO(HMMGPU_IOCTL_MAGIC, 0x7f), nullptr), -ENOTTY);
  std::array<char, 8> small{};
  EXPECT_EQ(xioctl(fd_.get(), _IOR(HMMGPU_IOCTL_MAGIC, 0x00, decltype(small)), small.data()),
            -ENOTTY);
  EXPECT_EQ(xioctl(fd_.get(), _IOWR('x', 0x01, struct hmmgpu_nop), small.data()), -ENOTTY);
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_GET_INFO, nullptr), -EFAULT);
  EXPECT_EQ(xioctl(fd_.get(), HMMGPU_IOCTL_NOP, reinterpret_cast<void*>(8)), -EFAULT);
  EXPECT_EQ(nop(fd_, 0, 1), 0);
}

// Threads submitting on shared queues all complete.
TEST_P(DeviceTest, ConcurrentNops) {
  constexpr int kThreads = 4;
  constexpr int kIters = 100;
  std::atomic<int> failures{0};
  std::vector<std::jthread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        uint32_t q = static_cast<uint32_t>(t + i) % info_.num_queues;
        if (nop(fd_, q, 1 + (i % 64)) != 0) {
          failures.fetch_add(1);
        }
      }
    });
  }
  threads.clear();
  EXPECT_EQ(failures.load(), 0);
}

// Measures the NOP round trip (doorbell to completion interrupt). A figure
// for the record, not a pass/fail threshold: only success is asserted.
TEST_P(DeviceTest, NopRoundTripLatency) {
  constexpr int kSamples = 300;
  std::vector<double> us;
  for (int i = 0; i < kSamples; ++i) {
    uint64_t ns = 0;
    ASSERT_EQ(nop(fd_, 0, 1, &ns), 0);
    us.push_back(static_cast<double>(ns) / 1000.0);
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us[static_cast<size_t>(p * static_cast<double>(us.size() - 1))];
  };
  std::cout << "NOP round trip " << GetParam().node << " (" << GetParam().attr("backend")
            << "): median " << pct(0.5) << " us, p90 " << pct(0.9) << " us, p99 " << pct(0.99)
            << " us, min " << us.front() << " us over " << kSamples << " NOPs\n";
  RecordProperty("median_us", std::to_string(pct(0.5)));
}

INSTANTIATE_TEST_SUITE_P(Device, DeviceTest, testing::ValuesIn(list_devices()), param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DeviceTest);

// Unbinding a GPU while a process holds it open leaves that fd answering
// ENODEV (no use-after-free), and binding it again brings a working device.
TEST(Unbind, OpenFileSurvivesUnbindAndRebind) {
  auto emus = devices_with_backend("emu");
  if (emus.empty()) {
    GTEST_SKIP() << "no emulated GPU in this VM";
  }
  const Device d = emus.back();
  fs::path pci = d.parent();
  std::string bdf = pci.filename().string();
  std::string drv = driver_of(pci);
  ASSERT_FALSE(drv.empty());
  Fd fd = open_device(d);
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(nop(fd, 0, 1), 0);

  ASSERT_TRUE(write_file("/sys/bus/pci/drivers/" + drv + "/unbind", bdf));
  EXPECT_FALSE(fs::exists(d.sysfs));
  hmmgpu_info info{};
  EXPECT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), -ENODEV);
  EXPECT_EQ(nop(fd, 0, 1), -ENODEV);
  fd = Fd();

  ASSERT_TRUE(write_file("/sys/bus/pci/drivers/" + drv + "/bind", bdf));
  std::vector<Device> now = list_devices();
  auto it = std::find_if(now.begin(), now.end(),
                         [&](const Device& x) { return x.parent() == pci.string(); });
  ASSERT_NE(it, now.end()) << bdf << " did not come back after bind";
  Fd fd2 = open_device(*it);
  ASSERT_TRUE(fd2.valid());
  EXPECT_EQ(nop(fd2, 0, 1), 0);
  EXPECT_EQ(it->attr("state"), "ready");
}
