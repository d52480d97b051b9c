// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: backend for the emulated GPU, hmmgpu-emu behind ivshmem
 */

/**
 * DOC: Emulated GPU
 *
 * The emulated GPU is an ivshmem-doorbell PCI function (1af4:1110) whose
 * shared memory (BAR2) starts with the hmmgpu register page; emu/SPEC.md
 * describes it. Other ivshmem devices are left alone.
 *
 * Probe follows the bring-up sequence of the manual (section 7): identify
 * and validate every register before use (versions 1.1 and 1.2 are
 * known), map BAR0 (doorbells), enable exactly NUM_VECTORS MSI-X vectors
 * and bus mastering, allocate the fault buffer, request one interrupt per
 * queue and FAULT_VECTOR's, reset the device, program the fault buffer, and
 * hand the device to the core, which runs a NOP on queue 0 before
 * /dev/hmmgpuN appears. Everything acquired in probe is device-managed and
 * released in reverse order after remove, which first stops the device.
 *
 * Queue q is submitted to through its ring in BAR2: descriptors are written
 * into free slots, a write barrier orders them before the HEAD store, and
 * doorbell vector q tells the device. MSI-X vector q signals completions of
 * flagged descriptors to the core. A halted device is seen in STATUS; a
 * device whose HEARTBEAT stands still is lost.
 *
 * A device with CAP_COPY (version 1.1) migrates: a copy command becomes
 * one OP_COPY_LIST descriptor whose list of {source, destination} page
 * blocks lives in a DMA-coherent buffer, with the system pages mapped with
 * dma_map_page(). When the descriptor fails, ARG5 (read back from the ring
 * slot, which the driver owns again once the job has completed) tells how
 * many pages were copied. When a copy's outcome is unknown (a hung or lost
 * device), its list, its DMA mappings and (when the device writes them) its
 * system pages are deliberately leaked, so that a device that wakes up
 * again cannot write into memory the kernel has reused.
 *
 * Devices with the same PEER_GROUP (version 1.3) are peers: a copy from a
 * peer's VRAM (%HMMGPU_COPY_FROM_PEER) is an OP_COPY_LIST from AP_PEER to
 * AP_VRAM, with nothing DMA-mapped, and page tables may point into a peer's
 * VRAM. A version 1.2 device has no PEER_GROUP and no peers.
 *
 * A version 1.2 device with compute queues (CAP_MMU, CAP_COMPUTE and
 * CAP_FAULT) computes: the core's launch, bind, invalidate, replay and
 * cancel commands become OP_LAUNCH, OP_CTX_BIND, OP_TLB_INVALIDATE,
 * OP_FAULT_REPLAY and OP_FAULT_CANCEL descriptors; a launch's result (ARG5)
 * and the errno of a failed descriptor are read from its ring slot. The
 * page tables are in hmmgpu_emu_mmu.c. Faults arrive in the fault buffer, a
 * DMA-coherent ring of emu_fault_entries entries (a module parameter,
 * 1024 by default; a small one makes overflows easy to test) that the device
 * fills from FAULT_PUT; FAULT_VECTOR's interrupt wakes the core's fault
 * worker, which consumes them with hmmgpu_emu_fault_fetch(). The buffer is
 * freed only once a reset has taken it from the device (when the device
 * does not stop, the buffer is leaked like an abandoned copy).
 *
 * Locking: the core's queue lock serialises every use of a queue's ring
 * and of &hmmgpu_emu_queue.head; the interrupt handlers only read FENCE
 * or signal the core. The fault buffer's consumer state
 * (&hmmgpu_emu_fault_buf.get, &hmmgpu_emu_fault_buf.dropped) is used by
 * hmmgpu_emu_fault_fetch() only, which the core calls from one fault
 * worker at a time, and by probe before the device is registered.
 */

#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/iopoll.h>
#include <linux/kmemleak.h>
#include <linux/log2.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/seq_file.h>
#include <linux/slab.h>

#include "hmmgpu_drv.h"
#include "hmmgpu_emu.h"
#include "hmmgpu_regs.h"

#define HMMGPU_EMU_MAX_RING_ENTRIES	SZ_64K
#define HMMGPU_EMU_MIN_DMA_BITS		32
#define HMMGPU_EMU_MAX_CONTEXTS		4096	/* contexts used at most */
#define HMMGPU_EMU_VA_LIMIT		BIT_ULL(HMMGPU_HW_VA_BITS)

/**
 * struct hmmgpu_emu_ident - identification registers, read once at probe
 * @version: VERSION
 * @caps: CAPS
 * @vram_size: VRAM_SIZE
 * @num_queues: NUM_QUEUES
 * @num_vectors: NUM_VECTORS
 * @doorbell_peer: DOORBELL_PEER
 * @num_channels: NUM_CHANNELS
 * @shm_size: SHM_SIZE
 * @device_index: DEVICE_INDEX
 * @dma_bits: DMA_BITS
 * @num_compute: NUM_COMPUTE (version 1.2), else 0
 * @num_contexts: NUM_CONTEXTS (version 1.2), else 0
 * @fault_vector: FAULT_VECTOR (version 1.2), else 0
 * @peer_group: PEER_GROUP (version 1.3), else 0: no peers
 * @name: NAME
 */
struct hmmgpu_emu_ident {
	u32 version;
	u32 caps;
	u64 vram_size;
	u32 num_queues;
	u32 num_vectors;
	u32 doorbell_peer;
	u32 num_channels;
	u32 shm_size;
	u32 device_index;
	u32 dma_bits;
	u32 num_compute;
	u32 num_contexts;
	u32 fault_vector;
	u64 peer_group;
	char name[HMMGPU_REG_NAME_LEN];
};

/**
 * struct hmmgpu_emu_queue - one hardware queue
 * @emu: the device
 * @regs: the queue's register block in BAR2
 * @ring: the queue's descriptor ring in BAR2
 * @ring_offset: offset of @ring in BAR2
 * @entries: descriptors in @ring, a power of two
 * @head: descriptors written, free-running; stored into HEAD by a kick.
 *	Protected by the core's queue lock.
 * @seq_off: seqno minus ring index of every descriptor written (the core
 *	numbers the commands of a queue consecutively); protected by the
 *	core's queue lock
 */
struct hmmgpu_emu_queue {
	struct hmmgpu_emu *emu;
	void __iomem *regs;
	void __iomem *ring;
	u32 ring_offset;
	u32 entries;
	u32 head;
	u64 seq_off;
};

/**
 * struct hmmgpu_emu_fault_buf - the replayable-fault buffer (SPEC 3.5)
 * @entries: entries of @ring, a power of two
 * @ring: @entries entries, DMA-coherent; NULL when the
 *	device does not compute
 * @dma: the guest physical address of @ring
 * @get: the entries consumed, free-running: what FAULT_GET was last set to
 * @dropped: FAULT_DROPPED when it was last read
 * @enabled: the device has been given @ring since its last reset, and may
 *	write into it
 */
struct hmmgpu_emu_fault_buf {
	u32 entries;
	struct hmmgpu_hw_fault *ring;
	dma_addr_t dma;
	u32 get;
	u32 dropped;
	bool enabled;
};

/**
 * struct hmmgpu_emu - one emulated GPU
 * @pdev: its PCI function
 * @hdev: its core device
 * @shm: BAR2, SHM_SIZE bytes: register page and rings
 * @ivshmem: BAR0, QEMU's ivshmem registers
 * @id: identification registers
 * @fault: the fault buffer
 * @stopped: hmmgpu_emu_stop() ran (remove or shutdown)
 * @num_queues: entries of @queues
 * @queues: the hardware queues
 */
