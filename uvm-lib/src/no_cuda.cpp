// SPDX-License-Identifier: GPL-2.0
// The CUDA provider's stand-in in a libuvm built without CUDA
// (UVM_WITH_CUDA=OFF, or no CUDA Toolkit): no device, and every attempt
// to open one says why.
#include "detail.hpp"

namespace uvm::detail {
namespace {

const char* const kWhy =
    "no CUDA device: this libuvm was built without CUDA (UVM_WITH_CUDA=OFF, or CMake found no "
    "CUDA Toolkit)";

class no_cuda_provider final : public provider_impl {
 public:
  [[nodiscard]] provider kind() const noexcept override { return provider::cuda; }
  [[nodiscard]] std::vector<device_summary> list() override { return {}; }
  [[nodiscard]] provider_info status() override {
    return {.provider = provider::cuda, .built = false, .devices = 0, .reason = kWhy};
  }
  [[nodiscard]] std::shared_ptr<device_impl> open(unsigned index) override {
    fail(errc::no_device,
         {.operation = "open",
          .device = index,
          .range = {},
          .address = {},
          .provider = provider::cuda},
         std::string("there is no cuda") + std::to_string(index) + ": " + kWhy);
  }
};

}  // namespace

provider_impl& cuda_provider() {
  static no_cuda_provider p;
  return p;
}

}  // namespace uvm::detail
