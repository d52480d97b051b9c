// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-smi: the hmmgpu devices of this machine, their VRAM use and
// counters, and the processes that hold VRAM on them; once, or refreshed
// with --watch; as tables or as JSON. See usage() or hmmgpu-smi(1).
#include <getopt.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "output.hpp"
#include "snapshot.hpp"

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoDevice = 3;

constexpr const char* kUsage = R"(Usage: hmmgpu-smi [OPTION]...
Shows the hmmgpu devices of this machine: their VRAM use, their counters, and
the processes that have them open with the VRAM each one holds.

Options:
  -d, --device=N[,N...]  only these devices, N of /dev/hmmgpuN (repeatable)
  -j, --json             JSON instead of tables: one object per snapshot, on
                         one line (schema below)
  -w, --watch[=SECONDS]  a new snapshot every SECONDS (default 2; fractions
                         allowed) until interrupted (Ctrl-C, SIGTERM); on a
                         terminal the table replaces the previous one
  -n, --count=N          with --watch: stop after N snapshots
  -h, --help             show this text
  -V, --version          show the versions of hmmgpu-smi and libuvm

The tables:
  devices    number, name, backend (emu: the emulated GPU; sysram: VRAM carved
             from system RAM), state (ready, halted, lost), the driver's uapi
             version, VRAM used, free and total, copy-engine channels, and the
             peer devices whose VRAM it reaches directly
  counters   a column per device: events since the device appeared, which only
             grow (subtract two snapshots for an interval); the names are
             those of uvm::device_counters (uvm/device.hpp) and of the
             driver's debugfs file hmmgpu/hmmgpuN/counters; channelN_busy_ms
             is the time copy channel N was busy
  processes  each process that has a device open, with the bytes of its
             memory in that device's VRAM (several files of one process, also
             inherited ones, count once)

Processes and privileges:
  Processes are found through /proc/PID/fdinfo (the keys hmmgpu-device,
  hmmgpu-pid and hmmgpu-vram-resident). Reading another user's processes
  needs root (CAP_SYS_PTRACE); without it hmmgpu-smi shows your own and says
  how many others it could not inspect. The devices and their counters are
  readable by everyone (/sys/class/hmmgpu, /dev/hmmgpuN).

JSON (schema "hmmgpu-smi/1"; later versions only add keys):
  {"schema": "hmmgpu-smi/1", "time": "YYYY-MM-DDTHH:MM:SSZ" (UTC),
   "version": S, "library_version": S,
   "devices": [{"index": N, "path": "/dev/hmmgpuN", "name": S, "backend": S,
       "state": S, "driver_version": "MAJOR.MINOR" | null,
       "vram": {"total": BYTES, "used": BYTES, "free": BYTES},
       "copy_channels": N, "peers": [N, ...] | null,
       "counters": {"to_device_pages": N, ... every counter of the table ...,
                    "channel_busy_ns": [NS, ...]} | null,
       "error": null | S (why driver_version, peers or counters are null),
       "processes": [{"pid": N, "name": S, "vram_resident": BYTES}, ...]}],
   "processes_uninspected": N}

Exit status:
  0  success; also a --watch ended by a signal
  1  an error: a device given with -d does not exist, or a device could not be
     read (the "error" of the device says why)
  2  bad usage
  3  no hmmgpu device: the driver is not loaded, or it found no device
)";

struct options {
  std::vector<unsigned> devices;  // empty: all
  bool json = false;
  bool watch = false;
  double interval = 2.0;  // seconds
  long count = 0;         // snapshots; 0: until interrupted
};

[[noreturn]] void usage_error(const std::string& msg) {
  if (!msg.empty()) {
    std::fprintf(stderr, "hmmgpu-smi: %s\n", msg.c_str());
  }
  std::fprintf(stderr, "Try 'hmmgpu-smi --help' for more information.\n");
  std::exit(kExitUsage);
}

long integer(const std::string& s, long min, long max, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0' || v < min || v > max) {
    usage_error(std::string(what) + " must be a number from " + std::to_string(min) + " to " +
                std::to_string(max) + ", not '" + s + "'");
  }
  return v;
}

