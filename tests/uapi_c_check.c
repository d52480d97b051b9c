// SPDX-License-Identifier: GPL-2.0
/* The uapi header compiles alone in strict C11 and has the documented layout. */
#include <uapi/hmmgpu.h>

_Static_assert(sizeof(struct hmmgpu_info) == 136, "hmmgpu_info layout");
_Static_assert(sizeof(struct hmmgpu_nop) == 56, "hmmgpu_nop layout");
