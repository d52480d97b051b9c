// SPDX-License-Identifier: GPL-2.0
// hmmgpu-emu: the emulated hmmgpu devices of one VM (SPEC section 8).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "cli.h"
#include "emulator.h"

namespace {

constexpr int kExitHostError = 1;
constexpr int kExitUsage = 2;

// Blocks SIGTERM and SIGINT in every thread (threads inherit the mask); main collects them with
// sigwait. SIGPIPE is ignored: a vanished client is seen as a send error.
sigset_t block_termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return set;
}

int run(const hmmgpu::Config& config, const sigset_t& signals) {
  std::optional<hmmgpu::Emulator> emulator;
  try {
    emulator.emplace(config);
  } catch (const std::exception& err) {
    std::fprintf(stderr, "hmmgpu-emu: %s\n", err.what());
    return kExitHostError;
  }
  std::fputs("ready\n", stdout);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  emulator.reset();  // joins the threads and removes the sockets
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t signals = block_termination_signals();
  const std::vector<std::string> args(argv + 1, argv + argc);
  const hmmgpu::CliResult result = hmmgpu::parse_cli(args);
  if (std::holds_alternative<hmmgpu::CliHelp>(result)) {
    std::fputs(hmmgpu::usage(), stdout);
    return 0;
  }
  if (const auto* error = std::get_if<hmmgpu::CliError>(&result)) {
    std::fprintf(stderr, "hmmgpu-emu: %s\n%s", error->message.c_str(), hmmgpu::usage());
    return kExitUsage;
  }
  return run(std::get<hmmgpu::Config>(result), signals);
}
