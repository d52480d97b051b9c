// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-smi's two output forms of a snapshot: the table for people and
// the JSON document (schema "hmmgpu-smi/1", described in hmmgpu-smi.1 and
// --help) for programs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "snapshot.hpp"

namespace smi {

// The schema name in every JSON document; a change that breaks readers
// bumps the number (adding keys does not).
inline constexpr std::string_view kSchema = "hmmgpu-smi/1";

// The snapshot as tables: devices, counters (a column per device),
// processes, and notes on what could not be read.
std::string table(const snapshot& s);

// The snapshot as one JSON object on one line (no newline at the end).
std::string json(const snapshot& s);

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

// Bytes in MiB with one decimal, as the table shows VRAM: "4.0 MiB".
std::string mib(std::uint64_t bytes);

}  // namespace smi