struct hmmgpu_emu {
	struct pci_dev *pdev;
	struct hmmgpu_device *hdev;
	void __iomem *shm;
	void __iomem *ivshmem;
	struct hmmgpu_emu_ident id;
	struct hmmgpu_emu_fault_buf fault;
	bool stopped;
	unsigned int num_queues;
	struct hmmgpu_emu_queue queues[] __counted_by(num_queues);
};

/**
 * struct hmmgpu_emu_copy - the hardware side of a copy command
 * @list: the OP_COPY_LIST block list, DMA-coherent
 * @list_dma: its DMA address
 * @dma: per page, the DMA address of the system page
 * @slot: the ring slot of the descriptor
 */
struct hmmgpu_emu_copy {
	struct hmmgpu_hw_copy_entry *list;
	dma_addr_t list_dma;
	dma_addr_t *dma;
	u32 slot;
};

static const u16 hmmgpu_emu_opcodes[] = {
	[HMMGPU_CMD_NOP] = HMMGPU_OP_NOP,
	[HMMGPU_CMD_COPY] = HMMGPU_OP_COPY_LIST,
	[HMMGPU_CMD_LAUNCH] = HMMGPU_OP_LAUNCH,
	[HMMGPU_CMD_CTX_BIND] = HMMGPU_OP_CTX_BIND,
	[HMMGPU_CMD_TLB_INVALIDATE] = HMMGPU_OP_TLB_INVALIDATE,
	[HMMGPU_CMD_FAULT_REPLAY] = HMMGPU_OP_FAULT_REPLAY,
	[HMMGPU_CMD_FAULT_CANCEL] = HMMGPU_OP_FAULT_CANCEL,
};

static struct hmmgpu_emu_queue *to_emu_queue(struct hmmgpu_queue *q)
{
	return q->priv;
}

static void hmmgpu_emu_doorbell(struct hmmgpu_emu *emu, u32 vector)
{
	writel(emu->id.doorbell_peer << HMMGPU_DOORBELL_PEER_SHIFT | vector,
	       emu->ivshmem + HMMGPU_IVSHMEM_DOORBELL);
}

/* backend operations */

static unsigned int hmmgpu_emu_queue_space(struct hmmgpu_queue *q)
{
	struct hmmgpu_emu_queue *eq = to_emu_queue(q);
	u32 used = eq->head - readl(eq->regs + HMMGPU_QREG_TAIL);

	return used <= eq->entries ? eq->entries - used : 0;
}

/* The aperture word (section 4.4) of @copy. */
static u32 hmmgpu_emu_copy_aperture(const struct hmmgpu_copy *copy)
{
	switch (copy->dir) {
	case HMMGPU_COPY_TO_VRAM:
		return HMMGPU_APERTURE(HMMGPU_AP_SYSMEM, HMMGPU_AP_VRAM);
	case HMMGPU_COPY_TO_SYSTEM:
		return HMMGPU_APERTURE(HMMGPU_AP_VRAM, HMMGPU_AP_SYSMEM);
	case HMMGPU_COPY_FROM_PEER:
		break;
	}
	return HMMGPU_APERTURE(HMMGPU_AP_PEER, HMMGPU_AP_VRAM) |
	       (u32)copy->peer << HMMGPU_APERTURE_SRC_PEER_SHIFT;
}

static void hmmgpu_emu_copy_desc(struct hmmgpu_hw_desc *desc,
				 struct hmmgpu_copy *copy, u32 slot)
{
	struct hmmgpu_emu_copy *ec = copy->priv;
	u32 aperture = hmmgpu_emu_copy_aperture(copy);

	desc->arg[0] = cpu_to_le64(ec->list_dma);
	desc->arg[1] = cpu_to_le64(copy->npages);
	desc->arg[2] = cpu_to_le64(PAGE_SIZE);
	desc->arg[3] = cpu_to_le64(aperture);
	ec->slot = slot;
}

static void hmmgpu_emu_launch_desc(struct hmmgpu_hw_desc *desc,
				   const struct hmmgpu_launch_args *launch)
{
	desc->arg[0] = cpu_to_le64(launch->ctx |
				   (u64)launch->kernel << HMMGPU_LAUNCH_KERNEL_SHIFT);
	desc->arg[1] = cpu_to_le64(launch->count);
	desc->arg[2] = cpu_to_le64(launch->va0);
	desc->arg[3] = cpu_to_le64(launch->va1);
	desc->arg[4] = cpu_to_le64(launch->scalar);
	/* ARG5 stays 0: the device writes the result there. */
}

static void hmmgpu_emu_inval_desc(struct hmmgpu_hw_desc *desc,
				  const struct hmmgpu_cmd *cmd)
{
	desc->arg[0] = cpu_to_le64(cmd->inval.ctx);
	if (!cmd->inval.end)
		return;	/* VA 0, length 0: the whole context */
	desc->arg[1] = cpu_to_le64(cmd->inval.start);
	desc->arg[2] = cpu_to_le64(cmd->inval.end - cmd->inval.start);
}

static void hmmgpu_emu_cancel_desc(struct hmmgpu_hw_desc *desc,
				   const struct hmmgpu_cmd *cmd)
{
	desc->arg[0] = cpu_to_le64(cmd->cancel.ctx);
	if (cmd->cancel.all) {
		desc->arg[2] = cpu_to_le64(HMMGPU_FAULT_CANCEL_ALL);
		return;
	}
	desc->arg[1] = cpu_to_le64(cmd->cancel.va);
	if (!cmd->cancel.stall) {
		desc->arg[2] = cpu_to_le64(HMMGPU_FAULT_CANCEL_PAGE);
		return;
	}
	desc->arg[2] = cpu_to_le64(HMMGPU_FAULT_CANCEL_STALL);
	desc->arg[3] = cpu_to_le64(cmd->cancel.stall);
}

/* The arguments of @cmd, written into @slot; unused ones stay zero. */
static void hmmgpu_emu_cmd_desc(struct hmmgpu_hw_desc *desc,
				const struct hmmgpu_cmd *cmd, u32 slot)
{
	switch (cmd->op) {
	case HMMGPU_CMD_NOP:
	case HMMGPU_CMD_FAULT_REPLAY:
		break;
	case HMMGPU_CMD_COPY:
		hmmgpu_emu_copy_desc(desc, cmd->copy, slot);
		break;
	case HMMGPU_CMD_LAUNCH:
		hmmgpu_emu_launch_desc(desc, cmd->launch);
		break;
	case HMMGPU_CMD_CTX_BIND:
		desc->arg[0] = cpu_to_le64(cmd->ctx.index);
		desc->arg[1] = cpu_to_le64(cmd->ctx.root);
		break;
	case HMMGPU_CMD_TLB_INVALIDATE:
		hmmgpu_emu_inval_desc(desc, cmd);
		break;
	case HMMGPU_CMD_FAULT_CANCEL:
		hmmgpu_emu_cancel_desc(desc, cmd);
		break;
	}
}

static void hmmgpu_emu_queue_write(struct hmmgpu_queue *q,
				   const struct hmmgpu_cmd *cmd)
{
	struct hmmgpu_emu_queue *eq = to_emu_queue(q);
	struct hmmgpu_hw_desc desc = {
		.opcode = cpu_to_le16(hmmgpu_emu_opcodes[cmd->op]),
		.flags = cpu_to_le16(cmd->flags & HMMGPU_CMD_IRQ ?
				     HMMGPU_DESC_IRQ : 0),
		.seqno = cpu_to_le64(cmd->seqno),
	};
	u32 slot = eq->head & (eq->entries - 1);

	lockdep_assert_held(&q->lock);
	hmmgpu_emu_cmd_desc(&desc, cmd, slot);
	memcpy_toio(eq->ring + slot * sizeof(desc), &desc, sizeof(desc));
	WRITE_ONCE(eq->seq_off, cmd->seqno - eq->head);
	eq->head++;
}

