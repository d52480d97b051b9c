/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmmgpu: internal interfaces of the hmmgpu driver
 *
 * The core (hmmgpu_device.c, hmmgpu_queue.c) knows devices, queues, jobs
 * and fences. A backend (hmmgpu_emu.c, hmmgpu_sysram.c) knows one kind of
 * hardware and reaches the core only through the functions declared here;
 * the core reaches a backend only through its struct hmmgpu_backend_ops.
 */
#ifndef _HMMGPU_DRV_H
#define _HMMGPU_DRV_H

#include <linux/atomic.h>
#include <linux/bitmap.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/memremap.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <uapi/hmmgpu.h>

#define HMMGPU_MAX_DEVICES	64
#define HMMGPU_MAX_QUEUES	32

/* VRAM is populated with struct pages in chunks of this size. */
#define HMMGPU_CHUNK_SIZE	SZ_2M
#define HMMGPU_CHUNK_PAGES	(HMMGPU_CHUNK_SIZE >> PAGE_SHIFT)
/* Device virtual addresses (= process addresses) are below 2^48. */
#define HMMGPU_VA_BITS		48
/* Each MMU notifier of a device address space covers an aligned region. */
#define HMMGPU_REGION_SHIFT	21
#define HMMGPU_REGION_SIZE	BIT(HMMGPU_REGION_SHIFT)
#define HMMGPU_REGION_PAGES	(HMMGPU_REGION_SIZE >> PAGE_SHIFT)
/* At most this many pages per copy command (one OP_COPY_LIST). */
#define HMMGPU_COPY_MAX_PAGES	4096
/* Nodes of the prefetcher's tree over a region, in heap order from 1. */
#define HMMGPU_PREFETCH_TREE	(2 * HMMGPU_REGION_PAGES)

struct dentry;
struct hmmgpu_device;
struct hmmgpu_queue;
struct hmmgpu_vram;
struct seq_file;

/**
 * enum hmmgpu_state - life cycle of a device, as shown in sysfs "state"
 * @HMMGPU_STATE_READY: executes commands
 * @HMMGPU_STATE_HALTED: stopped by a fatal error or hung; commands fail
 *	with -EIO, information queries still work
 * @HMMGPU_STATE_LOST: the hardware stopped responding; ioctls fail with
 *	-ENODEV
 * @HMMGPU_STATE_REMOVED: unbound from its hardware; ioctls fail with
 *	-ENODEV
 *
 * The state only moves forward, in the order of the values.
 */
enum hmmgpu_state {
	HMMGPU_STATE_READY,
	HMMGPU_STATE_HALTED,
	HMMGPU_STATE_LOST,
	HMMGPU_STATE_REMOVED,
};

/**
 * enum hmmgpu_cmd_op - backend-neutral command operations
 * @HMMGPU_CMD_NOP: completes without doing anything
 * @HMMGPU_CMD_COPY: copy the pages of &hmmgpu_cmd.copy
 * @HMMGPU_CMD_LAUNCH: run the kernel of &hmmgpu_cmd.launch (compute queues
 *	only); its result is read with &hmmgpu_backend_ops.queue_status
 * @HMMGPU_CMD_CTX_BIND: bind context &hmmgpu_cmd.ctx.index to the page
 *	table root &hmmgpu_cmd.ctx.root, or unbind it when the root is 0
 *	(queue 0 only); completes once no engine uses the old translations
 * @HMMGPU_CMD_TLB_INVALIDATE: drop the translations of
 *	&hmmgpu_cmd.inval (queue 0 only); completes once no engine uses them
 * @HMMGPU_CMD_FAULT_REPLAY: every launch stalled on a fault retries
 *	(queue 0 only)
 * @HMMGPU_CMD_FAULT_CANCEL: the stalled launches of &hmmgpu_cmd.cancel
 *	fail (queue 0 only)
 */
enum hmmgpu_cmd_op {
	HMMGPU_CMD_NOP,
	HMMGPU_CMD_COPY,
	HMMGPU_CMD_LAUNCH,
	HMMGPU_CMD_CTX_BIND,
	HMMGPU_CMD_TLB_INVALIDATE,
	HMMGPU_CMD_FAULT_REPLAY,
	HMMGPU_CMD_FAULT_CANCEL,
};

/**
 * struct hmmgpu_launch_args - a kernel launch as the hardware takes it
 * @ctx: context index
 * @kernel: enum hmmgpu_kernel (uapi)
 * @count: elements
 * @va0: address of operand x
 * @va1: address of operand y, or 0
 * @scalar: the scalar, or 0
 */
struct hmmgpu_launch_args {
	u32 ctx;
	u32 kernel;
	u64 count;
	u64 va0;
	u64 va1;
	u64 scalar;
};

/**
 * enum hmmgpu_aperture - where a device page table entry points
 * @HMMGPU_PTE_SYSMEM: a system page, by its DMA address
 * @HMMGPU_PTE_VRAM: a page of the device's own VRAM, by its offset
 * @HMMGPU_PTE_PEER: a page of a peer device's VRAM, by its offset
 */
enum hmmgpu_aperture {
	HMMGPU_PTE_SYSMEM,
	HMMGPU_PTE_VRAM,
	HMMGPU_PTE_PEER,
};

