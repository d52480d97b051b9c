// SPDX-License-Identifier: GPL-2.0
// hmmgpu-smi's core on the host, without devices: parsing fdinfo, finding
// the processes of a /proc tree, and the JSON and table forms of a
// snapshot. (vm.smi checks the tool against the real driver.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "output.hpp"
#include "snapshot.hpp"

namespace fs = std::filesystem;

namespace {

constexpr const char* kFdinfo =
    "pos:\t0\nflags:\t02100002\nmnt_id:\t21\nino:\t5\n"
    "hmmgpu-device:\thmmgpu1\nhmmgpu-pid:\t4242\nhmmgpu-vram-resident:\t2048 KiB\n"
    "hmmgpu-launches-pending:\t0\n";

// The fdinfo of an hmmgpu device file: device, address space, VRAM.
TEST(ParseFdinfo, ReadsTheHmmgpuKeys) {
  const auto u = smi::parse_fdinfo(kFdinfo);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->device, "hmmgpu1");
  EXPECT_EQ(u->pid, 4242);
  EXPECT_EQ(u->vram_resident, 2048U * 1024);
}

// Other files' fdinfo, missing keys and malformed values give nothing.
TEST(ParseFdinfo, RejectsOtherFilesAndMalformedValues) {
  EXPECT_FALSE(smi::parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t21\n"));
  EXPECT_FALSE(smi::parse_fdinfo(""));
  EXPECT_FALSE(smi::parse_fdinfo("hmmgpu-device:\thmmgpu0\nhmmgpu-pid:\t1\n"));
  EXPECT_FALSE(
      smi::parse_fdinfo("hmmgpu-device:\thmmgpu0\nhmmgpu-pid:\tx\nhmmgpu-vram-resident:\t4 KiB\n"));
  EXPECT_FALSE(
      smi::parse_fdinfo("hmmgpu-device:\thmmgpu0\nhmmgpu-pid:\t1\nhmmgpu-vram-resident:\t4 MiB\n"));
  EXPECT_FALSE(smi::parse_fdinfo(
      "hmmgpu-device:\thmmgpu0\nhmmgpu-pid:\t1\nhmmgpu-vram-resident:\t-4 KiB\n"));
}

// Files of one process on one device count once; devices and processes apart.
TEST(AddUse, CountsAProcessOncePerDevice) {
  smi::usage_map m;
  smi::add_use(m, {"hmmgpu0", 10, 4096});
  smi::add_use(m, {"hmmgpu0", 10, 8192});
  smi::add_use(m, {"hmmgpu0", 10, 4096});
  smi::add_use(m, {"hmmgpu1", 10, 0});
  smi::add_use(m, {"hmmgpu0", 11, 4096});
  ASSERT_EQ(m.size(), 3U);
  EXPECT_EQ((m[{"hmmgpu0", 10}]), 8192U);
  EXPECT_EQ((m[{"hmmgpu1", 10}]), 0U);
  EXPECT_EQ((m[{"hmmgpu0", 11}]), 4096U);
}

class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("smi-proc-" + std::to_string(::getpid()));
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // /proc/PID/fd/FD -> target, and its fdinfo when `info` is not empty.
  void file(int pid, int fd, const std::string& target, const std::string& info) {
    const fs::path dir = root_ / std::to_string(pid);
    fs::create_directories(dir / "fd");
    fs::create_directories(dir / "fdinfo");
    fs::create_symlink(target, dir / "fd" / std::to_string(fd));
    if (!info.empty()) {
      std::ofstream(dir / "fdinfo" / std::to_string(fd)) << info;
    }
  }
  static std::string info(const char* device, int pid, unsigned kib) {
    return std::string("pos:\t0\nhmmgpu-device:\t") + device + "\nhmmgpu-pid:\t" +
           std::to_string(pid) + "\nhmmgpu-vram-resident:\t" + std::to_string(kib) + " KiB\n";
  }

  fs::path root_;
};

// A process with two files of a device, a child that inherited one, other
// files, hmmgpu-smi itself and entries that are no process.
TEST_F(FakeProc, FindsEachProcessOncePerDevice) {
  file(100, 3, "/dev/hmmgpu0", info("hmmgpu0", 100, 4096));
  file(100, 4, "/dev/hmmgpu0", info("hmmgpu0", 100, 4096));
  file(100, 5, "/dev/hmmgpu1", info("hmmgpu1", 100, 1024));
  file(100, 6, "/dev/null", info("hmmgpu1", 999, 1));  // not a device file: not read
  file(101, 3, "/dev/hmmgpu1", info("hmmgpu1", 100, 1024));
  file(102, 3, "/dev/hmmgpu0", info("hmmgpu0", 102, 64));  // "hmmgpu-smi"
  file(103, 3, "/dev/hmmgpu0", "");                        // closed meanwhile
  fs::create_directories(root_ / "self" / "fd");
  fs::create_directories(root_ / "104");  // exited: no fd directory
  std::size_t uninspected = 7;
  const smi::usage_map m = smi::scan_processes(root_.string(), 102, uninspected);
  EXPECT_EQ(uninspected, 0U);
  const smi::usage_map expect{{{"hmmgpu0", 100}, 4U << 20}, {{"hmmgpu1", 100}, 1U << 20}};
  EXPECT_EQ(m, expect);
}