static void hmmgpu_emu_queue_kick(struct hmmgpu_queue *q)
{
	struct hmmgpu_emu_queue *eq = to_emu_queue(q);

	lockdep_assert_held(&q->lock);
	wmb();	/* descriptors are visible before HEAD (SPEC 4.1) */
	writel(eq->head, eq->regs + HMMGPU_QREG_HEAD);
	hmmgpu_emu_doorbell(eq->emu, q->index);
}

static u64 hmmgpu_emu_queue_fence(struct hmmgpu_queue *q)
{
	return readq(to_emu_queue(q)->regs + HMMGPU_QREG_FENCE);
}

/* Bytes of one element of a kernel (SPEC 4.7), = its VA alignment. */
static unsigned int hmmgpu_emu_kernel_elem_size(u32 kernel)
{
	switch (kernel) {
	case HMMGPU_KERNEL_COPY:
	case HMMGPU_KERNEL_CHECKSUM:
		return 1;
	case HMMGPU_KERNEL_SUM_U64:
		return 8;
	default:
		return 4;
	}
}

static bool hmmgpu_emu_va_range_bad(u64 va, u64 bytes)
{
	u64 end;

	return check_add_overflow(va, bytes, &end) || end > HMMGPU_EMU_VA_LIMIT;
}

/*
 * An OP_LAUNCH failed with ST_BAD_ADDRESS: either an operand's VA range
 * passes 2^48 (checked before any access: the caller's arguments), or a
 * page-table entry names memory outside guest RAM (a driver bug). The
 * first is the case exactly when a range of the descriptor passes 2^48.
 */
static bool hmmgpu_emu_launch_va_bad(void __iomem *desc)
{
	u64 arg0 = readq(desc + HMMGPU_DESC_ARG(0));
	u64 count = readq(desc + HMMGPU_DESC_ARG(1));
	u32 size = hmmgpu_emu_kernel_elem_size(arg0 >> HMMGPU_LAUNCH_KERNEL_SHIFT);
	u64 bytes;

	return check_mul_overflow(count, (u64)size, &bytes) ||
	       hmmgpu_emu_va_range_bad(readq(desc + HMMGPU_DESC_ARG(2)), bytes) ||
	       hmmgpu_emu_va_range_bad(readq(desc + HMMGPU_DESC_ARG(3)), bytes);
}

/**
 * hmmgpu_emu_status_errno() - the errno of a completed descriptor
 * @desc: the descriptor, in its ring slot
 * @status: its STATUS
 * @launch: it is an OP_LAUNCH
 *
 * Return: 0 for ST_OK; -EFAULT for a launch cancelled after a replayable
 * fault; -EINVAL for a descriptor the device rejected as malformed
 * (its opcode, flags, arguments, alignment, overlapping operands, its
 * context, a launch VA range past 2^48); -EIO for the rest (a page-table
 * entry, VRAM or peer the device refused, an injected failure, a status
 * this driver does not know).
 */
static int hmmgpu_emu_status_errno(void __iomem *desc, u32 status, bool launch)
{
	switch (status) {
	case HMMGPU_ST_OK:
		return 0;
	case HMMGPU_ST_MMU_FAULT:
		return -EFAULT;
	case HMMGPU_ST_BAD_OPCODE:
	case HMMGPU_ST_BAD_FLAGS:
	case HMMGPU_ST_BAD_ARG:
	case HMMGPU_ST_BAD_ALIGN:
	case HMMGPU_ST_OVERLAP:
	case HMMGPU_ST_BAD_CONTEXT:
		return -EINVAL;
	case HMMGPU_ST_BAD_ADDRESS:
		return launch && hmmgpu_emu_launch_va_bad(desc) ? -EINVAL : -EIO;
	default:
		return -EIO;
	}
}

/*
 * The ring slot still holds the completed descriptor @seqno (SPEC 4.3),
 * with the STATUS and ARG5 the device wrote.
 */
static int hmmgpu_emu_queue_status(struct hmmgpu_queue *q, u64 seqno,
				   u64 *value)
{
	struct hmmgpu_emu_queue *eq = to_emu_queue(q);
	u32 slot = (u32)(seqno - READ_ONCE(eq->seq_off)) & (eq->entries - 1);
	void __iomem *desc = eq->ring + slot * HMMGPU_DESC_SIZE;
	bool launch;

	if (WARN_ON_ONCE(readq(desc + HMMGPU_DESC_SEQNO) != seqno))
		return -EIO;
	launch = readw(desc + HMMGPU_DESC_OPCODE) == HMMGPU_OP_LAUNCH;
	if (value)
		*value = launch ?
			readq(desc + HMMGPU_DESC_ARG(HMMGPU_LAUNCH_RESULT_ARG)) : 0;
	return hmmgpu_emu_status_errno(desc, readl(desc + HMMGPU_DESC_STATUS),
				       launch);
}

static int hmmgpu_emu_check(struct hmmgpu_device *hdev)
{
	struct hmmgpu_emu *emu = hdev->priv;

	if (!(readl(emu->shm + HMMGPU_REG_STATUS) & HMMGPU_STATUS_HALTED))
		return 0;
	dev_err_ratelimited(&emu->pdev->dev, "device halted, ERROR %u\n",
			    readl(emu->shm + HMMGPU_REG_ERROR));
	return -EIO;
}

static bool hmmgpu_emu_alive(struct hmmgpu_device *hdev)
{
	struct hmmgpu_emu *emu = hdev->priv;
	void __iomem *hb = emu->shm + HMMGPU_REG_HEARTBEAT;
	u64 first = readq(hb);
	u64 beat;

	return !read_poll_timeout(readq, beat, beat != first,
				  10 * USEC_PER_MSEC,
				  3 * HMMGPU_HEARTBEAT_PERIOD_MS * USEC_PER_MSEC,
				  false, hb);
}

static enum dma_data_direction hmmgpu_emu_dma_dir(const struct hmmgpu_copy *copy)
{
	return copy->dir == HMMGPU_COPY_TO_VRAM ? DMA_TO_DEVICE :
						  DMA_FROM_DEVICE;
}

static void hmmgpu_emu_copy_unmap(struct device *dev, struct hmmgpu_copy *copy,
				  unsigned int n)
{
	struct hmmgpu_emu_copy *ec = copy->priv;

	if (copy->dir == HMMGPU_COPY_FROM_PEER)
		return;		/* VRAM to VRAM: nothing is DMA-mapped */
	while (n--)
		dma_unmap_page(dev, ec->dma[n], PAGE_SIZE,
			       hmmgpu_emu_dma_dir(copy));
}

static void hmmgpu_emu_copy_free(struct device *dev, struct hmmgpu_copy *copy)
{
	struct hmmgpu_emu_copy *ec = copy->priv;

	if (ec->list)
		dma_free_coherent(dev, copy->npages * sizeof(*ec->list),
				  ec->list, ec->list_dma);
	kvfree(ec->dma);
	kfree(ec);
	copy->priv = NULL;
}

static int hmmgpu_emu_copy_map(struct device *dev, struct hmmgpu_copy *copy)
{
	struct hmmgpu_emu_copy *ec = copy->priv;
	bool to_vram = copy->dir == HMMGPU_COPY_TO_VRAM;
	unsigned int i;

	if (copy->dir == HMMGPU_COPY_FROM_PEER) {
		for (i = 0; i < copy->npages; i++) {
			ec->list[i].src = cpu_to_le64(copy->peer_vram[i]);
			ec->list[i].dst = cpu_to_le64(copy->vram[i]);
		}
		return 0;
	}
	for (i = 0; i < copy->npages; i++) {
		u64 sys, vram = copy->vram[i];

		ec->dma[i] = dma_map_page(dev, copy->sys[i], 0, PAGE_SIZE,
					  hmmgpu_emu_dma_dir(copy));
		if (dma_mapping_error(dev, ec->dma[i])) {
			hmmgpu_emu_copy_unmap(dev, copy, i);
			return -ENOMEM;
		}
		sys = ec->dma[i];
		ec->list[i].src = cpu_to_le64(to_vram ? sys : vram);
		ec->list[i].dst = cpu_to_le64(to_vram ? vram : sys);
	}
	return 0;
}

