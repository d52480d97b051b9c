// SPDX-License-Identifier: GPL-2.0
/// @file uvm/version.hpp
/// @brief The library's version: compile-time macros and a run-time query.
///
/// The macros give the version of the headers a program was compiled with;
/// uvm::version() gives the version of the library it runs with. The two
/// differ when a program runs against a newer libuvm.so of the same major
/// version (the SONAME is libuvm.so.MAJOR).
///
/// This header is the single source of the version: the build reads it.
#pragma once

/// Major version: changes when the ABI or API breaks (the SONAME follows it).
#define UVM_VERSION_MAJOR 2  // NOLINT(cppcoreguidelines-macro-usage)
/// Minor version: changes when the API grows compatibly.
#define UVM_VERSION_MINOR 0  // NOLINT(cppcoreguidelines-macro-usage)
/// Patch version: fixes only.
#define UVM_VERSION_PATCH 0  // NOLINT(cppcoreguidelines-macro-usage)
/// The version as one number, MAJOR * 10000 + MINOR * 100 + PATCH, for `#if`.
#define UVM_VERSION (UVM_VERSION_MAJOR * 10000 + UVM_VERSION_MINOR * 100 + UVM_VERSION_PATCH)
/// The version as a string, "MAJOR.MINOR.PATCH".
#define UVM_VERSION_STRING "2.0.0"  // NOLINT(cppcoreguidelines-macro-usage)

namespace uvm {

/// A library version.
struct version_info {
  int major;           ///< UVM_VERSION_MAJOR of the library
  int minor;           ///< UVM_VERSION_MINOR of the library
  int patch;           ///< UVM_VERSION_PATCH of the library
  const char* string;  ///< "MAJOR.MINOR.PATCH", a static string
};

/// The version of the library the program runs with.
///
/// @return the library's version; compare with UVM_VERSION_* for the
///         headers' version.
/// @par Errors
/// None.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] version_info version() noexcept;

}  // namespace uvm
