/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmmgpu: registers and descriptors of the emulated GPU
 *
 * Transcribed from emu/SPEC.md, version 1.2, which is the only contract
 * between the device and this driver. Section numbers refer to it.
 */
#ifndef _HMMGPU_REGS_H
#define _HMMGPU_REGS_H

#include <linux/bits.h>
#include <linux/build_bug.h>
#include <linux/sizes.h>
#include <linux/types.h>

#define HMMGPU_EMU_VENDOR_ID		0x1af4	/* PCI_VENDOR_ID_REDHAT_QUMRANET */
#define HMMGPU_EMU_DEVICE_ID		0x1110	/* ivshmem */

/* Section 2.2: BARs. */
#define HMMGPU_BAR_IVSHMEM		0
#define HMMGPU_BAR_SHM			2

/* Section 2.2: BAR0, QEMU's ivshmem registers. */
#define HMMGPU_IVSHMEM_DOORBELL		0x0c
#define HMMGPU_IVSHMEM_SIZE		0x10
#define HMMGPU_DOORBELL_PEER_SHIFT	16
#define HMMGPU_DOORBELL_PEER_MAX	0xffff

/* Section 3.1: identification (RO). */
#define HMMGPU_REG_SIGNATURE		0x000
#define HMMGPU_REG_VERSION		0x008
#define HMMGPU_REG_CAPS			0x00c
#define HMMGPU_REG_VRAM_SIZE		0x010
#define HMMGPU_REG_NUM_QUEUES		0x018
#define HMMGPU_REG_NUM_VECTORS		0x01c
#define HMMGPU_REG_DOORBELL_PEER	0x020
#define HMMGPU_REG_NUM_CHANNELS		0x024
#define HMMGPU_REG_SHM_SIZE		0x028
#define HMMGPU_REG_DEVICE_INDEX		0x02c
#define HMMGPU_REG_DMA_BITS		0x030
#define HMMGPU_REG_NUM_COMPUTE		0x034	/* version 1.2 */
#define HMMGPU_REG_NUM_CONTEXTS		0x038	/* version 1.2 */
#define HMMGPU_REG_FAULT_VECTOR		0x03c	/* version 1.2 */
#define HMMGPU_REG_NAME			0x040
#define HMMGPU_REG_NAME_LEN		32
#define HMMGPU_REG_PEER_GROUP		0x060	/* version 1.3 */

#define HMMGPU_SIGNATURE		"HMMGPU\0\0"
#define HMMGPU_SIGNATURE_LEN		8
#define HMMGPU_VERSION_MAJOR(v)		((v) >> 16)
#define HMMGPU_VERSION_MINOR(v)		((v) & 0xffff)
#define HMMGPU_HW_MAJOR			1
#define HMMGPU_HW_MIN_MINOR		1	/* copy engine */
#define HMMGPU_HW_MINOR_MMU		2	/* MMU, compute, faults */
#define HMMGPU_HW_MINOR_PEER_GROUP	3	/* PEER_GROUP */

#define HMMGPU_HW_CAP_NOP		BIT(0)
#define HMMGPU_HW_CAP_WRITE64		BIT(1)
#define HMMGPU_HW_CAP_COPY		BIT(2)
#define HMMGPU_HW_CAP_MMU		BIT(3)
#define HMMGPU_HW_CAP_COMPUTE		BIT(4)
#define HMMGPU_HW_CAP_FAULT		BIT(5)

#define HMMGPU_HW_MAX_QUEUES		32
#define HMMGPU_VRAM_ALIGN		SZ_2M

/* Section 3.2: status (RO). */
#define HMMGPU_REG_STATUS		0x080
#define HMMGPU_STATUS_READY		BIT(0)
#define HMMGPU_STATUS_HALTED		BIT(1)
#define HMMGPU_REG_ERROR		0x084
#define HMMGPU_REG_CONTROL_ACK		0x088
#define HMMGPU_REG_HEARTBEAT		0x090
#define HMMGPU_HEARTBEAT_PERIOD_MS	100