/**
 * struct hmmgpu_pte - a backend-neutral device mapping of one page
 * @aperture: enum hmmgpu_aperture
 * @write: the device may write the page
 * @peer: the peer's hardware index (&hmmgpu_device.peer_index) with
 *	%HMMGPU_PTE_PEER
 * @addr: DMA address or VRAM offset of the page
 */
struct hmmgpu_pte {
	u8 aperture;
	bool write;
	u16 peer;
	u64 addr;
};

/**
 * struct hmmgpu_fault - one replayable fault as the hardware reported it
 * @va: the faulting page
 * @ctx: context index
 * @write: the access was a write
 * @protection: the page was mapped, but read-only (else not mapped)
 * @engine: the queue of the faulting launch
 * @timestamp: device time in ns
 * @stall: which stall of the launch reported it (a launch stalls anew each
 *	time it faults after a replay), for %HMMGPU_CMD_FAULT_CANCEL; 0 when
 *	the hardware cannot tell
 */
struct hmmgpu_fault {
	u64 va;
	u32 ctx;
	bool write;
	bool protection;
	u16 engine;
	u64 timestamp;
	u64 stall;
};

/**
 * enum hmmgpu_copy_dir - direction of a copy
 * @HMMGPU_COPY_TO_VRAM: from the system pages to the VRAM offsets
 * @HMMGPU_COPY_TO_SYSTEM: from the VRAM offsets to the system pages
 * @HMMGPU_COPY_FROM_PEER: from offsets into a peer device's VRAM to the
 *	VRAM offsets (see hmmgpu_device_is_peer())
 */
enum hmmgpu_copy_dir {
	HMMGPU_COPY_TO_VRAM,
	HMMGPU_COPY_TO_SYSTEM,
	HMMGPU_COPY_FROM_PEER,
};

/**
 * struct hmmgpu_copy - a batch of page copies for one copy command
 * @dir: direction
 * @npages: pages, 1..%HMMGPU_COPY_MAX_PAGES
 * @sys: @npages system pages (not with %HMMGPU_COPY_FROM_PEER)
 * @vram: @npages page-aligned byte offsets into the device's own VRAM
 * @peer_vram: with %HMMGPU_COPY_FROM_PEER, @npages page-aligned byte
 *	offsets into the VRAM of the peer @peer, the sources
 * @peer: with %HMMGPU_COPY_FROM_PEER, the source's
 *	&hmmgpu_device.peer_index
 * @done: out, set by &hmmgpu_backend_ops.copy_finish: the pages
 *	[0, @done) were copied, the others were not
 * @priv: backend data from &hmmgpu_backend_ops.copy_prepare to
 *	&hmmgpu_backend_ops.copy_finish
 */
struct hmmgpu_copy {
	enum hmmgpu_copy_dir dir;
	unsigned int npages;
	struct page **sys;
	const u64 *vram;
	const u64 *peer_vram;
	u16 peer;
	unsigned int done;
	void *priv;
};

struct hmmgpu_copy_part;

/**
 * struct hmmgpu_copy_op - a copy in flight, from hmmgpu_device_copy_submit()
 *	to hmmgpu_device_copy_wait()
 * @hdev: the device copying
 * @parts: its share per channel
 * @nparts: entries of @parts
 * @npages: pages of the whole copy
 * @err: the submission failed as a whole (nothing was written)
 */
struct hmmgpu_copy_op {
	struct hmmgpu_device *hdev;
	struct hmmgpu_copy_part *parts;
	unsigned int nparts;
	unsigned int npages;
	int err;
};

/* struct hmmgpu_cmd.flags */
#define HMMGPU_CMD_IRQ		BIT(0)	/* signal the queue on completion */

/**
 * struct hmmgpu_cmd - one command for a queue, as the core builds it
 * @op: what to do
 * @flags: HMMGPU_CMD_* bits
 * @seqno: the queue's fence value once this command has completed;
 *	assigned by the core, strictly increasing per queue
 * @copy: for %HMMGPU_CMD_COPY, the copy, prepared by
 *	&hmmgpu_backend_ops.copy_prepare
 * @launch: for %HMMGPU_CMD_LAUNCH
 * @ctx: for %HMMGPU_CMD_CTX_BIND: @ctx.index, @ctx.root (from
 *	&hmmgpu_backend_ops.mmu_alloc, 0 to unbind)
 * @inval: for %HMMGPU_CMD_TLB_INVALIDATE: context @inval.ctx, pages
 *	[@inval.start, @inval.end); @inval.end = 0 for the whole context
 * @cancel: for %HMMGPU_CMD_FAULT_CANCEL: context @cancel.ctx, the launch
 *	still stalled on @cancel.stall (&hmmgpu_fault.stall) with page
 *	@cancel.va, or with @cancel.stall = 0 the launches stalled on that
 *	page, or all of the context's with @cancel.all
 */
struct hmmgpu_cmd {
	enum hmmgpu_cmd_op op;
	u32 flags;
	u64 seqno;
	union {
		struct hmmgpu_copy *copy;
		const struct hmmgpu_launch_args *launch;
		struct {
			u32 index;
			u64 root;
		} ctx;
		struct {
			u32 ctx;
			u64 start;
			u64 end;
		} inval;
		struct {
			u32 ctx;
			bool all;
			u64 va;
			u64 stall;
		} cancel;
	};
};

