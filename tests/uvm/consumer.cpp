// SPDX-License-Identifier: GPL-2.0
//
// A program outside the project that uses an installed libuvm: prints the
// library's version and every device with its properties. Built by
// consumer-cmake/ (find_package) and consumer-make/ (pkg-config).
//
// uvm-consumer [--require-device]: exit status 0 when the headers' and the
// library's versions agree and every device opened (with
// --require-device, also when there is at least one).
#include <cstdio>
#include <cstring>
#include <exception>
#include <uvm/uvm.hpp>

int main(int argc, char** argv) {
  const bool require = argc > 1 && std::strcmp(argv[1], "--require-device") == 0;
  const uvm::version_info v = uvm::version();
  std::printf("libuvm %s (headers %s)\n", v.string, UVM_VERSION_STRING);
  if (v.major != UVM_VERSION_MAJOR) {
    return 1;
  }
  try {
    const auto devices = uvm::list_devices();
    for (const auto& s : devices) {
      const uvm::device d(s.index);
      const uvm::device_properties& p = d.properties();
      std::printf("%s %s %s vram %llu MiB, %u channels, %u streams, uapi %u.%u%s\n", s.path.c_str(),
                  p.name.c_str(), uvm::to_string(p.backend),
                  static_cast<unsigned long long>(p.vram_total >> 20), p.copy_channels, p.streams,
                  p.driver.major, p.driver.minor,
                  d.supports(uvm::capability::compute) ? ", compute" : "");
    }
    if (devices.empty()) {
      std::printf("no hmmgpu devices\n");
    }
    return require && devices.empty() ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "uvm-consumer: %s\n", e.what());
    return 1;
  }
}
