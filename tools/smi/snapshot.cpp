// SPDX-License-Identifier: GPL-2.0
#include "snapshot.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace smi {

namespace {

constexpr unsigned long kPfKthread = 0x00200000;  // PF_KTHREAD in /proc/PID/stat's flags

template <class T>
std::optional<T> number(std::string_view s) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\n");
  if (first == std::string_view::npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(" \t\n") - first + 1);
}

// A whole (small) file; empty when it cannot be read.
std::optional<std::string> slurp(const fs::path& p) {
  std::ifstream in(p);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) {
    return std::nullopt;
  }
  return s.str();
}

// Whether /proc/PID (`dir`) is a kernel thread (PF_KTHREAD in its stat).
bool kernel_thread(const fs::path& dir) {
  const auto stat = slurp(dir / "stat");
  if (!stat) {
    return false;
  }
  // pid (comm) state ppid pgrp session tty_nr tpgid flags ...; comm may
  // hold anything, so count from its closing parenthesis.
  std::istringstream rest(stat->substr(stat->rfind(')') + 1));
  std::string field;
  for (int i = 0; i < 7 && rest >> field; i++) {
  }
  const auto flags = number<unsigned long>(field);
  return flags && (*flags & kPfKthread) != 0;
}

std::string process_name(const std::string& proc, int pid) {
  const auto comm = slurp(fs::path(proc) / std::to_string(pid) / "comm");
  return comm ? std::string(trim(*comm)) : "?";
}

// The processes of each device, from `uses`, in ascending pid order.
std::vector<process_use> processes_of(const usage_map& uses, const std::string& device,
                                      const std::string& proc) {
  std::vector<process_use> out;
  for (auto it = uses.lower_bound({device, 0}); it != uses.end() && it->first.first == device;
       ++it) {
    out.push_back({it->first.second, process_name(proc, it->first.second), it->second});
  }
  return out;
}

// Fills what only an open device tells: driver version, peers, counters.
void read_open_device(device_report& r) {
  try {
    const uvm::device dev(r.summary.index);
    const uvm::device_properties& p = dev.properties();
    r.driver = p.driver;
    std::vector<unsigned> peers;
    for (unsigned i = 0; i < 64; i++) {
      if ((p.peer_mask >> i & 1U) != 0) {
        peers.push_back(i);
      }
    }
    r.peers = std::move(peers);
    if (dev.supports(uvm::capability::counters)) {
      r.counters = dev.counters();
    } else {
      r.error = "the device keeps no counters";
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
}

}  // namespace

std::optional<fd_use> parse_fdinfo(std::string_view text) {
  fd_use u;
  bool device = false;
  bool pid = false;
  bool resident = false;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (key == "hmmgpu-device") {
      u.device = value;
      device = !value.empty();
    } else if (key == "hmmgpu-pid") {
      const auto v = number<int>(value);
      if (!v) {
        return std::nullopt;
      }
      u.pid = *v;
      pid = true;
    } else if (key == "hmmgpu-vram-resident") {
      // "N KiB"
      if (!value.ends_with(" KiB")) {
        return std::nullopt;
      }
      const auto kib = number<std::uint64_t>(value.substr(0, value.size() - 4));
      if (!kib) {
        return std::nullopt;
      }
      u.vram_resident = *kib * 1024;
      resident = true;
    }
  }
  if (!device || !pid || !resident) {
    return std::nullopt;
  }
  return u;
}

void add_use(usage_map& m, const fd_use& u) {
  // Every file of one process on one device shows the same count, read at
  // slightly different times: keep the largest.
  auto& bytes = m[{u.device, u.pid}];
  bytes = std::max(bytes, u.vram_resident);
}

usage_map scan_processes(const std::string& proc, int self, std::size_t& uninspected) {
  usage_map uses;
  uninspected = 0;
  // Processes come and go meanwhile: an entry that vanishes is skipped, so
  // the iterators advance with error codes rather than exceptions.
  std::error_code ec;
  for (fs::directory_iterator it(proc, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path dir = it->path();
    const auto pid = number<int>(dir.filename().string());
    if (!pid || *pid == self) {
      continue;
    }
    std::error_code fd_ec;
    fs::directory_iterator fd(dir / "fd", fd_ec);
    if (fd_ec == std::errc::permission_denied && !kernel_thread(dir)) {
      uninspected++;  // another user's, without privileges
    }
    for (; !fd_ec && fd != end; fd.increment(fd_ec)) {
      std::error_code link_ec;
      const fs::path target = fs::read_symlink(fd->path(), link_ec);
      if (link_ec || !target.string().starts_with("/dev/hmmgpu")) {
        continue;
      }
      const auto info = slurp(dir / "fdinfo" / fd->path().filename());
      const auto use = info ? parse_fdinfo(*info) : std::nullopt;
      if (use) {
        add_use(uses, *use);
      }
    }
  }
  return uses;
}

bool driver_loaded() {
  std::error_code ec;
  return fs::is_directory("/sys/class/hmmgpu", ec);
}

snapshot take(const std::vector<unsigned>& only) {
  snapshot snap;
  snap.time = std::chrono::system_clock::now();
  const std::string proc = "/proc";
  const usage_map uses = scan_processes(proc, static_cast<int>(::getpid()), snap.uninspected);
  for (auto& s : uvm::list_devices()) {
    if (!only.empty() && std::find(only.begin(), only.end(), s.index) == only.end()) {
      continue;
    }
    device_report r;
    r.summary = std::move(s);
    read_open_device(r);
    r.processes = processes_of(uses, r.summary.path.filename().string(), proc);
    snap.devices.push_back(std::move(r));
  }
  return snap;
}

}  // namespace smi