/**
 * struct hmmgpu_job - a batch of commands submitted together to one queue
 * @link: in &hmmgpu_queue.jobs from its first command until
 *	hmmgpu_job_end(), protected by &hmmgpu_queue.job_lock
 * @first_seqno: seqno of the first command
 * @last_seqno: seqno of the last command, the one the job waits for
 * @held_seqno: the job still has to read the results of its commands from
 *	this seqno on, and holds their ring slots (written under
 *	&hmmgpu_queue.job_lock)
 * @submit_time: when the job's first doorbell was rung
 * @complete_time: when the completion of @last_seqno was signalled
 * @err: the error of the first command of the job known to have failed
 * @value: the result word of the last command (queue_status)
 * @kicked: @submit_time is valid
 * @results_in_job: @err and @value are all its results (a job of
 *	hmmgpu_queue_submit()): once complete, another submitter waiting for
 *	ring space may read them and release its slots
 * @unbounded: its command may run for as long as it likes (a kernel
 *	launch, which may also stall on faults): while the engine executes
 *	it, the commands behind it are not timed out
 *
 * @held_seqno, @err and @value are written under &hmmgpu_queue.job_lock.
 */
struct hmmgpu_job {
	struct list_head link;
	u64 first_seqno;
	u64 last_seqno;
	u64 held_seqno;
	ktime_t submit_time;
	ktime_t complete_time;
	int err;
	u64 value;
	bool kicked;
	bool results_in_job;
	bool unbounded;
};

/**
 * struct hmmgpu_queue - an in-order command queue of a device
 * @hdev: the device
 * @index: queue number; 0 is the control queue, 1.. the copy channels
 * @priv: backend data for this queue
 * @entries: commands the queue's ring holds, set by the backend before
 *	hmmgpu_device_register()
 * @lock: serialises the writing of jobs into the ring, from a job's first
 *	command to its kick (protects the fields below it); completions are
 *	waited for without it
 * @last_seqno: seqno of the last command written
 * @space: commands the ring can take without waiting
 * @pending: commands written but not yet kicked
 * @job_lock: protects @jobs and the results of the jobs on it
 *	(&hmmgpu_job.held_seqno, .err, .value)
 * @jobs: the jobs holding ring slots, in seqno order
 * @irq_lock: protects @irq_fence and @irq_time; taken in hard IRQ context
 * @irq_fence: fence value seen by the last completion signal
 * @irq_time: when that signal arrived
 * @wq: waiters for @irq_fence or a change of the device state
 * @busy_ns: sum over the queue's completed copy jobs of the time from the
 *	first doorbell to the completion signal (updated under @lock, read
 *	without it)
 */
struct hmmgpu_queue {
	struct hmmgpu_device *hdev;
	unsigned int index;
	void *priv;
	unsigned int entries;

	struct mutex lock;		/* see above */
	u64 last_seqno;
	unsigned int space;
	unsigned int pending;

	spinlock_t job_lock;		/* see above */
	struct list_head jobs;

	spinlock_t irq_lock;		/* see above */
	u64 irq_fence;
	ktime_t irq_time;

	wait_queue_head_t wq;

	atomic64_t busy_ns;
};

/**
 * struct hmmgpu_stats - event counters of a device
 * @to_device_pages: pages migrated into the device's VRAM
 * @to_system_pages: pages migrated from the device's VRAM to system memory
 * @cpu_faults: calls of hmmgpu_migrate_to_ram() on the device's pages
 * @fault_around_pages: pages those calls moved besides the faulting page
 * @copy_batches: hmmgpu_device_copy_submit() calls
 * @copy_errors: pages that hmmgpu_device_copy_wait() reported not copied
 * @vram_alloc_failures: hmmgpu_vram_alloc_page() calls that returned NULL
 * @faults: device faults fetched from the hardware
 * @fault_replays: replays the fault worker submitted
 * @fault_cancels: faulting pages whose launches were cancelled
 * @evicted_chunks: chunks evicted to make room
 * @evicted_pages: pages those evictions moved to system memory
 * @fault_batches: batches of device faults serviced
 * @fault_duplicates: device faults on a page already reported in the batch
 * @prefetched_pages: pages the fault service moved to the VRAM and mapped
 *	besides the faulting ones (hmmgpu_policy.c)
 * @remote_mapped_pages: pages mapped in system memory or a peer's VRAM
 * @thrashing_events: pages found bouncing between the device and another
 *	processor
 * @peer_to_device_pages: pages moved into the VRAM from a peer's VRAM
 * @tlb_invalidates: %HMMGPU_CMD_TLB_INVALIDATE commands submitted
 * @fault_dropped: faults the hardware could not report, its fault buffer
 *	full (counted by the backend; they come back after a replay)
 *
 * Updated lock-free where the events happen and read by
 * hmmgpu_device_counters(); a migration counts on the device that owns the
 * VRAM page. The per-channel busy time is &hmmgpu_queue.busy_ns.
 */
struct hmmgpu_stats {
	atomic64_t to_device_pages;
	atomic64_t to_system_pages;
	atomic64_t cpu_faults;
	atomic64_t fault_around_pages;
	atomic64_t copy_batches;
	atomic64_t copy_errors;
	atomic64_t vram_alloc_failures;
	atomic64_t faults;
	atomic64_t fault_replays;
	atomic64_t fault_cancels;
	atomic64_t evicted_chunks;
	atomic64_t evicted_pages;
	atomic64_t fault_batches;
	atomic64_t fault_duplicates;
	atomic64_t prefetched_pages;
	atomic64_t remote_mapped_pages;
	atomic64_t thrashing_events;
	atomic64_t peer_to_device_pages;
	atomic64_t tlb_invalidates;
	atomic64_t fault_dropped;
};

