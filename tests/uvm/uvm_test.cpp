// SPDX-License-Identifier: GPL-2.0
#include "uvm_test.h"

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ostream>

namespace uvm::test {

namespace {

constexpr unsigned kAbsent = ~0U;

std::vector<device_summary> devices_if(const std::function<bool(const device_properties&)>& pred) {
  std::vector<device_summary> out;
  for (const auto& s : list_devices()) {
    device d(s);
    if (pred(d.properties())) {
      out.push_back(s);
    }
  }
  return out;
}
}  // namespace

std::vector<device_summary> migrate_devices() {
  return devices_if([](const auto& p) { return p.supports(capability::migrate); });
}

std::vector<device_summary> compute_devices() {
  return devices_if([](const auto& p) { return p.supports(capability::compute); });
}

std::vector<device_summary> devices_of(backend b) {
  std::vector<device_summary> out;
  for (const auto& s : list_devices()) {
    if (s.backend == b) {
      out.push_back(s);
    }
  }
  return out;
}

std::vector<device_summary> devices_of(provider p) {
  std::vector<device_summary> out;
  for (const auto& s : list_devices()) {
    if (s.provider() == p) {
      out.push_back(s);
    }
  }
  return out;
}

std::vector<device_summary> only(std::vector<device_summary> devs, provider p) {
  std::erase_if(devs, [p](const device_summary& s) { return s.provider() != p; });
  return devs;
}

std::vector<device_summary> or_absent(std::vector<device_summary> devs,
                                      const std::vector<provider>& of) {
  for (provider p : of) {
    const provider_info info = provider_status(p);
    if (info.devices == 0) {
      device_summary s;
      s.index = kAbsent;
      s.backend = p == provider::cuda ? backend::cuda : backend::unknown;
      s.name = info.reason;
      devs.push_back(s);
    }
  }
  return devs;
}

bool is_absent(const device_summary& s) { return s.index == kAbsent; }

void DeviceTest::SetUp() {
  if (is_absent(GetParam())) {
    GTEST_SKIP() << GetParam().name;
  }
  dev_.emplace(GetParam());
  if (is_cuda()) {
    const memory_info m = dev_->memory();
    if (m.free < kCudaFreeNeeded) {
      GTEST_SKIP() << dev_name() << " has " << (m.free >> 20) << " MiB free, fewer than the "
                   << (kCudaFreeNeeded >> 20) << " MiB the test wants";
    }
  }
}

std::uint64_t fnv1a(const void* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto* b = static_cast<const std::uint8_t*>(p);
  for (std::size_t i = 0; i < n; i++) {
    h = (h ^ b[i]) * 0x100000001b3ULL;
  }
  return h;
}

::testing::AssertionResult throws_error(const std::function<void()>& fn, std::error_code code,
                                        const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const error& e) {
    if (e.code() != code) {
      return ::testing::AssertionFailure()
             << "code " << e.code() << " (" << e.what() << "), expected " << code;
    }
    const std::string what = e.what();
    for (const auto& p : parts) {
      if (what.find(p) == std::string::npos) {
        return ::testing::AssertionFailure() << "\"" << what << "\" lacks \"" << p << "\"";
      }
    }
    return ::testing::AssertionSuccess() << what;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw another exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw; expected " << code;
}

Mapping private_file_mapping(const std::vector<char>& data) {
  std::string path = "/tmp/uvm-file-XXXXXX";
  const hmmgpu::test::Fd fd(::mkstemp(path.data()));
  if (!fd.valid()) {
    ADD_FAILURE() << "mkstemp: " << std::strerror(errno);
    return Mapping(0);
  }
  ::unlink(path.c_str());
  if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ADD_FAILURE() << "write " << path << ": " << std::strerror(errno);
  }
  return Mapping(data.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get());
}

malloc_ptr malloc_bytes(std::size_t bytes) {
  // NOLINTNEXTLINE(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory): the point
  return {static_cast<char*>(std::malloc(bytes)), &std::free};
}

std::string hex(const void* p) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%#lx", reinterpret_cast<unsigned long>(p));
  return buf.data();
}

std::string param_name(const ::testing::TestParamInfo<device_summary>& p) {
  const std::string provider = to_string(p.param.provider());
  if (is_absent(p.param)) {
    return provider + "_absent";
  }
  if (p.param.provider() == uvm::provider::cuda) {
    return provider + std::to_string(p.param.index);
  }
  return provider + std::to_string(p.param.index) + "_" + to_string(p.param.backend);
}

}  // namespace uvm::test

void uvm::PrintTo(const device_summary& s, std::ostream* os) {
  if (uvm::test::is_absent(s)) {
    *os << to_string(s.provider()) << " absent: " << s.name;
    return;
  }
  *os << to_string(s.where()) << " (" << s.name << ", " << to_string(s.backend) << ")";
}