/* Section 3.3: control (RW). */
#define HMMGPU_REG_CONTROL		0x0c0
#define HMMGPU_CONTROL_RESET		BIT(0)
#define HMMGPU_REG_CONTROL_SEQ		0x0c4
#define HMMGPU_CONTROL_TIMEOUT_MS	1000

#define HMMGPU_REG_PAGE_SIZE		SZ_4K

/* Section 3.4: queue registers, a 64-byte block per queue. */
#define HMMGPU_REG_QUEUE(q)		(0x100 + 0x40 * (q))
#define HMMGPU_QREG_RING_OFFSET		0x00
#define HMMGPU_QREG_RING_ENTRIES	0x04
#define HMMGPU_QREG_HEAD		0x08
#define HMMGPU_QREG_TAIL		0x0c
#define HMMGPU_QREG_FENCE		0x10
#define HMMGPU_QREG_ERRORS		0x18
#define HMMGPU_QREG_VECTOR		0x1c

#define HMMGPU_RING_ALIGN		64

/* Section 3.5: fault buffer registers (version 1.2, CAP_FAULT). */
#define HMMGPU_REG_FAULT_BUF_ADDR	0x900
#define HMMGPU_REG_FAULT_BUF_ENTRIES	0x908
#define HMMGPU_REG_FAULT_GET		0x90c
#define HMMGPU_REG_FAULT_PUT		0x910
#define HMMGPU_REG_FAULT_DROPPED	0x914
#define HMMGPU_REG_FAULT_STATUS		0x918
#define HMMGPU_FAULT_STATUS_OVERFLOW	BIT(0)
#define HMMGPU_FAULT_STATUS_BAD_CONFIG	BIT(1)
#define HMMGPU_REG_FAULT_STALLED	0x91c
#define HMMGPU_FAULT_BUF_ALIGN		SZ_4K
#define HMMGPU_FAULT_BUF_MAX_ENTRIES	SZ_64K

/* Section 4.2: descriptors. */
#define HMMGPU_OP_NOP			0x00
#define HMMGPU_OP_WRITE64		0x01
#define HMMGPU_OP_COPY			0x02
#define HMMGPU_OP_COPY_LIST		0x03
#define HMMGPU_OP_CTX_BIND		0x10	/* version 1.2 */
#define HMMGPU_OP_TLB_INVALIDATE	0x11	/* version 1.2 */
#define HMMGPU_OP_FAULT_REPLAY		0x12	/* version 1.2 */
#define HMMGPU_OP_FAULT_CANCEL		0x13	/* version 1.2 */
#define HMMGPU_OP_LAUNCH		0x20	/* version 1.2 */
#define HMMGPU_DESC_IRQ			BIT(0)
#define HMMGPU_DESC_OPCODE		0x00	/* offset of OPCODE */
#define HMMGPU_DESC_STATUS		0x04	/* offset of STATUS */
#define HMMGPU_DESC_SEQNO		0x08	/* offset of SEQNO */
#define HMMGPU_DESC_ARG(i)		(0x10 + 8 * (i))	/* offset of ARGi */

/* Section 4.4: copy engine. */
#define HMMGPU_AP_SYSMEM		0
#define HMMGPU_AP_VRAM			1
#define HMMGPU_AP_PEER			2
#define HMMGPU_APERTURE(src, dst)	((src) | (dst) << 8)
#define HMMGPU_APERTURE_SRC_PEER_SHIFT	16	/* source peer index */
#define HMMGPU_COPY_LIST_MAX		4096
#define HMMGPU_COPY_LIST_DONE_ARG	5	/* entries copied, written back */

/* Section 4.5: contexts and page tables (version 1.2, CAP_MMU). */
#define HMMGPU_HW_VA_BITS		48
#define HMMGPU_PT_LEVELS		4
#define HMMGPU_PT_ENTRIES		512
#define HMMGPU_PT_SIZE			SZ_4K	/* a table, and a page */
#define HMMGPU_PT_PAGE_SHIFT		12
#define HMMGPU_PT_LEVEL_SHIFT		9	/* VA bits per level */
#define HMMGPU_HW_PDE_VALID		BIT_ULL(0)
#define HMMGPU_HW_PTE_VALID		BIT_ULL(0)
#define HMMGPU_HW_PTE_WRITE		BIT_ULL(1)
#define HMMGPU_HW_PTE_APERTURE	GENMASK_ULL(4, 3)
#define HMMGPU_HW_PTE_ADDR		GENMASK_ULL(51, 12)	/* also PDEs */
#define HMMGPU_HW_PTE_PEER		GENMASK_ULL(59, 52)