/**
 * struct hmmgpu_backend_ops - what a backend provides to the core
 * @name: short backend name shown in sysfs "backend", e.g. "emu" (required)
 * @type: enum hmmgpu_backend value reported by GET_INFO (required)
 * @queue_space: return how many commands @q can accept now without
 *	overwriting commands the engine has not completed. Called with
 *	@q->lock held; may not sleep. (required)
 * @queue_write: write @cmd into the next free slot of @q without making it
 *	visible to the engine. The core guarantees a free slot (see
 *	@queue_space). Called with @q->lock held; may not sleep. (required)
 * @queue_kick: publish every command written since the last kick and
 *	notify the engine (a doorbell). Called with @q->lock held; may not
 *	sleep. (required)
 * @queue_fence: return the seqno of the last command @q has completed.
 *	Called in any context, including hard IRQ, with or without @q->lock.
 *	(required)
 * @queue_status: return 0 when the command of @q numbered @seqno
 *	completed without error, else an error: -EFAULT for a launch
 *	cancelled after a device page fault, -EINVAL for a command the
 *	hardware rejected as malformed, -EIO for any other failure. For a
 *	%HMMGPU_CMD_LAUNCH also store the hardware's result word (the
 *	kernel's result, or the failing address) in *@value when @value is
 *	not NULL. Called once the fence of @q has reached @seqno and before
 *	the core lets the command's ring slot be reused, with or without
 *	@q->lock; may not sleep. (optional: without it commands never fail)
 * @check: report a fatal device error: 0 while the device runs, -EIO when
 *	it has halted. Called with or without locks; may not sleep. (optional)
 * @alive: tell whether the hardware still responds at all, after a
 *	completion timed out. Called without queue locks held; may sleep for
 *	a few hundred milliseconds. (optional: without it the device is
 *	assumed alive)
 * @copy_prepare: make @copy executable by @q (map its system pages for
 *	DMA, build the engine's block list, ...) before the core writes a
 *	%HMMGPU_CMD_COPY command for it. Called with @q->lock held from
 *	process context, also on the CPU fault path: may sleep, and should
 *	allocate with GFP_KERNEL. Return: 0, -ENOMEM, or -EINVAL for a copy
 *	the hardware cannot do (a peer copy without peers). (required for a
 *	device with %HMMGPU_CAP_MIGRATE)
 * @copy_finish: set @copy->done and release what @copy_prepare set up.
 *	@err is the command's result: 0 when it completed, -EIO when it
 *	completed with an error (the backend finds out which page; the
 *	command's ring slot is still unused), -ECANCELED when it was never
 *	written to the ring, or -ETIMEDOUT, -ENODEV when its outcome is
 *	unknown; then the engine may still access the memory of @copy, and
 *	the backend must not release it to the system. Called without @q->lock
 *	from process context; may not fail. (required for a device with
 *	%HMMGPU_CAP_MIGRATE)
 * @chunk_alloc: provide the backing of VRAM chunk @index, the bytes
 *	[@index * %HMMGPU_CHUNK_SIZE, (@index + 1) * %HMMGPU_CHUNK_SIZE),
 *	before the first page of the chunk is used. Called from process
 *	context with the VRAM chunk mutex held; may sleep. Return: 0 or
 *	-ENOMEM. (optional: the hardware has real VRAM)
 * @chunk_free: release what @chunk_alloc provided, once no page of the
 *	chunk is in use. Called from process context. (optional, paired
 *	with @chunk_alloc)
 * @mmu_alloc: allocate the (empty) device page table of a context and
 *	return its root, the value %HMMGPU_CMD_CTX_BIND takes, in *@root;
 *	*@priv is the backend's handle of the table. Process context, may
 *	sleep. Return: 0 or -ENOMEM. (required for %HMMGPU_CAP_COMPUTE)
 * @mmu_free: free a page table once its context is unbound. (required
 *	for %HMMGPU_CAP_COMPUTE)
 * @mmu_prepare: allocate what a map of the @npages pages from @va in the
 *	page table @priv will need (intermediate tables). Called without the
 *	context's lock, serialised with @mmu_map of the same table, while
 *	@mmu_unmap may run; may sleep. Return: 0 or -ENOMEM. (required for
 *	%HMMGPU_CAP_COMPUTE)
 * @mmu_map: make the @npages pages from @va map @ptes[0..@npages) in the
 *	page table @priv. Must only turn unmapped pages into mapped ones or
 *	add write permission (changes that need no TLB invalidation). Called
 *	with the context's lock held, which MMU notifiers take in reclaim:
 *	may not allocate with reclaim or sleep. Return: 0, or -ENOMEM when
 *	something @mmu_prepare should have allocated is missing (the pages
 *	mapped so far stay). (required for %HMMGPU_CAP_COMPUTE)
 * @mmu_unmap: unmap the pages of [@start, @end) in @priv without
 *	allocating or sleeping (also called from MMU notifiers, in reclaim).
 *	Return: true when a page was mapped: the core then invalidates the
 *	range with %HMMGPU_CMD_TLB_INVALIDATE. (required for
 *	%HMMGPU_CAP_COMPUTE)
 * @mmu_query: report in *@pte how the page table @priv maps the page @va.
 *	Called with the context's lock held; may not sleep. Return: true when
 *	@va is mapped. (required for %HMMGPU_CAP_COMPUTE)
 * @fault_fetch: move up to @max reported faults from the hardware's fault
 *	buffer into @faults, consuming them. Called from the core's fault
 *	worker only; may not sleep. Return: the faults moved; *@dropped set
 *	when the hardware lost faults (they come back after a replay).
 *	(required for %HMMGPU_CAP_COMPUTE)
 * @debugfs_show: print the hardware's state (its queue and fault
 *	registers) to @m for the debugfs file hmmgpu/hmmgpuN/state, for
 *	debugging a stall. Called from process context; may not change the
 *	hardware's state. (optional)
 *
 * A backend calls hmmgpu_queue_signal() when a command flagged
 * %HMMGPU_CMD_IRQ completes (from its interrupt handler or worker), and
 * hmmgpu_fault_signal() when the hardware reports faults. The core never
 * calls an op after hmmgpu_device_unregister() has returned.
 */
