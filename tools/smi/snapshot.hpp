// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-smi's view of the machine at one moment: the devices (sysfs,
// through uvm::list_devices()), their properties and counters (through an
// open uvm::device) and the processes that have them open with the VRAM
// each one holds (/proc/PID/fdinfo, see driver/include/uapi/hmmgpu.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <uvm/uvm.hpp>
#include <vector>

namespace smi {

// A process that has a device open: its VRAM on that device.
struct process_use {
  int pid = 0;                      // the address space's process (hmmgpu-pid)
  std::string name;                 // its /proc/PID/comm; "?" when unreadable
  std::uint64_t vram_resident = 0;  // bytes of its pages in the device's VRAM
};

// One device.
struct device_report {
  uvm::device_summary summary;                   // sysfs: name, backend, VRAM, channels, state
  std::optional<uvm::driver_version> driver;     // from the open device
  std::optional<std::vector<unsigned>> peers;    // devices whose VRAM it reaches directly
  std::optional<uvm::device_counters> counters;  // empty when the device could not be read
  std::string error;                             // why driver/peers/counters are missing
  std::vector<process_use> processes;            // ascending pid
};

// The machine at one moment.
struct snapshot {
  std::chrono::system_clock::time_point time;
  std::vector<device_report> devices;  // ascending index
  std::size_t uninspected = 0;         // user processes whose open files could not be read
};

// What one /proc/PID/fdinfo/FD of an hmmgpu device says.
struct fd_use {
  std::string device;  // "hmmgpu0"
  int pid = 0;         // hmmgpu-pid
  std::uint64_t vram_resident = 0;
};

// Parses the text of a /proc/PID/fdinfo/FD file; empty when it is not an
// hmmgpu device's (no hmmgpu-device line) or a line is malformed.
std::optional<fd_use> parse_fdinfo(std::string_view text);

// The VRAM of each process on each device, by (device, pid): files of one
// process on one device (several opens, inherited or passed files) count
// once.
using usage_map = std::map<std::pair<std::string, int>, std::uint64_t>;

// Adds `u` to `m`.
void add_use(usage_map& m, const fd_use& u);

// Scans /proc (`proc`, for tests) for hmmgpu device files, leaving out
// `self` (hmmgpu-smi's own files). Processes whose files cannot be read
// (another user's, without privileges) are counted in `uninspected`;
// kernel threads are skipped.
usage_map scan_processes(const std::string& proc, int self, std::size_t& uninspected);

// Whether the hmmgpu driver is loaded (/sys/class/hmmgpu exists).
bool driver_loaded();

// Takes a snapshot of the devices in `only` (every device when empty).
snapshot take(const std::vector<unsigned>& only);

}  // namespace smi
