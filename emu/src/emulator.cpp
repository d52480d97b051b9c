// SPDX-License-Identifier: GPL-2.0
#include "emulator.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <sstream>
#include <system_error>

#include "log.h"

namespace hmmgpu {
namespace {

constexpr auto kControlPoll = std::chrono::milliseconds(10);

// SPEC 8.1: a decimal or 0x-hexadecimal number, nothing else.
std::optional<uint64_t> parse_control_number(const std::string& text) {
  int base = 10;
  size_t start = 0;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    start = 2;
  }
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data() + start, end, value, base);
  if (ec != std::errc() || ptr != end || start == text.size()) {
    return std::nullopt;
  }
  return value;
}

// SPEC 3.1 PEER_GROUP: a random non-zero number, so that GPUs of two emulator processes never
// take each other for peers.
uint64_t new_peer_group() {
  std::random_device rd;
  uint64_t group = 0;
  while (group == 0) {
    group = (static_cast<uint64_t>(rd()) << 32) | rd();
  }
  return group;
}

}  // namespace

Emulator::Emulator(const Config& config)
    : config_(config), ram_(config.guest_ram, config.guest_ram_size), peers_(config.gpus) {
  log::set_verbose(config.verbose);
  const uint64_t peer_group = new_peer_group();
  try {
    for (uint32_t i = 0; i < config_.gpus; ++i) {
      GpuConfig gpu{.index = i,
                    .vram_size = config_.vram_size,
                    .channels = config_.channels,
                    .compute = config_.compute,
                    .contexts = config_.contexts,
                    .vectors = config_.vectors,
                    .peer_group = peer_group,
                    .socket_path = config_.socket_dir + "/gpu" + std::to_string(i) + ".sock",
                    .copy_floor = config_.copy_floor};
      gpus_.push_back(std::make_unique<Gpu>(
          std::move(gpu), ram_, [this](uint64_t rings) { count_doorbells(rings); },
          [this](uint32_t index) { return find_gpu(index); }));
      peers_.at(i).store(gpus_.back().get(), std::memory_order_release);
    }
    if (!config_.control_file.empty()) {
      // Created when missing; lines already in it are executed (SPEC 8.1).
      control_fd_.reset(::open(config_.control_file.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644));
      if (!control_fd_.valid()) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot open control file " + config_.control_file);
      }
      write_ack();  // 0: replaces a stale acknowledgement from an earlier run
      control_thread_ = std::jthread([this](const std::stop_token& stop) { control_loop(stop); });
    }
  } catch (...) {
    stop_gpus();
    throw;
  }
}

Emulator::~Emulator() {
  if (control_thread_.joinable()) {
    control_thread_.request_stop();
    control_thread_.join();
  }
  stop_gpus();
}

void Emulator::stop_gpus() {
  for (const std::unique_ptr<Gpu>& gpu : gpus_) {
    gpu->stop();
  }
}

const Gpu* Emulator::find_gpu(uint32_t index) const {
  return index < peers_.size() ? peers_[index].load(std::memory_order_acquire) : nullptr;
}

// Fault injection (--crash-after-doorbells): die on the N-th doorbell of any GPU.
void Emulator::count_doorbells(uint64_t rings) {
  const uint64_t total = doorbells_.fetch_add(rings, std::memory_order_relaxed) + rings;
  if (config_.crash_after_doorbells != 0 && total >= config_.crash_after_doorbells) {
    log::warn("--crash-after-doorbells %llu reached, aborting",
              static_cast<unsigned long long>(config_.crash_after_doorbells));
    std::abort();
  }
}

// ---- control file (SPEC 8.1) ----

void Emulator::control_loop(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    poll_control();
    std::this_thread::sleep_for(kControlPoll);
  }
}