struct hmmgpu_backend_ops {
	const char *name;
	enum hmmgpu_backend type;
	unsigned int (*queue_space)(struct hmmgpu_queue *q);
	void (*queue_write)(struct hmmgpu_queue *q,
			    const struct hmmgpu_cmd *cmd);
	void (*queue_kick)(struct hmmgpu_queue *q);
	u64 (*queue_fence)(struct hmmgpu_queue *q);
	int (*queue_status)(struct hmmgpu_queue *q, u64 seqno, u64 *value);
	int (*check)(struct hmmgpu_device *hdev);
	bool (*alive)(struct hmmgpu_device *hdev);
	int (*copy_prepare)(struct hmmgpu_queue *q, struct hmmgpu_copy *copy);
	void (*copy_finish)(struct hmmgpu_queue *q, struct hmmgpu_copy *copy,
			    int err);
	int (*chunk_alloc)(struct hmmgpu_device *hdev, unsigned int index);
	void (*chunk_free)(struct hmmgpu_device *hdev, unsigned int index);
	int (*mmu_alloc)(struct hmmgpu_device *hdev, void **priv, u64 *root);
	void (*mmu_free)(struct hmmgpu_device *hdev, void *priv);
	int (*mmu_prepare)(struct hmmgpu_device *hdev, void *priv, u64 va,
			   unsigned int npages);
	int (*mmu_map)(struct hmmgpu_device *hdev, void *priv, u64 va,
		       const struct hmmgpu_pte *ptes, unsigned int npages);
	bool (*mmu_unmap)(struct hmmgpu_device *hdev, void *priv, u64 start,
			  u64 end);
	bool (*mmu_query)(struct hmmgpu_device *hdev, void *priv, u64 va,
			  struct hmmgpu_pte *pte);
	unsigned int (*fault_fetch)(struct hmmgpu_device *hdev,
				    struct hmmgpu_fault *faults,
				    unsigned int max, bool *dropped);
	void (*debugfs_show)(struct hmmgpu_device *hdev, struct seq_file *m);
};

/**
 * struct hmmgpu_device - one GPU, whatever implements it
 * @dev: the class device /sys/class/hmmgpu/hmmgpuN; its reference count
 *	is the lifetime of this structure (open files hold one)
 * @cdev: the character device /dev/hmmgpuN
 * @ops: the backend
 * @priv: backend data; valid until hmmgpu_device_unregister() returns
 * @minor: N of hmmgpuN
 * @unplug_lock: held for read by every ioctl for its whole duration and
 *	for write by hmmgpu_device_unregister() to wait for them
 * @state: enum hmmgpu_state, only moves forward (hmmgpu_device_set_state())
 * @registered: the character device was added
 * @name: human readable name, NUL-terminated
 * @hw_version: hardware version register, 0 when there is none
 * @caps: HMMGPU_CAP_* bits
 * @vram_size: bytes of device memory
 * @num_channels: copy-engine channels, queues 1..@num_channels
 * @num_compute: compute queues, those after the channels
 * @num_contexts: device address spaces (with %HMMGPU_CAP_COMPUTE)
 * @peer_index: the device's index among its peers, the value a peer's
 *	%HMMGPU_PTE_PEER mapping and %HMMGPU_COPY_FROM_PEER copy name it by
 * @peer_group: devices of the same backend with the same non-zero value
 *	reach each other's VRAM (hmmgpu_device_is_peer()); 0 for none
 * @num_queues: 1 + @num_channels + @num_compute
 * @nop_ns: NOP round trip measured when the device was registered
 * @queues: @num_queues queues
 * @copy_rr: picks the channel of the next single-channel copy
 * @vram: the VRAM allocator, for a device with %HMMGPU_CAP_MIGRATE; set
 *	up by hmmgpu_device_register()
 * @stats: event counters (HMMGPU_IOCTL_GET_COUNTERS, debugfs)
 * @contexts: the device address spaces by hardware context index (an
 *	allocating xarray), with %HMMGPU_CAP_COMPUTE
 * @contexts_closed: no context may be created any more (the device is
 *	being unregistered); under the lock of @contexts
 * @fault_work: services the faults the hardware reports
 * @fault_batch: the fault worker's scratch space, allocated on first use
 * @debugfs: the device's debugfs directory hmmgpu/hmmgpuN, or NULL or an
 *	error pointer when there is none
 *
 * Everything from @name on is set by the backend between
 * hmmgpu_device_alloc() and hmmgpu_device_register() and constant after.
 */