// A /proc that does not exist gives no processes.
TEST(ScanProcesses, NoProcIsEmpty) {
  std::size_t uninspected = 1;
  EXPECT_TRUE(smi::scan_processes("/nonexistent-proc", 0, uninspected).empty());
  EXPECT_EQ(uninspected, 0U);
}

TEST(Output, JsonStringEscapes) {
  EXPECT_EQ(smi::json_string("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\u000a\\u0001\"");
  EXPECT_EQ(smi::json_string(""), "\"\"");
}

TEST(Output, Mib) {
  EXPECT_EQ(smi::mib(0), "0.0 MiB");
  EXPECT_EQ(smi::mib(3U << 19), "1.5 MiB");
  EXPECT_EQ(smi::mib(256ULL << 20), "256.0 MiB");
}

smi::snapshot two_devices() {
  smi::snapshot s;
  smi::device_report a;
  a.summary = {.index = 0,
               .path = "/dev/hmmgpu0",
               .name = "gpu \"zero\"",
               .backend = uvm::backend::emu,
               .vram_total = 64 << 20,
               .vram_used = 4 << 20,
               .copy_channels = 2,
               .state = uvm::device_state::ready};
  a.driver = uvm::driver_version{1, 4};
  a.peers = std::vector<unsigned>{1};
  uvm::device_counters c;
  c.to_device_pages = 1024;
  c.tlb_invalidates = 7;
  c.channel_busy = {std::chrono::nanoseconds(1500000), std::chrono::nanoseconds(0)};
  a.counters = c;
  a.processes = {{.pid = 42, .name = "app", .vram_resident = 4 << 20}};
  smi::device_report b;
  b.summary = {.index = 1,
               .path = "/dev/hmmgpu1",
               .name = "gpu1",
               .backend = uvm::backend::sysram,
               .vram_total = 16 << 20,
               .copy_channels = 1,
               .state = uvm::device_state::lost};
  b.error = "device lost";
  s.devices = {a, b};
  s.uninspected = 3;
  return s;
}

// Every key of schema hmmgpu-smi/1, the null forms, escaping.
TEST(Output, Json) {
  const std::string j = smi::json(two_devices());
  EXPECT_EQ(j.find('\n'), std::string::npos);
  EXPECT_TRUE(j.starts_with(R"({"schema":"hmmgpu-smi/1","time":")")) << j;
  for (const char* part : {
           R"("devices":[{"index":0,"path":"/dev/hmmgpu0","name":"gpu \"zero\"","backend":"emu",)",
           R"("state":"ready","driver_version":"1.4",)",
           R"("vram":{"total":67108864,"used":4194304,"free":62914560},"copy_channels":2,)",
           R"("peers":[1],"counters":{"to_device_pages":1024,"to_device_bytes":0,)",
           R"("tlb_invalidates":7,"fault_dropped":0,"channel_busy_ns":[1500000,0]},"error":null,)",
           R"("processes":[{"pid":42,"name":"app","vram_resident":4194304}]},)",
           R"({"index":1,"path":"/dev/hmmgpu1","name":"gpu1","backend":"sysram","state":"lost",)",
           R"("driver_version":null,)",
           R"("peers":null,"counters":null,"error":"device lost","processes":[]}],)",
           R"("processes_uninspected":3})",
       }) {
    EXPECT_NE(j.find(part), std::string::npos) << part << "\nin " << j;
  }
}

// The three tables and the notes.
TEST(Output, Table) {
  const std::string t = smi::table(two_devices());
  for (const char* part : {
           "  0  gpu \"zero\"           emu      ready   1.4        4.0 MiB    60.0 MiB    64.0 "
           "MiB         2  hmmgpu1\n",
           "  1  gpu1                 sysram   lost    -          0.0 MiB    16.0 MiB    16.0 "
           "MiB         1  -\n",
           "to_device_pages                  1024              -\n",
           "channel0_busy_ms                1.500              -\n",
           "     42  app              hmmgpu0         4.0 MiB\n",
           "hmmgpu1: device lost",
           "note: 3 processes of other users could not be inspected",
       }) {
    EXPECT_NE(t.find(part), std::string::npos) << part << "\nin\n" << t;
  }
}

}  // namespace
