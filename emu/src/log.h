// SPDX-License-Identifier: GPL-2.0
// Diagnostics: debug prints switched on by --verbose, and rate-limited guest-error reports that
// are always on.
#pragma once

namespace hmmgpu::log {

void set_verbose(bool on);
bool verbose();
// Test seam (the fuzzers, emu/fuzz): drops guest errors and warnings, which a fuzzer provokes by
// the million.
void set_silent(bool on);

// printf-style debug print to stderr, only with --verbose.
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Reports something the guest did wrong ("guest error: ..."), rate-limited.
void guest_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Reports a fault-injection control line ("control: ..."), see SPEC 8.1.
void control(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Reports a host-side problem the model survives.
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace hmmgpu::log