struct hmmgpu_device {
	struct device dev;
	struct cdev cdev;
	const struct hmmgpu_backend_ops *ops;
	void *priv;
	int minor;

	struct rw_semaphore unplug_lock;
	atomic_t state;
	bool registered;

	char name[HMMGPU_NAME_LEN];
	u32 hw_version;
	u32 caps;
	u64 vram_size;
	unsigned int num_channels;
	unsigned int num_compute;
	unsigned int num_contexts;
	unsigned int peer_index;
	u64 peer_group;
	unsigned int num_queues;
	u64 nop_ns;
	struct hmmgpu_queue *queues;
	atomic_t copy_rr;
	struct hmmgpu_vram *vram;
	struct hmmgpu_stats stats;
	struct dentry *debugfs;
	struct xarray contexts;
	bool contexts_closed;
	struct work_struct fault_work;
	struct hmmgpu_fault_batch *fault_batch;
};

struct hmmgpu_mm;
struct hmmgpu_map_run;

#define HMMGPU_CPU_REGIONS	64

/**
 * struct hmmgpu_cpu_region - the pages of one region that a process's CPU
 *	faults on VRAM brought back lately (hmmgpu_policy.c)
 * @base: the region's first address; 0 when unused
 * @stamp: jiffies of the last fault in it, the CPU's or a device's
 * @busy: jiffies of the last device fault that moved pages of it to a
 *	device; 0 when none did
 * @back: per page, a fault-around window brought it back, and it has not
 *	moved to a device since
 */
struct hmmgpu_cpu_region {
	unsigned long base;
	unsigned long stamp;
	unsigned long busy;
	DECLARE_BITMAP(back, HMMGPU_REGION_PAGES);
};

/**
 * struct hmmgpu_cpu_faults - a process's CPU faults on VRAM, for
 *	fault-around (hmmgpu_policy.c, DOC: CPU fault-around)
 * @lock: protects the rest; taken in MMU notifiers, so never held around
 *	an allocation
 * @next: the end of the last fault-around window; 0 when there is none
 * @pages: the size of that window, in pages
 * @regions: the regions faulted in lately, direct-mapped by address
 */
struct hmmgpu_cpu_faults {
	spinlock_t lock;		/* see above */
	unsigned long next;
	unsigned int pages;
	struct hmmgpu_cpu_region regions[HMMGPU_CPU_REGIONS];
};

struct hmmgpu_fault_batch;

/**
 * struct hmmgpu_thrash - thrashing detection state of one region of a
 *	context (hmmgpu_policy.c), protected by &hmmgpu_ctx.lock
 * @arrived: per page, when it was last mapped from the device's VRAM
 * @left: per page, when a migration then unmapped it, or 0
 * @until: per page, the end of its pinning to remote mappings, or 0
 * @bounces: per page, quick rounds away and back in a row
 */
struct hmmgpu_thrash {
	u32 arrived[HMMGPU_REGION_PAGES];
	u32 left[HMMGPU_REGION_PAGES];
	u32 until[HMMGPU_REGION_PAGES];
	u8 bounces[HMMGPU_REGION_PAGES];
};

/**
 * struct hmmgpu_advice_attrs - the advice of an address range
 * @preferred: 0 (none), 1 (the CPU) or 2 + N (the device hmmgpuN)
 * @accessed_by: bit N: the device hmmgpuN accesses the range
 */
struct hmmgpu_advice_attrs {
	u32 preferred;
	u64 accessed_by;
};

/**
 * struct hmmgpu_ctx - a device address space mirroring a process
 * @hdev: the device
 * @mm: the process's address space (mmgrab()bed)
 * @index: the hardware context
 * @pt: the backend's page table
 * @root: its root, as bound to @index
 * @ref: references: the file's and the fault worker's
 * @regions_lock: see DOC: Locking in hmmgpu_mirror.c; protects @regions
 *	and @dead
 * @regions: the notifiers by region index
 * @dead: torn down (hmmgpu_ctx_destroy())
 * @lock: protects the page table, @dma and @torn (taken by the notifiers)
 * @torn: the page table is being freed (hmmgpu_ctx_destroy())
 * @dma: the DMA address (xa value, in pages) of each mapped system page,
 *	by page index
 * @advice: the process's advice (hmmgpu_advice.c)
 * @map_run: hmmgpu_ctx_map()'s scratch space, used under @regions_lock
 */
struct hmmgpu_ctx {
	struct hmmgpu_device *hdev;
	struct mm_struct *mm;
	u32 index;
	void *pt;
	u64 root;
	struct kref ref;
	struct mutex regions_lock;	/* see above */
	struct xarray regions;
	bool dead;
	struct mutex lock;		/* see above */
	bool torn;
	struct xarray dma;
	struct hmmgpu_mm *advice;
	struct hmmgpu_map_run *map_run;
};

/**
 * struct hmmgpu_file - an open /dev/hmmgpuN
 * @hdev: the device; the file holds a reference
 * @mm: the address space of the opener (mmgrab()bed), the only one the
 *	file acts on
 * @lock: protects @ctx and @launches
 * @ctx: the device address space, created by the first launch
 * @launches: launches not yet waited for (&struct hmmgpu_launch_rec)
 * @nlaunches: entries of @launches
 * @advice: the process's advice and VRAM use (hmmgpu_advice.c), taken at
 *	open()
 * @pid: the process that opened the file (its thread group)
 */