/* Section 4.7: compute engine. */
#define HMMGPU_LAUNCH_KERNEL_SHIFT	32	/* in ARG0, above the context */
#define HMMGPU_LAUNCH_RESULT_ARG	5	/* result or failing VA */

/* Section 4.8: replayable faults. */
#define HMMGPU_FAULT_CANCEL_PAGE	0	/* ARG2: launches stalled on ARG1 */
#define HMMGPU_FAULT_CANCEL_ALL		1	/* ARG2: every launch of ARG0 */
#define HMMGPU_FAULT_CANCEL_STALL	2	/* ARG2: the launch of stall ARG3 */
#define HMMGPU_FAULT_ACCESS_WRITE	1
#define HMMGPU_FAULT_TYPE_NOT_PRESENT	0
#define HMMGPU_FAULT_TYPE_WRITE_PROTECTED 1

/* Section 5.1: descriptor status. */
#define HMMGPU_ST_OK			0
#define HMMGPU_ST_BAD_OPCODE		1
#define HMMGPU_ST_BAD_FLAGS		2
#define HMMGPU_ST_BAD_ARG		3
#define HMMGPU_ST_BAD_ALIGN		4
#define HMMGPU_ST_BAD_ADDRESS		5
#define HMMGPU_ST_BAD_VRAM		6
#define HMMGPU_ST_BAD_PEER		7
#define HMMGPU_ST_OVERLAP		8
#define HMMGPU_ST_INJECTED		9
#define HMMGPU_ST_BAD_CONTEXT		10	/* version 1.2 */
#define HMMGPU_ST_BAD_PTE		11	/* version 1.2 */
#define HMMGPU_ST_MMU_FAULT		12	/* version 1.2 */

/**
 * struct hmmgpu_hw_fault - one entry of the fault buffer (section 4.8)
 * @va: the faulting page, 4 KiB aligned
 * @context: the launch's context
 * @access: HMMGPU_FAULT_ACCESS_WRITE or 0 (read)
 * @type: HMMGPU_FAULT_TYPE_*
 * @engine: the launch's queue
 * @timestamp: device clock in ns, monotonic
 * @stall: the stall the fault belongs to, for OP_FAULT_CANCEL mode 2
 */
struct hmmgpu_hw_fault {
	__le64 va;
	__le32 context;
	u8 access;
	u8 type;
	__le16 engine;
	__le64 timestamp;
	__le64 stall;
};

#define HMMGPU_FAULT_ENTRY_SIZE		32
static_assert(sizeof(struct hmmgpu_hw_fault) == HMMGPU_FAULT_ENTRY_SIZE);

/**
 * struct hmmgpu_hw_copy_entry - one block of an OP_COPY_LIST list
 * @src: source address in the source aperture
 * @dst: destination address in the destination aperture
 */
struct hmmgpu_hw_copy_entry {
	__le64 src;
	__le64 dst;
};

/**
 * struct hmmgpu_hw_desc - a ring descriptor as the device reads it
 * @opcode: HMMGPU_OP_*
 * @flags: HMMGPU_DESC_* bits
 * @status: written by the device on completion, 0 on success
 * @seqno: stored into the queue's FENCE on completion
 * @arg: opcode arguments, unused ones zero
 */
struct hmmgpu_hw_desc {
	__le16 opcode;
	__le16 flags;
	__le32 status;
	__le64 seqno;
	__le64 arg[6];
};

#define HMMGPU_DESC_SIZE		64
static_assert(sizeof(struct hmmgpu_hw_desc) == HMMGPU_DESC_SIZE);

#endif /* _HMMGPU_REGS_H */
