// SPDX-License-Identifier: GPL-2.0
#include "log.h"

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace hmmgpu::log {
namespace {

std::atomic<bool> g_verbose{false};  // NOLINT(*-avoid-non-const-global-variables): --verbose
std::atomic<bool> g_silent{false};   // NOLINT(*-avoid-non-const-global-variables): set_silent

// At most kBurst guest-error lines per kWindow; the rest are counted and summarized.
constexpr int kBurst = 20;
constexpr auto kWindow = std::chrono::seconds(1);

void vprint(const char* prefix, const char* fmt, va_list args) {
  // One locked stream write per line, so lines from different threads do not interleave.
  flockfile(stderr);
  std::fputs(prefix, stderr);
  // The callers va_start `args`; the analyzer does not follow them.
  std::vfprintf(stderr, fmt, args);  // NOLINT(clang-analyzer-valist.Uninitialized)
  std::fputc('\n', stderr);
  funlockfile(stderr);
}

bool guest_error_allowed() {
  if (g_silent.load(std::memory_order_relaxed)) {
    return false;
  }
  static std::mutex mutex;
  static std::chrono::steady_clock::time_point window_start;
  static int printed = 0;
  static long suppressed = 0;
  const std::scoped_lock lock(mutex);
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start >= kWindow) {
    if (suppressed > 0) {
      std::fprintf(stderr, "guest error: %ld more suppressed\n", suppressed);
    }
    window_start = now;
    printed = 0;
    suppressed = 0;
  }
  if (printed < kBurst) {
    ++printed;
    return true;
  }
  ++suppressed;
  return false;
}

}  // namespace

void set_verbose(bool on) { g_verbose.store(on, std::memory_order_relaxed); }
bool verbose() { return g_verbose.load(std::memory_order_relaxed); }
void set_silent(bool on) { g_silent.store(on, std::memory_order_relaxed); }

void debug(const char* fmt, ...) {
  if (!verbose()) {
    return;
  }
  va_list args;
  va_start(args, fmt);
  vprint("hmmgpu-emu: ", fmt, args);
  va_end(args);
}

void guest_error(const char* fmt, ...) {
  if (!guest_error_allowed()) {
    return;
  }
  va_list args;
  va_start(args, fmt);
  vprint("guest error: ", fmt, args);
  va_end(args);
}

void control(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vprint("control: ", fmt, args);
  va_end(args);
}

void warn(const char* fmt, ...) {
  if (g_silent.load(std::memory_order_relaxed)) {
    return;
  }
  va_list args;
  va_start(args, fmt);
  vprint("hmmgpu-emu: warning: ", fmt, args);
  va_end(args);
}

}  // namespace hmmgpu::log