struct hmmgpu_file {
	struct hmmgpu_device *hdev;
	struct mm_struct *mm;
	struct pid *pid;
	struct mutex lock;		/* see above */
	struct hmmgpu_ctx *ctx;
	struct list_head launches;
	unsigned int nlaunches;
	struct hmmgpu_mm *advice;
};

static inline struct hmmgpu_device *to_hmmgpu_device(struct device *dev)
{
	return container_of(dev, struct hmmgpu_device, dev);
}

/**
 * hmmgpu_queue_get() - queue @i of a device
 * @hdev: the device
 * @i: queue number, less than @hdev->num_queues
 *
 * Return: the queue.
 */
static inline struct hmmgpu_queue *hmmgpu_queue_get(struct hmmgpu_device *hdev,
						    unsigned int i)
{
	return &hdev->queues[i];
}

/* hmmgpu_main.c: module parameters */
extern unsigned int hmmgpu_fence_timeout_ms;
extern unsigned int hmmgpu_sysram_devices;
extern unsigned int hmmgpu_sysram_vram_mb;
extern unsigned int hmmgpu_sysram_channels;
extern unsigned int hmmgpu_fault_around_pages;
extern unsigned int hmmgpu_fault_around_max_pages;
extern bool hmmgpu_fault_migrate;
extern unsigned int hmmgpu_prefetch_threshold;
extern unsigned int hmmgpu_thrash_threshold;
extern unsigned int hmmgpu_thrash_lapse_ms;
extern unsigned int hmmgpu_thrash_pin_ms;
extern unsigned int hmmgpu_emu_fault_entries;

/* The largest emu_fault_entries (emu/SPEC.md 3.5). */
#define HMMGPU_EMU_FAULT_ENTRIES_MAX	65536

/* hmmgpu_device.c */
int hmmgpu_core_init(void);
void hmmgpu_core_exit(void);
struct hmmgpu_device *hmmgpu_device_alloc(struct device *parent,
					  const struct hmmgpu_backend_ops *ops,
					  unsigned int num_channels,
					  unsigned int num_compute);
void hmmgpu_device_put(struct hmmgpu_device *hdev);
int hmmgpu_device_register(struct hmmgpu_device *hdev);
void hmmgpu_device_unregister(struct hmmgpu_device *hdev);
enum hmmgpu_state hmmgpu_device_state(struct hmmgpu_device *hdev);
void hmmgpu_device_set_state(struct hmmgpu_device *hdev,
			     enum hmmgpu_state state);
int hmmgpu_device_usable(struct hmmgpu_device *hdev);
bool hmmgpu_device_is_peer(const struct hmmgpu_device *hdev,
			   const struct hmmgpu_device *other);
u64 hmmgpu_device_peers(struct hmmgpu_device *hdev);

/* hmmgpu_counters.c */
int hmmgpu_ioctl_get_counters(struct hmmgpu_file *hfile, void __user *uarg,
			      unsigned int usize);
void hmmgpu_debugfs_init(void);
void hmmgpu_debugfs_exit(void);
void hmmgpu_debugfs_add(struct hmmgpu_device *hdev);
void hmmgpu_debugfs_remove(struct hmmgpu_device *hdev);

/* hmmgpu_queue.c */
void hmmgpu_queue_init(struct hmmgpu_queue *q, struct hmmgpu_device *hdev,
		       unsigned int index);
void hmmgpu_queue_signal(struct hmmgpu_queue *q);
int hmmgpu_queue_nop(struct hmmgpu_queue *q, unsigned int count,
		     u64 *elapsed_ns);
void hmmgpu_queue_quiesce(struct hmmgpu_queue *q);
int hmmgpu_queue_submit(struct hmmgpu_queue *q, struct hmmgpu_cmd *cmd,
			struct hmmgpu_job *job);
int hmmgpu_queue_poll(struct hmmgpu_queue *q, struct hmmgpu_job *job,
		      unsigned long timeout, int *status, u64 *value);
void hmmgpu_queue_release(struct hmmgpu_queue *q, struct hmmgpu_job *job);
bool hmmgpu_queue_job_done(struct hmmgpu_queue *q, struct hmmgpu_job *job);
int hmmgpu_queue_exec(struct hmmgpu_queue *q, struct hmmgpu_cmd *cmd);
void hmmgpu_device_copy_submit(struct hmmgpu_device *hdev,
			       const struct hmmgpu_copy *copy,
			       struct hmmgpu_copy_op *op);
int hmmgpu_device_copy_wait(struct hmmgpu_copy_op *op, unsigned long *failed,
			    unsigned int base);

/* hmmgpu_fault.c */
void hmmgpu_fault_signal(struct hmmgpu_device *hdev);
void hmmgpu_fault_work(struct work_struct *work);

/* hmmgpu_mirror.c */
struct hmmgpu_ctx *hmmgpu_ctx_create(struct hmmgpu_device *hdev,
				     struct mm_struct *mm);
struct hmmgpu_ctx *hmmgpu_ctx_get(struct hmmgpu_device *hdev, u32 index);
void hmmgpu_ctx_put(struct hmmgpu_ctx *ctx);
void hmmgpu_ctx_destroy(struct hmmgpu_ctx *ctx);
int hmmgpu_ctx_map(struct hmmgpu_ctx *ctx, u64 va, unsigned long npages,
		   bool write);
