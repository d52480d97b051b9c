// SPDX-License-Identifier: GPL-2.0
#include "output.hpp"

#include <array>
#include <cstdarg>
#include <cstdio>
#include <ctime>

#ifndef HMMGPU_VERSION
#define HMMGPU_VERSION "unknown"  // NOLINT(cppcoreguidelines-macro-usage): set by CMake
#endif

namespace smi {

namespace {

using C = uvm::device_counters;

struct counter_field {
  const char* name;
  std::uint64_t C::*member;
};

// Every counter, in the order and with the names of the driver's debugfs
// file (hmmgpu/hmmgpuN/counters); the channels' busy times follow.
constexpr auto kCounters = std::to_array<counter_field>({
    {"to_device_pages", &C::to_device_pages},
    {"to_device_bytes", &C::to_device_bytes},
    {"to_system_pages", &C::to_system_pages},
    {"to_system_bytes", &C::to_system_bytes},
    {"cpu_faults", &C::cpu_faults},
    {"fault_around_pages", &C::fault_around_pages},
    {"copy_batches", &C::copy_batches},
    {"copy_errors", &C::copy_errors},
    {"vram_alloc_failures", &C::vram_alloc_failures},
    {"device_faults", &C::device_faults},
    {"fault_replays", &C::fault_replays},
    {"fault_cancels", &C::fault_cancels},
    {"evicted_chunks", &C::evicted_chunks},
    {"evicted_pages", &C::evicted_pages},
    {"evicted_bytes", &C::evicted_bytes},
    {"fault_batches", &C::fault_batches},
    {"fault_duplicates", &C::fault_duplicates},
    {"prefetched_pages", &C::prefetched_pages},
    {"remote_mapped_pages", &C::remote_mapped_pages},
    {"thrashing_events", &C::thrashing_events},
    {"peer_to_device_pages", &C::peer_to_device_pages},
    {"peer_to_device_bytes", &C::peer_to_device_bytes},
    {"tlb_invalidates", &C::tlb_invalidates},
    {"fault_dropped", &C::fault_dropped},
});

// printf, appending to a string. (clang-analyzer 14 takes the va_lists for
// uninitialised after va_copy(); they are not.)
// NOLINTBEGIN(clang-analyzer-valist.Uninitialized)
__attribute__((format(printf, 2, 3))) void put(std::string& out, const char* fmt, ...) {
  va_list ap;
  va_list again;
  va_start(ap, fmt);
  va_copy(again, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  if (n > 0) {
    const std::size_t at = out.size();
    out.resize(at + static_cast<std::size_t>(n) + 1);
    std::vsnprintf(&out[at], static_cast<std::size_t>(n) + 1, fmt, again);
    out.resize(at + static_cast<std::size_t>(n));
  }
  va_end(again);
  va_end(ap);
}
// NOLINTEND(clang-analyzer-valist.Uninitialized)

std::string time_string(std::chrono::system_clock::time_point t, bool utc) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  if (utc) {
    gmtime_r(&tt, &tm);
  } else {
    localtime_r(&tt, &tm);
  }
  std::array<char, 32> buf{};
  std::strftime(buf.data(), buf.size(), utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S", &tm);
  return buf.data();
}

std::string driver_string(const std::optional<uvm::driver_version>& v) {
  return v ? std::to_string(v->major) + "." + std::to_string(v->minor) : "-";
}

std::uint64_t free_vram(const uvm::device_summary& m) {
  return m.vram_total > m.vram_used ? m.vram_total - m.vram_used : 0;
}

std::string name_of(const device_report& r) { return r.summary.path.filename().string(); }

std::string peers_string(const std::optional<std::vector<unsigned>>& peers) {
  if (!peers) {
    return "-";
  }
  std::string s;
  for (unsigned p : *peers) {
    s += (s.empty() ? "hmmgpu" : ",hmmgpu") + std::to_string(p);
  }
  return s.empty() ? "none" : s;
}

void device_table(std::string& out, const snapshot& s) {
  put(out, "%3s  %-20s %-8s %-7s %-6s %11s %11s %11s %9s  %s\n", "DEV", "NAME", "BACKEND", "STATE",
      "DRIVER", "VRAM USED", "VRAM FREE", "VRAM TOTAL", "CHANNELS", "PEERS");
  for (const auto& d : s.devices) {
    const auto& m = d.summary;
    put(out, "%3u  %-20s %-8s %-7s %-6s %11s %11s %11s %9u  %s\n", m.index, m.name.c_str(),
        uvm::to_string(m.backend), uvm::to_string(m.state), driver_string(d.driver).c_str(),
        mib(m.vram_used).c_str(), mib(free_vram(m)).c_str(), mib(m.vram_total).c_str(),
        m.copy_channels, peers_string(d.peers).c_str());
  }
}

void counter_table(std::string& out, const snapshot& s) {
  std::size_t channels = 0;
  put(out, "%-22s", "COUNTER");
  for (const auto& d : s.devices) {
    put(out, " %14s", name_of(d).c_str());
    if (d.counters) {
      channels = std::max(channels, d.counters->channel_busy.size());
    }
  }
  out += "\n";
  for (const auto& f : kCounters) {
    put(out, "%-22s", f.name);
    for (const auto& d : s.devices) {
      if (d.counters) {
        put(out, " %14llu", static_cast<unsigned long long>((*d.counters).*f.member));
      } else {
        put(out, " %14s", "-");
      }
    }
    out += "\n";
  }
  for (std::size_t c = 0; c < channels; c++) {
    put(out, "%-22s", ("channel" + std::to_string(c) + "_busy_ms").c_str());
    for (const auto& d : s.devices) {
      if (d.counters && c < d.counters->channel_busy.size()) {
        put(out, " %14.3f",
            std::chrono::duration<double, std::milli>(d.counters->channel_busy[c]).count());
      } else {
        put(out, " %14s", "-");
      }
    }
    out += "\n";
  }
}

void process_table(std::string& out, const snapshot& s) {
  put(out, "%7s  %-16s %-9s %13s\n", "PID", "PROCESS", "DEVICE", "VRAM RESIDENT");
  bool any = false;
  for (const auto& d : s.devices) {
    for (const auto& p : d.processes) {
      any = true;
      put(out, "%7d  %-16s %-9s %13s\n", p.pid, p.name.c_str(), name_of(d).c_str(),
          mib(p.vram_resident).c_str());
    }
  }
  if (!any) {
    out += "    (no process has these devices open)\n";
  }
}

// [1,2] or null.
void json_peers(std::string& out, const std::optional<std::vector<unsigned>>& peers) {
  if (!peers) {
    out += "null";
    return;
  }
  out += "[";
  for (std::size_t i = 0; i < peers->size(); i++) {
    put(out, "%s%u", i == 0 ? "" : ",", (*peers)[i]);
  }
  out += "]";
}

// {"to_device_pages":N,...,"channel_busy_ns":[...]} or null.
void json_counters(std::string& out, const std::optional<uvm::device_counters>& c) {
  if (!c) {
    out += "null";
    return;
  }
  char sep = '{';
  for (const auto& f : kCounters) {
    put(out, R"(%c"%s":%llu)", sep, f.name, static_cast<unsigned long long>((*c).*f.member));
    sep = ',';
  }
  out += R"(,"channel_busy_ns":[)";
  for (std::size_t i = 0; i < c->channel_busy.size(); i++) {
    put(out, "%s%lld", i == 0 ? "" : ",", static_cast<long long>(c->channel_busy[i].count()));
  }
  out += "]}";
}

void json_device(std::string& out, const device_report& d) {
  const auto& m = d.summary;
  put(out, R"({"index":%u,"path":%s,"name":%s,"backend":%s,"state":%s,"driver_version":%s,)",
      m.index, json_string(m.path.string()).c_str(), json_string(m.name).c_str(),
      json_string(uvm::to_string(m.backend)).c_str(), json_string(uvm::to_string(m.state)).c_str(),
      d.driver ? json_string(driver_string(d.driver)).c_str() : "null");
  put(out, R"("vram":{"total":%llu,"used":%llu,"free":%llu},"copy_channels":%u,"peers":)",
      static_cast<unsigned long long>(m.vram_total), static_cast<unsigned long long>(m.vram_used),
      static_cast<unsigned long long>(free_vram(m)), m.copy_channels);
  json_peers(out, d.peers);
  out += R"(,"counters":)";
  json_counters(out, d.counters);
  put(out, R"(,"error":%s,"processes":[)", d.error.empty() ? "null" : json_string(d.error).c_str());
  for (std::size_t i = 0; i < d.processes.size(); i++) {
    const auto& p = d.processes[i];
    put(out, R"(%s{"pid":%d,"name":%s,"vram_resident":%llu})", i == 0 ? "" : ",", p.pid,
        json_string(p.name).c_str(), static_cast<unsigned long long>(p.vram_resident));
  }
  out += "]}";
}

}  // namespace

std::string mib(std::uint64_t bytes) {
  std::string s;
  put(s, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return s;
}

std::string table(const snapshot& s) {
  std::string out;
  put(out, "hmmgpu-smi %s (libuvm %s)  %s\n\n", HMMGPU_VERSION, uvm::version().string,
      time_string(s.time, false).c_str());
  device_table(out, s);
  out += "\n";
  counter_table(out, s);
  out += "\n";
  process_table(out, s);
  for (const auto& d : s.devices) {
    if (!d.error.empty()) {
      put(out, "\n%s: %s", name_of(d).c_str(), d.error.c_str());
    }
  }
  if (s.uninspected != 0) {
    put(out,
        "\nnote: %zu processes of other users could not be inspected (permission denied);\n"
        "      run as root to see the VRAM they hold",
        s.uninspected);
  }
  out += "\n";
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      put(out, "\\u%04x", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string json(const snapshot& s) {
  std::string out;
  put(out, R"({"schema":%s,"time":%s,"version":%s,"library_version":%s,"devices":[)",
      json_string(kSchema).c_str(), json_string(time_string(s.time, true)).c_str(),
      json_string(HMMGPU_VERSION).c_str(), json_string(uvm::version().string).c_str());
  for (std::size_t i = 0; i < s.devices.size(); i++) {
    out += i == 0 ? "" : ",";
    json_device(out, s.devices[i]);
  }
  put(out, R"(],"processes_uninspected":%zu})", s.uninspected);
  return out;
}

}  // namespace smi
