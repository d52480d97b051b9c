// SPDX-License-Identifier: GPL-2.0
//
// vram-holder: a process that holds VRAM for hmmgpu-smi's test.
//
// vram-holder MIB[:OPENS] ...: for the Nth argument, opens /dev/hmmgpuN
// OPENS times (default 1; several files of one process) and prefetches MIB
// MiB of managed memory to it (0: the device is only open). With --fork it
// also forks a child that inherits every device file and sleeps (its
// fdinfo names the parent's address space). Prints "ready PID CHILD_PID"
// (CHILD_PID 0 without --fork) once everything is resident, then holds it
// until its standard input is closed.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <uvm/uvm.hpp>
#include <vector>

int main(int argc, char** argv) {
  try {
    std::vector<uvm::device> devices;
    std::vector<uvm::managed_vector<char>> buffers;
    bool fork_child = false;
    unsigned index = 0;
    for (int i = 1; i < argc; i++) {
      const std::string arg = argv[i];
      if (arg == "--fork") {
        fork_child = true;
        continue;
      }
      const auto colon = arg.find(':');
      const std::size_t mib = std::stoul(arg.substr(0, colon));
      const unsigned opens = colon == std::string::npos ? 1 : std::stoul(arg.substr(colon + 1));
      for (unsigned k = 0; k < opens; k++) {
        devices.emplace_back(index);
      }
      if (mib != 0) {
        auto& b = buffers.emplace_back(mib << 20, 1);
        const uvm::prefetch_result r = uvm::prefetch(b, devices.back());
        if (r.migrated != r.pages) {
          std::fprintf(stderr, "vram-holder: %zu of %zu pages moved to hmmgpu%u\n", r.migrated,
                       r.pages, index);
          return 1;
        }
      }
      index++;
    }
    pid_t child = 0;
    if (fork_child) {
      child = fork();
      if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pause();
        _exit(0);
      }
    }
    std::printf("ready %d %d\n", static_cast<int>(getpid()), static_cast<int>(child));
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    if (child > 0) {
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vram-holder: %s\n", e.what());
    return 1;
  }
}