int hmmgpu_ctx_fault(struct hmmgpu_ctx *ctx, u64 base,
		     const unsigned long *faulted, const unsigned long *write,
		     bool prefetch);
void hmmgpu_ctx_map_resident(struct hmmgpu_ctx *ctx, u64 start, u64 end);
void hmmgpu_ctx_unmap_pages(struct hmmgpu_device *hdev, u32 index,
			    const u64 *va, unsigned int n);
struct hmmgpu_ctx *hmmgpu_file_ctx(struct hmmgpu_file *hfile);

/* hmmgpu_policy.c */
void hmmgpu_prefetch_select(const unsigned long *faulted,
			    const unsigned long *counted,
			    const unsigned long *allowed,
			    unsigned long *prefetch, u16 *count);
u32 hmmgpu_thrash_now(void);
void hmmgpu_cpu_faults_init(struct hmmgpu_cpu_faults *cf);
void hmmgpu_fault_around(struct hmmgpu_cpu_faults *cf, unsigned long addr,
			 unsigned long vm_start, unsigned long vm_end,
			 unsigned long *start, unsigned long *end);
void hmmgpu_fault_around_forget(struct hmmgpu_cpu_faults *cf,
				unsigned long start, unsigned long end,
				bool device_fault);
struct hmmgpu_cpu_faults *hmmgpu_mm_cpu_faults(struct hmmgpu_mm *hm);
struct hmmgpu_cpu_faults *hmmgpu_page_cpu_faults(struct page *page);
void hmmgpu_thrash_arrive(struct hmmgpu_thrash *t, unsigned int page, u32 now);
void hmmgpu_thrash_leave(struct hmmgpu_thrash *t, unsigned int page, u32 now);
bool hmmgpu_thrash_return(struct hmmgpu_thrash *t, unsigned int page, u32 now);
bool hmmgpu_thrash_pinned(struct hmmgpu_thrash *t, unsigned int page, u32 now);

/* hmmgpu_launch.c */
int hmmgpu_ioctl_launch(struct hmmgpu_file *hfile, void __user *uarg);
int hmmgpu_ioctl_wait(struct hmmgpu_file *hfile, void __user *uarg);

/* hmmgpu_advice.c */
int hmmgpu_ioctl_advise(struct hmmgpu_file *hfile, void __user *uarg);
int hmmgpu_ioctl_get_advice(struct hmmgpu_file *hfile, void __user *uarg);
struct hmmgpu_mm *hmmgpu_mm_get(struct mm_struct *mm);
void hmmgpu_mm_put(struct hmmgpu_mm *hm);
unsigned long hmmgpu_advice_lookup(struct hmmgpu_mm *hm, unsigned long addr,
				   struct hmmgpu_advice_attrs *attrs);
bool hmmgpu_advice_migrate(const struct hmmgpu_advice_attrs *attrs,
			   unsigned int minor);
void hmmgpu_mm_charge(struct hmmgpu_mm *hm, struct page *page,
		      unsigned int minor);
void hmmgpu_mm_uncharge(struct hmmgpu_mm *hm, unsigned int minor);
unsigned long hmmgpu_mm_vram_pages(struct hmmgpu_mm *hm, unsigned int minor);
bool hmmgpu_mm_pin(struct hmmgpu_mm *hm);
void hmmgpu_mm_unpin(struct hmmgpu_mm *hm);

/* hmmgpu_residency.c */
int hmmgpu_ioctl_residency(struct hmmgpu_file *hfile, void __user *uarg);
void hmmgpu_launch_release(struct hmmgpu_file *hfile);
__poll_t hmmgpu_launch_poll(struct hmmgpu_file *hfile, struct file *file,
			    poll_table *wait);

/* hmmgpu_vram.c */
int hmmgpu_vram_init(struct hmmgpu_device *hdev);
void hmmgpu_vram_evict(struct hmmgpu_device *hdev);
void hmmgpu_vram_fini(struct hmmgpu_device *hdev);
struct page *hmmgpu_vram_alloc_page(struct hmmgpu_device *hdev);
void hmmgpu_vram_touch(struct page *page);
void hmmgpu_vram_note_map(struct page *page, u32 ctx, u64 va);
u64 hmmgpu_vram_used(struct hmmgpu_device *hdev);
bool hmmgpu_is_vram_page(const struct page *page);
struct hmmgpu_device *hmmgpu_vram_page_device(const struct page *page);
u64 hmmgpu_vram_page_offset(const struct page *page);
extern const struct dev_pagemap_ops hmmgpu_vram_pagemap_ops;
extern void *hmmgpu_pgmap_owner;

/* hmmgpu_migrate.c */
int hmmgpu_ioctl_migrate(struct hmmgpu_file *hfile, void __user *uarg);
vm_fault_t hmmgpu_migrate_to_ram(struct vm_fault *vmf);
unsigned long hmmgpu_migrate_evict(unsigned long start_pfn,
				   unsigned long npages, bool lossy);
int hmmgpu_migrate_for_device(struct hmmgpu_device *hdev,
			      struct mm_struct *mm, struct hmmgpu_mm *owner,
			      unsigned long start, unsigned long end,
			      u8 *status);

/* hmmgpu_emu.c */
int hmmgpu_emu_init(void);
void hmmgpu_emu_exit(void);

/* hmmgpu_sysram.c */
int hmmgpu_sysram_init(void);
void hmmgpu_sysram_exit(void);

#endif /* _HMMGPU_DRV_H */
