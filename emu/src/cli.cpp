// SPDX-License-Identifier: GPL-2.0
#include "cli.h"

#include <charconv>
#include <functional>
#include <limits>
#include <map>

#include "regs.h"

namespace hmmgpu {
namespace {

constexpr uint32_t kMaxGpus = 16;
constexpr uint32_t kMaxVectors = 64;
constexpr uint32_t kMaxContexts = 4096;
constexpr uint64_t kVramAlign = 2ULL << 20;

std::optional<uint64_t> parse_number(const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::optional<uint32_t> parse_u32(const std::string& text, uint32_t min, uint32_t max) {
  const std::optional<uint64_t> value = parse_number(text);
  if (!value || *value < min || *value > max) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(*value);
}

// What each option does with its argument; false when the argument is invalid.
using Setter = std::function<bool(Config&, const std::string&)>;

Setter size_setter(uint64_t Config::*field) {
  return [field](Config& config, const std::string& arg) {
    const std::optional<uint64_t> size = parse_size(arg);
    config.*field = size.value_or(0);
    return size.has_value() && *size > 0;
  };
}

Setter u32_setter(uint32_t Config::*field, uint32_t min, uint32_t max) {
  return [=](Config& config, const std::string& arg) {
    const std::optional<uint32_t> value = parse_u32(arg, min, max);
    config.*field = value.value_or(0);
    return value.has_value();
  };
}

const std::map<std::string, Setter>& valued_options() {
  static const std::map<std::string, Setter> options = {
      {"--socket-dir",
       [](Config& c, const std::string& a) {
         c.socket_dir = a;
         return !a.empty();
       }},
      {"--guest-ram",
       [](Config& c, const std::string& a) {
         c.guest_ram = a;
         return !a.empty();
       }},
      {"--guest-ram-size", size_setter(&Config::guest_ram_size)},
      {"--vram", size_setter(&Config::vram_size)},
      {"--gpus", u32_setter(&Config::gpus, 1, kMaxGpus)},
      {"--channels", u32_setter(&Config::channels, 0, regs::kMaxQueues - 1)},
      {"--compute", u32_setter(&Config::compute, 0, regs::kMaxQueues - 1)},
      {"--contexts", u32_setter(&Config::contexts, 1, kMaxContexts)},
      {"--vectors", u32_setter(&Config::vectors, 1, kMaxVectors)},
      {"--control",
       [](Config& c, const std::string& a) {
         c.control_file = a;
         return !a.empty();
       }},
      {"--crash-after-doorbells",
       [](Config& c, const std::string& a) {
         const std::optional<uint64_t> n = parse_number(a);
         c.crash_after_doorbells = n.value_or(0);
         return n.has_value() && *n > 0;
       }},
  };
  return options;
}

std::optional<std::string> validate(const Config& config) {
  if (config.socket_dir.empty() || config.guest_ram.empty() || config.guest_ram_size == 0) {
    return "--socket-dir, --guest-ram and --guest-ram-size are required";
  }
  if (config.vram_size % kVramAlign != 0) {
    return "--vram must be a multiple of 2M";
  }
  // Each at most 31, so the sums cannot overflow.
  if (1 + config.channels + config.compute > regs::kMaxQueues) {
    return "--channels + --compute must be at most 31 (NUM_QUEUES is at most 32)";
  }
  if (config.vectors < 2 + config.channels + config.compute) {
    return "--vectors must be at least 2 + --channels + --compute (one per queue, and the fault "
           "vector)";
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> parse_size(const std::string& text) {
  if (text.empty()) {
    return std::nullopt;
  }
  unsigned shift = 0;
  std::string digits = text;
  switch (text.back()) {
    case 'K':
    case 'k':
      shift = 10;
      break;
    case 'M':
    case 'm':
      shift = 20;
      break;
    case 'G':
    case 'g':
      shift = 30;
      break;
    default:
      break;
  }
  if (shift != 0) {
    digits.pop_back();
  }
  const std::optional<uint64_t> value = parse_number(digits);
  if (!value || *value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return std::nullopt;
  }
  return *value << shift;
}

CliResult parse_cli(const std::vector<std::string>& args) {
  Config config;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& opt = args[i];
    if (opt == "--help" || opt == "-h") {
      return CliHelp{};
    }
    if (opt == "--verbose") {
      config.verbose = true;
      continue;
    }
    if (opt == "--copy-floor") {
      config.copy_floor = true;
      continue;
    }
    // Both "--opt value" and "--opt=value".
    const size_t eq = opt.find('=');
    const std::string name = opt.substr(0, eq);
    const auto it = valued_options().find(name);
    if (it == valued_options().end()) {
      return CliError{"unknown option " + name};
    }
    std::string value;
    if (eq != std::string::npos) {
      value = opt.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return CliError{opt + " needs an argument"};
    }
    if (!it->second(config, value)) {
      return CliError{"invalid value for " + name + ": " + value};
    }
  }
  if (std::optional<std::string> error = validate(config)) {
    return CliError{*error};
  }
  return config;
}

const char* usage() {
  return "usage: hmmgpu-emu --socket-dir DIR --guest-ram FILE --guest-ram-size SIZE [options]\n"
         "Emulated hmmgpu devices, served as ivshmem-doorbell servers at DIR/gpu<i>.sock.\n"
         "Prints 'ready' once every socket listens; exits 0 on SIGTERM or SIGINT.\n"
         "  --socket-dir DIR          directory for the sockets\n"
         "  --guest-ram FILE          the guest's RAM file (QEMU memory-backend-file, share=on)\n"
         "  --guest-ram-size SIZE     the guest's RAM size (QEMU -m)\n"
         "  --gpus N                  number of GPUs (default 2, at most 16)\n"
         "  --vram SIZE               VRAM per GPU, a multiple of 2M (default 256M)\n"
         "  --channels N              copy-engine channels per GPU (default 2, at most 31)\n"
         "  --compute N               compute queues per GPU (default 2; channels + compute\n"
         "                            at most 31)\n"
         "  --contexts N              MMU contexts (address spaces) per GPU (default 64,\n"
         "                            1 to 4096)\n"
         "  --vectors V               MSI-X vectors, >= 2 + channels + compute (default 8,\n"
         "                            at most 64); must equal the vectors= property given to QEMU\n"
         "  --verbose                 debug prints on stderr\n"
         "  --crash-after-doorbells N fault injection: abort() on the N-th doorbell (any GPU)\n"
         "  --control FILE            fault injection and device loss: execute the commands\n"
         "                            appended to FILE (created when missing), acknowledge\n"
         "                            in FILE.ack: fail-copies GPU N, fail-vram GPU START END,\n"
         "                            clear GPU, hang GPU, unhang GPU, copy-floor GPU 0|1,\n"
         "                            exit (SPEC 8.1)\n"
         "  --copy-floor              benchmarks only: every GPU completes its copies without\n"
         "                            moving bytes (the copy floor, SPEC 8.2)\n"
         "  --help                    this text\n"
         "SIZE is bytes, or a number with a K, M or G suffix (binary units). Options also\n"
         "take their value as --option=VALUE.\n"
         "Exit status: 0 after SIGTERM/SIGINT, 1 on a host error, 2 on a bad command line,\n"
         "3 after the control command exit.\n";
}

}  // namespace hmmgpu
