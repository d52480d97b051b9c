/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmmgpu: private interfaces of the emulated GPU's backend
 *
 * hmmgpu_emu.c drives the device (registers, rings, interrupts, the fault
 * buffer); hmmgpu_emu_mmu.c keeps the page tables the device's MMU walks
 * in guest memory. Nothing outside these two files includes this header.
 */
#ifndef _HMMGPU_EMU_H
#define _HMMGPU_EMU_H

#include <linux/types.h>

struct hmmgpu_device;
struct hmmgpu_pte;

/* hmmgpu_emu_mmu.c: &hmmgpu_backend_ops members, documented there */
int hmmgpu_emu_mmu_alloc(struct hmmgpu_device *hdev, void **priv, u64 *root);
void hmmgpu_emu_mmu_free(struct hmmgpu_device *hdev, void *priv);
int hmmgpu_emu_mmu_prepare(struct hmmgpu_device *hdev, void *priv, u64 va,
			   unsigned int npages);
int hmmgpu_emu_mmu_map(struct hmmgpu_device *hdev, void *priv, u64 va,
		       const struct hmmgpu_pte *ptes, unsigned int npages);
bool hmmgpu_emu_mmu_query(struct hmmgpu_device *hdev, void *priv, u64 va,
			  struct hmmgpu_pte *pte);
bool hmmgpu_emu_mmu_unmap(struct hmmgpu_device *hdev, void *priv, u64 start,
			  u64 end);

#endif /* _HMMGPU_EMU_H */