static int hmmgpu_emu_copy_prepare(struct hmmgpu_queue *q,
				   struct hmmgpu_copy *copy)
{
	struct device *dev = &to_emu_queue(q)->emu->pdev->dev;
	struct hmmgpu_emu_copy *ec;
	int ret;

	if (WARN_ON_ONCE(copy->npages > HMMGPU_COPY_LIST_MAX))
		return -EINVAL;
	ec = kzalloc(sizeof(*ec), GFP_KERNEL);
	if (!ec)
		return -ENOMEM;
	copy->priv = ec;
	if (copy->dir != HMMGPU_COPY_FROM_PEER) {
		ec->dma = kvcalloc(copy->npages, sizeof(*ec->dma), GFP_KERNEL);
		if (!ec->dma) {
			ret = -ENOMEM;
			goto err_free;
		}
	}
	ec->list = dma_alloc_coherent(dev, copy->npages * sizeof(*ec->list),
				      &ec->list_dma, GFP_KERNEL);
	if (!ec->list) {
		ret = -ENOMEM;
		goto err_free;
	}
	ret = hmmgpu_emu_copy_map(dev, copy);
	if (ret)
		goto err_free;
	return 0;

err_free:
	hmmgpu_emu_copy_free(dev, copy);
	return ret;
}

/* Pages copied by a descriptor that completed, from its ring slot. */
static unsigned int hmmgpu_emu_copy_done(struct hmmgpu_queue *q,
					 struct hmmgpu_copy *copy)
{
	struct hmmgpu_emu_queue *eq = to_emu_queue(q);
	struct hmmgpu_emu_copy *ec = copy->priv;
	void __iomem *desc = eq->ring + ec->slot * HMMGPU_DESC_SIZE;
	u64 done;

	if (!readl(desc + HMMGPU_DESC_STATUS))
		return copy->npages;
	done = readq(desc + HMMGPU_DESC_ARG(HMMGPU_COPY_LIST_DONE_ARG));
	return min_t(u64, done, copy->npages);
}

/* The engine may still use the copy's memory: never give it back. */
static void hmmgpu_emu_copy_abandon(struct hmmgpu_queue *q,
				    struct hmmgpu_copy *copy)
{
	struct hmmgpu_emu_copy *ec = copy->priv;
	unsigned int i;

	if (copy->dir == HMMGPU_COPY_TO_SYSTEM)
		for (i = 0; i < copy->npages; i++)
			get_page(copy->sys[i]);
	/* Deliberately leaked, not forgotten. */
	kmemleak_not_leak(ec->dma);
	kmemleak_not_leak(ec);
	dev_err_ratelimited(&q->hdev->dev,
			    "queue %u: copy of %u pages abandoned to a failed device, its memory is leaked\n",
			    q->index, copy->npages);
	copy->priv = NULL;
}

static void hmmgpu_emu_copy_finish(struct hmmgpu_queue *q,
				   struct hmmgpu_copy *copy, int err)
{
	struct device *dev = &to_emu_queue(q)->emu->pdev->dev;

	if (err && err != -EIO && err != -ECANCELED) {
		copy->done = 0;
		hmmgpu_emu_copy_abandon(q, copy);
		return;
	}
	if (err == -ECANCELED)
		copy->done = 0;
	else
		copy->done = err ? hmmgpu_emu_copy_done(q, copy) : copy->npages;
	hmmgpu_emu_copy_unmap(dev, copy, copy->npages);
	hmmgpu_emu_copy_free(dev, copy);
}

/**
 * hmmgpu_emu_fault_decode() - check and convert one fault buffer entry
 * @emu: the device
 * @entry: the entry, owned by the driver (between FAULT_GET and FAULT_PUT)
 * @fault: out, the fault
 *
 * Return: true for a valid entry; false for one no launch of this driver
 * can have caused (a device bug, logged).
 */
static bool hmmgpu_emu_fault_decode(struct hmmgpu_emu *emu,
				    const struct hmmgpu_hw_fault *entry,
				    struct hmmgpu_fault *fault)
{
	struct hmmgpu_device *hdev = emu->hdev;
	struct hmmgpu_hw_fault hw = *entry;
	u64 va = le64_to_cpu(hw.va);
	u32 ctx = le32_to_cpu(hw.context);
	u16 engine = le16_to_cpu(hw.engine);

	if (!IS_ALIGNED(va, HMMGPU_PT_SIZE) || va >= HMMGPU_EMU_VA_LIMIT ||
	    ctx >= hdev->num_contexts || hw.access > HMMGPU_FAULT_ACCESS_WRITE ||
	    hw.type > HMMGPU_FAULT_TYPE_WRITE_PROTECTED ||
	    engine <= hdev->num_channels || engine >= hdev->num_queues) {
		dev_err_ratelimited(&emu->pdev->dev,
				    "invalid fault entry: VA %#llx, CONTEXT %u, ACCESS %u, TYPE %u, ENGINE %u\n",
				    va, ctx, hw.access, hw.type, engine);
		return false;
	}
	fault->va = va;
	fault->ctx = ctx;
	fault->write = hw.access == HMMGPU_FAULT_ACCESS_WRITE;
	fault->protection = hw.type == HMMGPU_FAULT_TYPE_WRITE_PROTECTED;
	fault->engine = engine;
	fault->timestamp = le64_to_cpu(hw.timestamp);
	fault->stall = le64_to_cpu(hw.stall);
	return true;
}

/*
 * Faults the device could not report since the last call: FAULT_DROPPED
 * moved, or FAULT_STATUS says so (until the next OP_FAULT_REPLAY clears it).
 */
static bool hmmgpu_emu_fault_lost(struct hmmgpu_emu *emu)
{
	u32 dropped = readl(emu->shm + HMMGPU_REG_FAULT_DROPPED);
	u32 status = readl(emu->shm + HMMGPU_REG_FAULT_STATUS);
	bool lost = dropped != emu->fault.dropped;

	atomic64_add(dropped - emu->fault.dropped,
		     &emu->hdev->stats.fault_dropped);
	emu->fault.dropped = dropped;
	return lost || status & (HMMGPU_FAULT_STATUS_OVERFLOW |
				 HMMGPU_FAULT_STATUS_BAD_CONFIG);
}

/*
 * Entries the driver owns, [get, FAULT_PUT); entries read after this
 * returns are those FAULT_PUT covered (acquire).
 */
static u32 hmmgpu_emu_fault_avail(struct hmmgpu_emu *emu)
{
	u32 put = readl(emu->shm + HMMGPU_REG_FAULT_PUT);
	u32 avail = put - emu->fault.get;

	dma_rmb();	/* FAULT_PUT before the entries it publishes */
	if (avail > emu->fault.entries) {
		dev_err_ratelimited(&emu->pdev->dev,
				    "invalid FAULT_PUT %u with FAULT_GET %u, ignored\n",
				    put, emu->fault.get);
		return 0;
	}
	return avail;
}

/**
 * hmmgpu_emu_fault_fetch() - consume reported faults from the fault buffer
 * @hdev: the device
 * @faults: out, up to @max faults
 * @max: room in @faults
 * @dropped: set to true when faults were lost since the last call (also
 *	invalid entries, which are skipped); left alone otherwise
 *
 * Implements &hmmgpu_backend_ops.fault_fetch: reads the entries from
 * FAULT_GET towards FAULT_PUT and gives their slots back to the device by
 * advancing FAULT_GET. Lost faults are reported again after a replay.
 *
 * Context: the core's fault worker, one call at a time (the consumer state
 * in &hmmgpu_emu.fault is not locked); does not sleep.
 * Return: the number of faults stored in @faults.
 */
