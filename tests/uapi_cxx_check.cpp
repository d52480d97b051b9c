// SPDX-License-Identifier: GPL-2.0
// The uapi header compiles alone in C++ and its structures are plain data.
#include <uapi/hmmgpu.h>

#include <type_traits>

static_assert(std::is_trivially_copyable_v<hmmgpu_info>);
static_assert(std::is_standard_layout_v<hmmgpu_nop>);
