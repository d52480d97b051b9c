// SPDX-License-Identifier: GPL-2.0
// Command line of hmmgpu-emu (SPEC section 8).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "emulator.h"

namespace hmmgpu {

struct CliHelp {};
struct CliError {
  std::string message;
};
using CliResult = std::variant<Config, CliHelp, CliError>;

// Parses "123", "64K", "256M", "3G" (binary units); nullopt when malformed or overflowing.
std::optional<uint64_t> parse_size(const std::string& text);
CliResult parse_cli(const std::vector<std::string>& args);
const char* usage();

}  // namespace hmmgpu