// Reads what was appended since the last poll and executes every complete line; a trailing
// partial line waits for its newline.
void Emulator::poll_control() {
  std::array<char, 4096> buf{};
  while (true) {
    const ssize_t n =
        ::pread(control_fd_.get(), buf.data(), buf.size(), static_cast<off_t>(control_offset_));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      log::warn("control file %s: %s", config_.control_file.c_str(),
                std::generic_category().message(errno).c_str());
    }
    if (n <= 0) {
      break;
    }
    control_offset_ += static_cast<uint64_t>(n);
    control_partial_.append(buf.data(), static_cast<size_t>(n));
  }
  size_t newline = 0;
  while ((newline = control_partial_.find('\n')) != std::string::npos) {
    const std::string line = control_partial_.substr(0, newline);
    control_partial_.erase(0, newline + 1);
    ++control_lines_;
    execute_control(line);
    write_ack();
  }
}

// One command line; a bad one is logged and changes nothing. Blank lines do nothing.
void Emulator::execute_control(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string word; in >> word;) {
    words.push_back(word);
  }
  const auto lineno = static_cast<unsigned long long>(control_lines_);
  if (words.empty()) {
    return;
  }
  const auto bad = [&](const char* why) {
    log::control("line %llu: bad line \"%s\": %s", lineno, line.c_str(), why);
  };
  const std::string& cmd = words[0];
  if (cmd == "exit") {
    if (words.size() != 1) {
      bad("exit takes no arguments");
      return;
    }
    log::control("line %llu: exit, every device is gone (status %d)", lineno, kExitControl);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(kExitControl);
  }
  struct Command {
    const char* name;
    size_t args;  // after GPU
  };
  static constexpr std::array<Command, 6> kCommands{{{.name = "fail-copies", .args = 1},
                                                     {.name = "fail-vram", .args = 2},
                                                     {.name = "clear", .args = 0},
                                                     {.name = "hang", .args = 0},
                                                     {.name = "unhang", .args = 0},
                                                     {.name = "copy-floor", .args = 1}}};
  const Command* command = nullptr;
  for (const Command& c : kCommands) {
    if (cmd == c.name) {
      command = &c;
    }
  }
  if (command == nullptr) {
    bad("unknown command");
    return;
  }
  if (words.size() != 2 + command->args) {
    bad("wrong number of arguments");
    return;
  }
  std::vector<uint64_t> numbers;
  for (size_t i = 1; i < words.size(); ++i) {
    const std::optional<uint64_t> number = parse_control_number(words[i]);
    if (!number) {
      bad("not a decimal or 0x-hexadecimal number");
      return;
    }
    numbers.push_back(*number);
  }
  if (numbers[0] >= gpus_.size()) {
    bad("no such GPU");
    return;
  }
  Gpu& gpu = *gpus_[numbers[0]];
  if (cmd == "fail-copies") {
    gpu.inject_fail_copies(numbers[1]);
  } else if (cmd == "fail-vram") {
    if (numbers[1] >= numbers[2]) {
      bad("START must be below END");
      return;
    }
    gpu.inject_fail_vram(numbers[1], numbers[2]);
  } else if (cmd == "clear") {
    gpu.clear_faults();
  } else if (cmd == "copy-floor") {
    if (numbers[1] > 1) {
      bad("ON must be 0 or 1");
      return;
    }
    gpu.set_copy_floor(numbers[1] == 1);
  } else {
    gpu.set_hung(cmd == "hang");
  }
  log::control("line %llu: %s", lineno, line.c_str());
}

// FILE.ack gets the number of lines processed, through a rename so no reader sees half of it.
void Emulator::write_ack() const {
  const std::string ack = config_.control_file + ".ack";
  const std::string tmp = ack + ".tmp";
  const std::string text = std::to_string(control_lines_) + "\n";
  const UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid() || ::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()) ||
      ::rename(tmp.c_str(), ack.c_str()) != 0) {
    log::warn("cannot write %s: %s", ack.c_str(), std::generic_category().message(errno).c_str());
  }
}

}  // namespace hmmgpu