static unsigned int hmmgpu_emu_fault_fetch(struct hmmgpu_device *hdev,
					   struct hmmgpu_fault *faults,
					   unsigned int max, bool *dropped)
{
	struct hmmgpu_emu *emu = hdev->priv;
	struct hmmgpu_emu_fault_buf *fb = &emu->fault;
	u32 avail, get = fb->get;
	unsigned int n = 0;

	if (!fb->ring)
		return 0;
	for (avail = hmmgpu_emu_fault_avail(emu); avail && n < max; avail--) {
		if (hmmgpu_emu_fault_decode(emu,
					    &fb->ring[get++ & (fb->entries - 1)],
					    &faults[n]))
			n++;
		else
			*dropped = true;
	}
	if (get != fb->get) {
		fb->get = get;
		dma_mb();	/* the entries are read before their slots go back */
		writel(get, emu->shm + HMMGPU_REG_FAULT_GET);
	}
	if (hmmgpu_emu_fault_lost(emu))
		*dropped = true;
	return n;
}

/*
 * Implements &hmmgpu_backend_ops.debugfs_show: the registers of each queue
 * and of the fault buffer, beside what the driver last wrote or read.
 */
static void hmmgpu_emu_debugfs_show(struct hmmgpu_device *hdev,
				    struct seq_file *m)
{
	struct hmmgpu_emu *emu = hdev->priv;
	unsigned int i;

	seq_printf(m, "STATUS 0x%x ERROR 0x%x\n",
		   readl(emu->shm + HMMGPU_REG_STATUS),
		   readl(emu->shm + HMMGPU_REG_ERROR));
	for (i = 0; i < emu->num_queues; i++) {
		struct hmmgpu_emu_queue *eq = &emu->queues[i];

		seq_printf(m, "Q%u HEAD %u TAIL %u FENCE %llu ERRORS %u head %u\n",
			   i, readl(eq->regs + HMMGPU_QREG_HEAD),
			   readl(eq->regs + HMMGPU_QREG_TAIL),
			   readq(eq->regs + HMMGPU_QREG_FENCE),
			   readl(eq->regs + HMMGPU_QREG_ERRORS), eq->head);
	}
	if (!emu->fault.ring)
		return;
	seq_printf(m, "FAULT_BUF_ENTRIES %u FAULT_GET %u FAULT_PUT %u FAULT_DROPPED %u FAULT_STATUS 0x%x FAULT_STALLED 0x%x get %u dropped %u\n",
		   readl(emu->shm + HMMGPU_REG_FAULT_BUF_ENTRIES),
		   readl(emu->shm + HMMGPU_REG_FAULT_GET),
		   readl(emu->shm + HMMGPU_REG_FAULT_PUT),
		   readl(emu->shm + HMMGPU_REG_FAULT_DROPPED),
		   readl(emu->shm + HMMGPU_REG_FAULT_STATUS),
		   readl(emu->shm + HMMGPU_REG_FAULT_STALLED),
		   emu->fault.get, emu->fault.dropped);
}

static const struct hmmgpu_backend_ops hmmgpu_emu_ops = {
	.name = "emu",
	.type = HMMGPU_BACKEND_EMU,
	.queue_space = hmmgpu_emu_queue_space,
	.queue_write = hmmgpu_emu_queue_write,
	.queue_kick = hmmgpu_emu_queue_kick,
	.queue_fence = hmmgpu_emu_queue_fence,
	.queue_status = hmmgpu_emu_queue_status,
	.check = hmmgpu_emu_check,
	.alive = hmmgpu_emu_alive,
	.copy_prepare = hmmgpu_emu_copy_prepare,
	.copy_finish = hmmgpu_emu_copy_finish,
	.mmu_alloc = hmmgpu_emu_mmu_alloc,
	.mmu_free = hmmgpu_emu_mmu_free,
	.mmu_prepare = hmmgpu_emu_mmu_prepare,
	.mmu_map = hmmgpu_emu_mmu_map,
	.mmu_unmap = hmmgpu_emu_mmu_unmap,
	.mmu_query = hmmgpu_emu_mmu_query,
	.fault_fetch = hmmgpu_emu_fault_fetch,
	.debugfs_show = hmmgpu_emu_debugfs_show,
};

static irqreturn_t hmmgpu_emu_irq(int irq, void *data)
{
	hmmgpu_queue_signal(data);
	return IRQ_HANDLED;
}

static irqreturn_t hmmgpu_emu_fault_irq(int irq, void *data)
{
	struct hmmgpu_emu *emu = data;

	hmmgpu_fault_signal(emu->hdev);
	return IRQ_HANDLED;
}

/* identification */

static void __iomem *hmmgpu_emu_map_regpage(struct pci_dev *pdev)
{
	int ret;

	if (!(pci_resource_flags(pdev, HMMGPU_BAR_SHM) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, HMMGPU_BAR_SHM) < HMMGPU_REG_PAGE_SIZE) {
		pci_info(pdev, "no shared memory in BAR2, not an hmmgpu device\n");
		return IOMEM_ERR_PTR(-ENODEV);
	}
	ret = pcim_request_region(pdev, HMMGPU_BAR_SHM, KBUILD_MODNAME);
	if (ret)
		return IOMEM_ERR_PTR(ret);
	return pcim_iomap_range(pdev, HMMGPU_BAR_SHM, 0, HMMGPU_REG_PAGE_SIZE);
}

static void hmmgpu_emu_read_ident(struct hmmgpu_emu_ident *id,
				  void __iomem *regs)
{
	id->caps = readl(regs + HMMGPU_REG_CAPS);
	id->vram_size = readq(regs + HMMGPU_REG_VRAM_SIZE);
	id->num_queues = readl(regs + HMMGPU_REG_NUM_QUEUES);
	id->num_vectors = readl(regs + HMMGPU_REG_NUM_VECTORS);
	id->doorbell_peer = readl(regs + HMMGPU_REG_DOORBELL_PEER);
	id->num_channels = readl(regs + HMMGPU_REG_NUM_CHANNELS);
	id->shm_size = readl(regs + HMMGPU_REG_SHM_SIZE);
	id->device_index = readl(regs + HMMGPU_REG_DEVICE_INDEX);
	id->dma_bits = readl(regs + HMMGPU_REG_DMA_BITS);
	memcpy_fromio(id->name, regs + HMMGPU_REG_NAME, sizeof(id->name));
	if (HMMGPU_VERSION_MINOR(id->version) < HMMGPU_HW_MINOR_MMU) {
		/* Version 1.1: no MMU, compute queues or fault vector. */
		id->caps &= HMMGPU_HW_CAP_NOP | HMMGPU_HW_CAP_WRITE64 |
			    HMMGPU_HW_CAP_COPY;
		return;
	}
	id->num_compute = readl(regs + HMMGPU_REG_NUM_COMPUTE);
	id->num_contexts = readl(regs + HMMGPU_REG_NUM_CONTEXTS);
	id->fault_vector = readl(regs + HMMGPU_REG_FAULT_VECTOR);
	if (HMMGPU_VERSION_MINOR(id->version) >= HMMGPU_HW_MINOR_PEER_GROUP)
		id->peer_group = readq(regs + HMMGPU_REG_PEER_GROUP);
}

/* Return: 0 for an hmmgpu device of a known version, else -ENODEV. */
static int hmmgpu_emu_identify(struct pci_dev *pdev, void __iomem *regs,
			       struct hmmgpu_emu_ident *id)
{
	u8 sig[HMMGPU_SIGNATURE_LEN];

	memcpy_fromio(sig, regs + HMMGPU_REG_SIGNATURE, sizeof(sig));
	if (memcmp(sig, HMMGPU_SIGNATURE, sizeof(sig))) {
		pci_info(pdev, "no hmmgpu signature in BAR2, not an hmmgpu device\n");
		return -ENODEV;
	}