options parse(int argc, char** argv) {
  static constexpr std::array<option, 7> kLong{{
      {"device", required_argument, nullptr, 'd'},
      {"json", no_argument, nullptr, 'j'},
      {"watch", optional_argument, nullptr, 'w'},
      {"count", required_argument, nullptr, 'n'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {nullptr, 0, nullptr, 0},
  }};
  options o;
  bool counted = false;
  int c = 0;
  while ((c = getopt_long(argc, argv, "d:jw::n:hV", kLong.data(), nullptr)) != -1) {
    const std::string arg = optarg != nullptr ? optarg : "";
    switch (c) {
      case 'd': {
        std::string_view list(arg);
        while (true) {
          const auto comma = list.find(',');
          const std::string item(list.substr(0, comma));
          o.devices.push_back(static_cast<unsigned>(integer(item, 0, 63, "a device")));
          if (comma == std::string_view::npos) {
            break;
          }
          list.remove_prefix(comma + 1);
        }
        break;
      }
      case 'j':
        o.json = true;
        break;
      case 'w':
        o.watch = true;
        if (optarg != nullptr) {
          char* end = nullptr;
          o.interval = std::strtod(arg.c_str(), &end);
          if (end == arg.c_str() || *end != '\0' || !std::isfinite(o.interval) || o.interval <= 0 ||
              o.interval > 86400) {
            usage_error("--watch takes seconds, more than 0 and at most 86400, not '" + arg + "'");
          }
        }
        break;
      case 'n':
        o.count = integer(arg, 1, 1000000000, "--count");
        counted = true;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        std::exit(0);
      case 'V':
        std::printf("hmmgpu-smi %s (libuvm %s)\n", HMMGPU_VERSION, uvm::version().string);
        std::exit(0);
      default:
        usage_error("");  // getopt said what was wrong
    }
  }
  if (optind < argc) {
    usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  }
  if (counted && !o.watch) {
    usage_error("--count needs --watch");
  }
  return o;
}

// Sleeps `seconds`; false when SIGINT or SIGTERM (blocked by the caller)
// came first.
bool sleep_unless_signalled(const sigset_t& signals, double seconds) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - clock::now()).count();
    if (left <= 0) {
      return true;
    }
    const timespec ts{.tv_sec = static_cast<time_t>(left / 1000000000),
                      .tv_nsec = static_cast<long>(left % 1000000000)};
    if (sigtimedwait(&signals, nullptr, &ts) > 0) {
      return false;
    }
    if (errno != EINTR) {
      return true;  // EAGAIN: the time is up
    }
  }
}

// Devices of `o.devices` that `s` lacks, as "hmmgpu7, hmmgpu9".
std::string missing(const options& o, const smi::snapshot& s) {
  std::string out;
  for (unsigned want : o.devices) {
    bool found = false;
    for (const auto& d : s.devices) {
      found = found || d.summary.index == want;
    }
    if (!found) {
      out += (out.empty() ? "hmmgpu" : ", hmmgpu") + std::to_string(want);
    }
  }
  return out;
}

void show(const options& o, const smi::snapshot& s, bool first) {
  if (o.json) {
    std::printf("%s\n", smi::json(s).c_str());
  } else {
    if (o.watch && isatty(STDOUT_FILENO) == 1) {
      std::fputs("\033[H\033[2J", stdout);  // home, clear: the new table replaces the old
    } else if (!first) {
      std::fputs("\n", stdout);
    }
    std::fputs(smi::table(s).c_str(), stdout);
  }
  std::fflush(stdout);
}

int run(const options& o) {
  if (!smi::driver_loaded()) {
    std::fprintf(stderr,
                 "hmmgpu-smi: the hmmgpu driver is not loaded (no /sys/class/hmmgpu); "
                 "load it with 'modprobe hmmgpu'\n");
    return kExitNoDevice;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (o.watch) {
    // Taken by sigtimedwait() between snapshots: the watch ends cleanly.
    sigprocmask(SIG_BLOCK, &signals, nullptr);
  }
  for (long i = 0; o.count == 0 || i < o.count; i++) {
    if (i > 0 && !sleep_unless_signalled(signals, o.interval)) {
      break;
    }
    const smi::snapshot s = smi::take(o.devices);
    if (i == 0) {
      if (s.devices.empty() && o.devices.empty()) {
        std::fprintf(stderr,
                     "hmmgpu-smi: no hmmgpu devices: the driver is loaded but found "
                     "none\n");
        return kExitNoDevice;
      }
      if (const std::string m = missing(o, s); !m.empty()) {
        std::fprintf(stderr, "hmmgpu-smi: no such device: %s (see hmmgpu-smi without -d)\n",
                     m.c_str());
        return kExitError;
      }
    }
    show(o, s, i == 0);
    if (!o.watch) {
      for (const auto& d : s.devices) {
        if (!d.error.empty()) {
          return kExitError;
        }
      }
      return 0;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hmmgpu-smi: %s\n", e.what());
    return kExitError;
  }
}