	id->version = readl(regs + HMMGPU_REG_VERSION);
	if (HMMGPU_VERSION_MAJOR(id->version) != HMMGPU_HW_MAJOR ||
	    HMMGPU_VERSION_MINOR(id->version) < HMMGPU_HW_MIN_MINOR) {
		pci_info(pdev, "hmmgpu hardware version %u.%u, driver supports %u.%u and later %u.x\n",
			 HMMGPU_VERSION_MAJOR(id->version),
			 HMMGPU_VERSION_MINOR(id->version), HMMGPU_HW_MAJOR,
			 HMMGPU_HW_MIN_MINOR, HMMGPU_HW_MAJOR);
		return -ENODEV;
	}

	hmmgpu_emu_read_ident(id, regs);
	return 0;
}

/* A version 1.2 device raises FAULT_VECTOR, the vector after the queues'. */
static bool hmmgpu_emu_has_fault_vector(const struct hmmgpu_emu_ident *id)
{
	return HMMGPU_VERSION_MINOR(id->version) >= HMMGPU_HW_MINOR_MMU;
}

static int hmmgpu_emu_check_queues(struct pci_dev *pdev,
				   const struct hmmgpu_emu_ident *id)
{
	u32 need = id->num_queues + hmmgpu_emu_has_fault_vector(id);
	int msix = pci_msix_vec_count(pdev);

	if (!id->num_queues || id->num_queues > HMMGPU_HW_MAX_QUEUES ||
	    id->num_queues != 1 + (u64)id->num_channels + id->num_compute) {
		pci_err(pdev, "invalid NUM_QUEUES %u with NUM_CHANNELS %u and NUM_COMPUTE %u\n",
			id->num_queues, id->num_channels, id->num_compute);
		return -EIO;
	}
	if (id->num_vectors < need) {
		pci_err(pdev, "NUM_VECTORS %u is less than the %u vectors of NUM_QUEUES %u%s\n",
			id->num_vectors, need, id->num_queues,
			hmmgpu_emu_has_fault_vector(id) ? " and FAULT_VECTOR" : "");
		return -EIO;
	}
	if (hmmgpu_emu_has_fault_vector(id) &&
	    id->fault_vector != id->num_queues) {
		pci_err(pdev, "invalid FAULT_VECTOR %u with NUM_QUEUES %u\n",
			id->fault_vector, id->num_queues);
		return -EIO;
	}
	if (msix < 0 || (u32)msix < id->num_vectors) {
		pci_err(pdev, "device needs %u MSI-X vectors, the function has %d: QEMU's vectors= must match\n",
			id->num_vectors, msix);
		return -EIO;
	}
	if (id->doorbell_peer > HMMGPU_DOORBELL_PEER_MAX) {
		pci_err(pdev, "invalid DOORBELL_PEER %u\n", id->doorbell_peer);
		return -EIO;
	}
	return 0;
}

static int hmmgpu_emu_check_memory(struct pci_dev *pdev,
				   const struct hmmgpu_emu_ident *id)
{
	if (!is_power_of_2(id->shm_size) ||
	    id->shm_size < HMMGPU_REG_PAGE_SIZE ||
	    id->shm_size > pci_resource_len(pdev, HMMGPU_BAR_SHM)) {
		pci_err(pdev, "invalid SHM_SIZE %#x for a BAR2 of %#llx bytes\n",
			id->shm_size,
			(u64)pci_resource_len(pdev, HMMGPU_BAR_SHM));
		return -EIO;
	}
	if (!id->vram_size || !IS_ALIGNED(id->vram_size, HMMGPU_VRAM_ALIGN)) {
		pci_err(pdev, "invalid VRAM_SIZE %#llx\n", id->vram_size);
		return -EIO;
	}
	if (id->dma_bits < HMMGPU_EMU_MIN_DMA_BITS || id->dma_bits > 64) {
		pci_err(pdev, "invalid DMA_BITS %u\n", id->dma_bits);
		return -EIO;
	}
	return 0;
}

static int hmmgpu_emu_check_ident(struct pci_dev *pdev,
				  const struct hmmgpu_emu_ident *id)
{
	int ret;

	if (!(id->caps & HMMGPU_HW_CAP_NOP)) {
		pci_err(pdev, "CAPS %#x lacks CAP_NOP\n", id->caps);
		return -EIO;
	}
	if (!memchr(id->name, 0, sizeof(id->name))) {
		pci_err(pdev, "NAME is not NUL-terminated\n");
		return -EIO;
	}
	if ((id->caps & HMMGPU_HW_CAP_MMU) && !id->num_contexts) {
		pci_err(pdev, "CAPS %#x has CAP_MMU, but NUM_CONTEXTS is 0\n",
			id->caps);
		return -EIO;
	}
	ret = hmmgpu_emu_check_queues(pdev, id);
	if (ret)
		return ret;
	return hmmgpu_emu_check_memory(pdev, id);
}

/**
 * hmmgpu_emu_get_ident() - decide whether a PCI function is ours
 * @pdev: an enabled ivshmem function
 * @id: out, its validated identification registers
 *
 * Return: 0 for a usable hmmgpu device; -ENODEV when the function is not
 * an hmmgpu device (one informational line is logged); -EIO when it is one
 * with inconsistent registers; other errors of the PCI core.
 */
static int hmmgpu_emu_get_ident(struct pci_dev *pdev,
				struct hmmgpu_emu_ident *id)
{
	void __iomem *regs;
	int ret;

	regs = hmmgpu_emu_map_regpage(pdev);
	if (IS_ERR(regs))
		return PTR_ERR(regs);
	ret = hmmgpu_emu_identify(pdev, regs, id);
	if (!ret)
		ret = hmmgpu_emu_check_ident(pdev, id);
	pcim_iounmap(pdev, regs);
	return ret;
}

/* set-up */

static int hmmgpu_emu_setup_queue(struct hmmgpu_emu *emu, unsigned int i)
{
	struct hmmgpu_emu_queue *eq = &emu->queues[i];
	void __iomem *regs = emu->shm + HMMGPU_REG_QUEUE(i);
	u32 offset = readl(regs + HMMGPU_QREG_RING_OFFSET);
	u32 entries = readl(regs + HMMGPU_QREG_RING_ENTRIES);
	u32 vector = readl(regs + HMMGPU_QREG_VECTOR);
	u64 end = (u64)offset + (u64)entries * HMMGPU_DESC_SIZE;

	if (!is_power_of_2(entries) || entries > HMMGPU_EMU_MAX_RING_ENTRIES ||
	    !IS_ALIGNED(offset, HMMGPU_RING_ALIGN) ||
	    offset < HMMGPU_REG_PAGE_SIZE || end > emu->id.shm_size ||
	    vector != i) {
		pci_err(emu->pdev, "queue %u: invalid RING_OFFSET %#x, RING_ENTRIES %u or VECTOR %u\n",
			i, offset, entries, vector);
		return -EIO;
	}

	eq->emu = emu;
	eq->regs = regs;
	eq->ring = emu->shm + offset;
	eq->ring_offset = offset;
	eq->entries = entries;
	return 0;
}

static bool hmmgpu_emu_rings_overlap(const struct hmmgpu_emu_queue *a,
				     const struct hmmgpu_emu_queue *b)
{
	u64 a_end = a->ring_offset + (u64)a->entries * HMMGPU_DESC_SIZE;
	u64 b_end = b->ring_offset + (u64)b->entries * HMMGPU_DESC_SIZE;

	return a->ring_offset < b_end && b->ring_offset < a_end;
}

static int hmmgpu_emu_setup_queues(struct hmmgpu_emu *emu)
{
	unsigned int i, j;
	int ret;

	for (i = 0; i < emu->num_queues; i++) {
		ret = hmmgpu_emu_setup_queue(emu, i);
		if (ret)
			return ret;
		for (j = 0; j < i; j++) {
			if (hmmgpu_emu_rings_overlap(&emu->queues[i],
						     &emu->queues[j])) {
				pci_err(emu->pdev, "rings of queues %u and %u overlap\n",
					j, i);
				return -EIO;
			}
		}
	}
	return 0;
}

static int hmmgpu_emu_map(struct hmmgpu_emu *emu)
{
	struct pci_dev *pdev = emu->pdev;
	int ret;

	emu->shm = pcim_iomap_range(pdev, HMMGPU_BAR_SHM, 0, emu->id.shm_size);
	if (IS_ERR(emu->shm))
		return PTR_ERR(emu->shm);

	if (pci_resource_len(pdev, HMMGPU_BAR_IVSHMEM) < HMMGPU_IVSHMEM_SIZE) {
		pci_err(pdev, "BAR0 is too small for the ivshmem registers\n");
		return -EIO;
	}
	ret = pcim_request_region(pdev, HMMGPU_BAR_IVSHMEM, KBUILD_MODNAME);
	if (ret)
		return ret;
	emu->ivshmem = pcim_iomap_range(pdev, HMMGPU_BAR_IVSHMEM, 0,
					HMMGPU_IVSHMEM_SIZE);
	if (IS_ERR(emu->ivshmem))
		return PTR_ERR(emu->ivshmem);

	return hmmgpu_emu_setup_queues(emu);
}

static int hmmgpu_emu_setup_pci(struct hmmgpu_emu *emu)
{
	struct pci_dev *pdev = emu->pdev;
	unsigned int nvec = emu->id.num_vectors;
	int ret;

	/* No IOMMU in the guest: DMA addresses are guest physical. */
	ret = dma_set_mask_and_coherent(&pdev->dev,
					DMA_BIT_MASK(emu->id.dma_bits));
	if (ret) {
		pci_err(pdev, "cannot use %u-bit DMA\n", emu->id.dma_bits);
		return ret;
	}

	ret = pci_alloc_irq_vectors(pdev, nvec, nvec, PCI_IRQ_MSIX);
	if (ret < 0) {
		pci_err(pdev, "cannot enable %u MSI-X vectors: %d\n", nvec, ret);
		return ret;
	}

	/* Without bus mastering QEMU drops MSI-X messages silently. */
	pci_set_master(pdev);
	return 0;
}

static void hmmgpu_emu_put_device(void *hdev)
{
	hmmgpu_device_put(hdev);
}

/* The device runs launches on its compute queues, and reports faults. */
static bool hmmgpu_emu_computes(const struct hmmgpu_emu_ident *id)
{
	u32 need = HMMGPU_HW_CAP_MMU | HMMGPU_HW_CAP_COMPUTE |
		   HMMGPU_HW_CAP_FAULT;

	return (id->caps & need) == need && id->num_compute;
}

static int hmmgpu_emu_create(struct hmmgpu_emu *emu)
{
	struct hmmgpu_device *hdev;
	unsigned int i;
	int ret;

	hdev = hmmgpu_device_alloc(&emu->pdev->dev, &hmmgpu_emu_ops,
				   emu->id.num_channels, emu->id.num_compute);
	if (IS_ERR(hdev))
		return PTR_ERR(hdev);
	/* Registered before the interrupts, so put after they are freed. */
	ret = devm_add_action_or_reset(&emu->pdev->dev, hmmgpu_emu_put_device,
				       hdev);
	if (ret)
		return ret;

	emu->hdev = hdev;
	hdev->priv = emu;
	strscpy(hdev->name, emu->id.name);
	hdev->hw_version = emu->id.version;
	hdev->caps = HMMGPU_CAP_NOP;
	if (emu->id.caps & HMMGPU_HW_CAP_COPY)
		hdev->caps |= HMMGPU_CAP_MIGRATE;
	if (hmmgpu_emu_computes(&emu->id)) {
		hdev->caps |= HMMGPU_CAP_COMPUTE;
		hdev->num_contexts = min(emu->id.num_contexts,
					 HMMGPU_EMU_MAX_CONTEXTS);
	}
	hdev->peer_index = emu->id.device_index;
	hdev->peer_group = emu->id.peer_group;
	hdev->vram_size = emu->id.vram_size;
	for (i = 0; i < hdev->num_queues; i++) {
		hdev->queues[i].priv = &emu->queues[i];
		hdev->queues[i].entries = emu->queues[i].entries;
	}
	return 0;
}

static int hmmgpu_emu_request_fault_irq(struct hmmgpu_emu *emu)
{
	struct device *dev = &emu->pdev->dev;
	const char *name;
	int irq;

	if (!emu->fault.ring)
		return 0;
	irq = pci_irq_vector(emu->pdev, emu->id.fault_vector);
	if (irq < 0)
		return irq;
	name = devm_kasprintf(dev, GFP_KERNEL, "%s-fault",
			      dev_name(&emu->hdev->dev));
	if (!name)
		return -ENOMEM;
	return devm_request_irq(dev, irq, hmmgpu_emu_fault_irq, 0, name, emu);
}

static int hmmgpu_emu_request_irqs(struct hmmgpu_emu *emu)
{
	struct device *dev = &emu->pdev->dev;
	struct hmmgpu_queue *q;
	const char *name;
	unsigned int i;
	int irq, ret;

	for (i = 0; i < emu->num_queues; i++) {
		q = hmmgpu_queue_get(emu->hdev, i);
		irq = pci_irq_vector(emu->pdev, q->index);
		if (irq < 0)
			return irq;
		name = devm_kasprintf(dev, GFP_KERNEL, "%s-q%u",
				      dev_name(&emu->hdev->dev), q->index);
		if (!name)
			return -ENOMEM;
		ret = devm_request_irq(dev, irq, hmmgpu_emu_irq, 0, name, q);
		if (ret)
			return ret;
	}
	return hmmgpu_emu_request_fault_irq(emu);
}

/**
 * hmmgpu_emu_reset() - reset the device through a control request
 * @emu: the device, with BAR0 and BAR2 mapped
 *
 * Stops every queue, zeroes HEAD, TAIL, FENCE and ERRORS, and takes the
 * fault buffer from the device (SPEC 6).
 *
 * Context: process context, sleeps up to HMMGPU_CONTROL_TIMEOUT_MS.
 * Return: 0; -ETIMEDOUT when the device did not acknowledge; -EIO when it
 * is not ready afterwards.
 */
static int hmmgpu_emu_reset(struct hmmgpu_emu *emu)
{
	void __iomem *shm = emu->shm;
	u32 seq = readl(shm + HMMGPU_REG_CONTROL_SEQ) + 1;
	u32 ack, status;
	unsigned int i;
	int ret;

	writel(HMMGPU_CONTROL_RESET, shm + HMMGPU_REG_CONTROL);
	writel(seq, shm + HMMGPU_REG_CONTROL_SEQ);
	hmmgpu_emu_doorbell(emu, 0);
	ret = readl_poll_timeout(shm + HMMGPU_REG_CONTROL_ACK, ack, ack == seq,
				 USEC_PER_MSEC,
				 HMMGPU_CONTROL_TIMEOUT_MS * USEC_PER_MSEC);
	writel(0, shm + HMMGPU_REG_CONTROL);
	if (ret) {
		pci_err(emu->pdev, "reset not acknowledged within %u ms (CONTROL_ACK %u, CONTROL_SEQ %u); is hmmgpu-emu running?\n",
			HMMGPU_CONTROL_TIMEOUT_MS, ack, seq);
		return -ETIMEDOUT;
	}

	status = readl(shm + HMMGPU_REG_STATUS);
	if ((status & (HMMGPU_STATUS_READY | HMMGPU_STATUS_HALTED)) !=
	    HMMGPU_STATUS_READY) {
		pci_err(emu->pdev, "not ready after reset: STATUS %#x, ERROR %u\n",
			status, readl(shm + HMMGPU_REG_ERROR));
		return -EIO;
	}

	for (i = 0; i < emu->num_queues; i++)
		emu->queues[i].head = 0;
	emu->fault.enabled = false;
	return 0;
}

/**
 * hmmgpu_emu_stop() - take the fault buffer from the device and reset it
 * @emu: the device, with BAR0 and BAR2 mapped
 *
 * Disables the fault buffer, dropping the faults not yet fetched
 * (FAULT_BUF_ENTRIES = 0: the device checks it before each report), and
 * resets the device, which waits for its engines and clears the fault
 * buffer registers (SPEC 6). Once the reset has succeeded the device
 * writes no memory of the driver's any more.
 *
 * Context: process context, sleeps up to HMMGPU_CONTROL_TIMEOUT_MS.
 * Return: 0, or the error of hmmgpu_emu_reset().
 */
static int hmmgpu_emu_stop(struct hmmgpu_emu *emu)
{
	void __iomem *shm = emu->shm;

	emu->stopped = true;
	if (emu->fault.enabled) {
		/* Disabled with nothing pending (SPEC 3.5): drop the rest. */
		writel(readl(shm + HMMGPU_REG_FAULT_PUT),
		       shm + HMMGPU_REG_FAULT_GET);
		writel(0, shm + HMMGPU_REG_FAULT_BUF_ENTRIES);
	}
	return hmmgpu_emu_reset(emu);
}

/* devm action: free the fault buffer, unless the device may still use it. */
static void hmmgpu_emu_fault_release(void *data)
{
	struct hmmgpu_emu *emu = data;
	struct hmmgpu_emu_fault_buf *fb = &emu->fault;

	/* Probe failed after enabling the buffer: remove did not stop it. */
	if (fb->enabled && !emu->stopped)
		hmmgpu_emu_stop(emu);
	if (fb->enabled) {
		pci_err(emu->pdev, "fault buffer abandoned to a device that did not stop, its memory is leaked\n");
		return;
	}
	dma_free_coherent(&emu->pdev->dev, fb->entries * sizeof(*fb->ring),
			  fb->ring, fb->dma);
	fb->ring = NULL;
}

/**
 * hmmgpu_emu_fault_init() - allocate the fault buffer of a computing device
 * @emu: the device, with its core device created
 *
 * The buffer is zeroed, physically contiguous and aligned to its size
 * (dma_alloc_coherent()), as SPEC 7 step 4 asks. It is given to the device
 * after each reset, by hmmgpu_emu_fault_enable().
 *
 * Context: process context, may sleep.
 * Return: 0 or -ENOMEM.
 */
static int hmmgpu_emu_fault_init(struct hmmgpu_emu *emu)
{
	struct hmmgpu_emu_fault_buf *fb = &emu->fault;
	struct device *dev = &emu->pdev->dev;

	BUILD_BUG_ON(HMMGPU_EMU_FAULT_ENTRIES_MAX > HMMGPU_FAULT_BUF_MAX_ENTRIES);
	if (!(emu->hdev->caps & HMMGPU_CAP_COMPUTE))
		return 0;	/* only launches fault */
	/* A power of two up to the maximum, checked at module load. */
	fb->entries = hmmgpu_emu_fault_entries;
	fb->ring = dma_alloc_coherent(dev, fb->entries * sizeof(*fb->ring),
				      &fb->dma, GFP_KERNEL);
	if (!fb->ring)
		return -ENOMEM;
	return devm_add_action_or_reset(dev, hmmgpu_emu_fault_release, emu);
}

/**
 * hmmgpu_emu_fault_enable() - give the fault buffer to the device
 * @emu: the device, just reset
 *
 * Follows SPEC 7 step 4: the address, FAULT_GET = FAULT_PUT, then after a
 * write barrier the size, which enables the buffer. Nothing is pending
 * after a reset, so the consumer state starts from the registers.
 */
static void hmmgpu_emu_fault_enable(struct hmmgpu_emu *emu)
{
	struct hmmgpu_emu_fault_buf *fb = &emu->fault;
	void __iomem *shm = emu->shm;

	if (!fb->ring)
		return;
	fb->get = readl(shm + HMMGPU_REG_FAULT_PUT);
	fb->dropped = readl(shm + HMMGPU_REG_FAULT_DROPPED);
	writeq(fb->dma, shm + HMMGPU_REG_FAULT_BUF_ADDR);
	writel(fb->get, shm + HMMGPU_REG_FAULT_GET);
	wmb();	/* the address before the size that enables it (SPEC 3.5) */
	writel(fb->entries, shm + HMMGPU_REG_FAULT_BUF_ENTRIES);
	fb->enabled = true;
}

static int hmmgpu_emu_probe(struct pci_dev *pdev,
			    const struct pci_device_id *ent)
{
	struct hmmgpu_emu_ident id;
	struct hmmgpu_emu *emu;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = hmmgpu_emu_get_ident(pdev, &id);
	if (ret)
		return ret;

	emu = devm_kzalloc(&pdev->dev, struct_size(emu, queues, id.num_queues),
			   GFP_KERNEL);
	if (!emu)
		return -ENOMEM;
	emu->num_queues = id.num_queues;
	emu->pdev = pdev;
	emu->id = id;

	ret = hmmgpu_emu_map(emu);
	if (ret)
		return ret;
	ret = hmmgpu_emu_setup_pci(emu);
	if (ret)
		return ret;
	ret = hmmgpu_emu_create(emu);
	if (ret)
		return ret;
	/* Freed after the interrupts, before the core device is put. */
	ret = hmmgpu_emu_fault_init(emu);
	if (ret)
		return ret;
	ret = hmmgpu_emu_request_irqs(emu);
	if (ret)
		return ret;
	ret = hmmgpu_emu_reset(emu);
	if (ret)
		return ret;
	hmmgpu_emu_fault_enable(emu);
	ret = hmmgpu_device_register(emu->hdev);
	if (ret)
		return ret;

	pci_set_drvdata(pdev, emu);
	return 0;
}

static void hmmgpu_emu_remove(struct pci_dev *pdev)
{
	struct hmmgpu_emu *emu = pci_get_drvdata(pdev);

	hmmgpu_device_unregister(emu->hdev);
	/*
	 * Stop the engines and take the fault buffer back before the
	 * interrupts, the buffer and the device go away (devm, after this).
	 */
	hmmgpu_emu_stop(emu);
}

static void hmmgpu_emu_shutdown(struct pci_dev *pdev)
{
	struct hmmgpu_emu *emu = pci_get_drvdata(pdev);

	if (emu)
		hmmgpu_emu_stop(emu);
}

static const struct pci_device_id hmmgpu_emu_ids[] = {
	{ PCI_DEVICE(HMMGPU_EMU_VENDOR_ID, HMMGPU_EMU_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, hmmgpu_emu_ids);

static struct pci_driver hmmgpu_emu_driver = {
	.name = KBUILD_MODNAME,
	.id_table = hmmgpu_emu_ids,
	.probe = hmmgpu_emu_probe,
	.remove = hmmgpu_emu_remove,
	.shutdown = hmmgpu_emu_shutdown,
};

/**
 * hmmgpu_emu_init() - register the PCI driver
 *
 * Return: 0 or -errno.
 */
int hmmgpu_emu_init(void)
{
	return pci_register_driver(&hmmgpu_emu_driver);
}

/**
 * hmmgpu_emu_exit() - unregister the PCI driver, removing its devices
 */
void hmmgpu_emu_exit(void)
{
	pci_unregister_driver(&hmmgpu_emu_driver);
}
