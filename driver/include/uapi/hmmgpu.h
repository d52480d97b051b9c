/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * hmmgpu - user-space interface of the hmmgpu driver.
 *
 * This header is the only contract between the kernel module and user
 * space. Every structure has fixed-width fields, explicit padding and
 * reserved words; reserved words and flag bits that are not defined must be
 * zero on input (the driver rejects anything else with -EINVAL) and are
 * returned as zero.
 *
 * Each device is a character device /dev/hmmgpuN (mode 0666) with
 * attributes in /sys/class/hmmgpu/hmmgpuN/: name, backend ("emu" or
 * "sysram"), vram_total and vram_used (bytes), channels, and state
 * ("ready", "halted", "lost"). N is the lowest free number when the device
 * is probed: at module load the emulated GPUs come first (in PCI order),
 * then the sysram devices; tell them apart by backend, not by N.
 *
 * /proc/PID/fdinfo/FD of an open device file shows, one "key:<TAB>value"
 * per line like DRM's fdinfo (1.4):
 *   hmmgpu-device            the device, e.g. hmmgpu0
 *   hmmgpu-pid               the process whose address space the file acts
 *                            on (the opener; an inherited or passed file
 *                            still acts on it)
 *   hmmgpu-vram-resident     "N KiB": that process's pages in the device's
 *                            VRAM, however they got there
 *   hmmgpu-launches-pending  launches of the file not yet waited for
 *
 * A file acts on the address space of the process that opened it, and on
 * no other: in a process that inherited it through fork(), received it over
 * a socket (SCM_RIGHTS) or kept it across execve() (a new address space),
 * every ioctl that migrates, queries, advises, launches or waits fails with
 * -EPERM and touches nothing; GET_INFO, NOP and GET_COUNTERS, which concern
 * the device only, work. Such a process opens the device itself.
 *
 * Errors common to every ioctl:
 *   -ENOTTY  unknown ioctl number, or an ioctl whose capability bit
 *            (HMMGPU_CAP_*) the device lacks
 *   -EFAULT  the argument pointer is not readable or writable
 *   -EINVAL  a reserved word or an undefined flag bit is not zero, or a
 *            field is out of its documented range
 *   -ENODEV  the device was removed or has been lost; only close() remains
 */
#ifndef _UAPI_HMMGPU_H
#define _UAPI_HMMGPU_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define HMMGPU_UAPI_VERSION_MAJOR 1
#define HMMGPU_UAPI_VERSION_MINOR 4
#define HMMGPU_UAPI_VERSION \
	((HMMGPU_UAPI_VERSION_MAJOR << 16) | HMMGPU_UAPI_VERSION_MINOR)

#define HMMGPU_IOCTL_MAGIC 0xC6

/**
 * enum hmmgpu_backend - what implements a device
 * @HMMGPU_BACKEND_EMU: the emulated PCI GPU (hmmgpu-emu, see emu/SPEC.md)
 * @HMMGPU_BACKEND_SYSRAM: VRAM carved from system RAM, copies by a kernel
 *	worker; for machines without the emulator
 */
enum hmmgpu_backend {
	HMMGPU_BACKEND_EMU = 1,
	HMMGPU_BACKEND_SYSRAM = 2,
};

/* Capability bits of struct hmmgpu_info.caps. */
#define HMMGPU_CAP_NOP		_BITUL(0)	/* HMMGPU_IOCTL_NOP */
#define HMMGPU_CAP_MIGRATE	_BITUL(1)	/* HMMGPU_IOCTL_MIGRATE (1.1) */
#define HMMGPU_CAP_COUNTERS	_BITUL(2)	/* HMMGPU_IOCTL_GET_COUNTERS (1.2) */
#define HMMGPU_CAP_COMPUTE	_BITUL(3)	/* HMMGPU_IOCTL_LAUNCH, _WAIT (1.3) */

#define HMMGPU_NAME_LEN 32

/**
 * struct hmmgpu_info - HMMGPU_IOCTL_GET_INFO result (all fields output)
 * @uapi_version: HMMGPU_UAPI_VERSION of the running driver
 * @backend: enum hmmgpu_backend
 * @hw_version: the device's VERSION register (emu), 0 for sysram
 * @caps: HMMGPU_CAP_* bits
 * @vram_size: bytes of device memory
 * @num_channels: copy-engine channels
 * @num_queues: command queues (control queue 0, the channels, the streams)
 * @index: N of /dev/hmmgpuN
 * @pad: zero
 * @name: NUL-terminated device name
 * @num_streams: compute streams, HMMGPU_IOCTL_LAUNCH's stream numbers
 *	(1.3; 0 without HMMGPU_CAP_COMPUTE)
 * @num_contexts: processes that can launch on the device at once (1.3)
 * @peers: bit N is set for each other device /dev/hmmgpuN whose VRAM this
 *	device reaches directly (1.4): its copy engine moves pages between the
 *	two VRAMs without a bounce through system memory, and it can map the
 *	other's pages (HMMGPU_MAP_PEER); see HMMGPU_IOCTL_MIGRATE
 * @reserved: zero
 */
struct hmmgpu_info {
	__u32 uapi_version;
	__u32 backend;
	__u32 hw_version;
	__u32 caps;
	__u64 vram_size;
	__u32 num_channels;
	__u32 num_queues;
	__u32 index;
	__u32 pad;
	char name[HMMGPU_NAME_LEN];
	__u32 num_streams;
	__u32 num_contexts;
	__u64 peers;
	__u64 reserved[6];
};

#define HMMGPU_NOP_MAX 4096

/**
 * struct hmmgpu_nop - HMMGPU_IOCTL_NOP argument
 * @flags: in, must be 0
 * @count: in, NOP commands to submit back to back, 1..HMMGPU_NOP_MAX;
 *	only the last asks for a completion interrupt
 * @queue: in, queue to submit on, < hmmgpu_info.num_queues
 * @pad: in, must be 0
 * @elapsed_ns: out, time from ringing the first doorbell to the completion
 *	interrupt of the last NOP, as seen by the driver (for sysram, the
 *	worker's completion stands in for the interrupt)
 * @reserved: in, must be 0
 *
 * Submits @count NOPs and sleeps until the last one has completed.
 *
 * Errors: -EINVAL (see above); -ETIMEDOUT the device did not complete the
 * NOPs within the driver's fence timeout (a hung device; the device is
 * halted afterwards); -EIO the device reported an error or has halted;
 * -EINTR a signal arrived while waiting (the NOPs still complete).
 */
struct hmmgpu_nop {
	__u32 flags;
	__u32 count;
	__u32 queue;
	__u32 pad;
	__u64 elapsed_ns;
	__u64 reserved[4];
};

/* struct hmmgpu_migrate.flags: the direction, exactly one of */
#define HMMGPU_MIGRATE_TO_DEVICE	_BITUL(0)
#define HMMGPU_MIGRATE_TO_SYSTEM	_BITUL(1)

/**
 * enum hmmgpu_page_status - per-page outcome of HMMGPU_IOCTL_MIGRATE
 * @HMMGPU_PAGE_MIGRATED: moved by this call
 * @HMMGPU_PAGE_RESIDENT: already where it was asked to go
 * @HMMGPU_PAGE_NOT_PRESENT: nothing is mapped there yet and the direction
 *	is to system memory (nothing to move), or the page could not be
 *	allocated on the device side of a hole
 * @HMMGPU_PAGE_FILE: a page-cache page of a file mapping (e.g. a private
 *	file mapping not yet written to): mm does not move those to device
 *	memory
 * @HMMGPU_PAGE_BUSY: mm could not isolate or unmap the page (pinned,
 *	locked, under writeback, or raced with another migration)
 * @HMMGPU_PAGE_NO_VRAM: the device ran out of memory
 * @HMMGPU_PAGE_COPY_FAILED: the copy engine failed; the data stays where
 *	it was
 * @HMMGPU_PAGE_OTHER_DEVICE: resident on another device that is not a peer
 *	of this one (hmmgpu_info.peers); move it back to system memory first
 */
enum hmmgpu_page_status {
	HMMGPU_PAGE_MIGRATED = 0,
	HMMGPU_PAGE_RESIDENT = 1,
	HMMGPU_PAGE_NOT_PRESENT = 2,
	HMMGPU_PAGE_FILE = 3,
	HMMGPU_PAGE_BUSY = 4,
	HMMGPU_PAGE_NO_VRAM = 5,
	HMMGPU_PAGE_COPY_FAILED = 6,
	HMMGPU_PAGE_OTHER_DEVICE = 7,
};

/**
 * struct hmmgpu_migrate - HMMGPU_IOCTL_MIGRATE argument (version 1.1)
 * @addr: in, start of the range in the caller's address space, page aligned
 * @length: in, bytes, a non-zero multiple of the page size; the range
 *	may not wrap and must lie in the user address space
 * @flags: in, HMMGPU_MIGRATE_TO_DEVICE or HMMGPU_MIGRATE_TO_SYSTEM
 * @pad: in, must be 0
 * @status: in, 0 or a user pointer to one __u8 per page of the range that
 *	receives its enum hmmgpu_page_status (like move_pages(2)'s status)
 * @migrated: out, pages moved by this call
 * @resident: out, pages that were already at the destination
 * @failed: out, pages that could not move (see @status for why)
 * @reserved: in, must be 0
 *
 * Migrates the pages of [@addr, @addr + @length) of the calling process to
 * this device's memory, or from any hmmgpu device back to system memory,
 * through the device's copy engine. To the device, pages in a peer's VRAM
 * (hmmgpu_info.peers) move VRAM to VRAM (1.4). The range may span several VMAs;
 * anonymous private memory (including malloc'd memory and THP, which is
 * split) and written pages of private file mappings move; other pages are
 * reported in @status and counted in @failed. Partial success returns 0.
 *
 * To a device with HMMGPU_CAP_COMPUTE, once the file has launched, the
 * pages of the range in the device's VRAM are also mapped in its device
 * address space (1.4), so that the next launches do not fault on them.
 *
 * The file must be used by the process that opened it: the device binds
 * the opener's address space at open().
 *
 * Errors: -EINVAL (see above); -EFAULT part of the range is not mapped, or
 * @status is not writable; -EPERM the caller's address space is not the
 * one bound at open(); -EIO the device failed and nothing moved; -ENODEV;
 * -EINTR a fatal signal arrived (pages moved so far stay moved); -ENOMEM.
 */
struct hmmgpu_migrate {
	__u64 addr;
	__u64 length;
	__u32 flags;
	__u32 pad;
	__u64 status;
	__u64 migrated;
	__u64 resident;
	__u64 failed;
	__u64 reserved[4];
};

/* Entries of struct hmmgpu_counters.channel_busy_ns. */
#define HMMGPU_MAX_CHANNELS_UAPI 31

/**
 * struct hmmgpu_counters - HMMGPU_IOCTL_GET_COUNTERS argument (version 1.2)
 * @flags: in, must be 0
 * @num_channels: out, entries of @channel_busy_ns in use: the device's
 *	copy channels, or 1 for a device without channels (its copies run on
 *	queue 0, reported as entry 0)
 * @to_device_pages: out, pages migrated into this device's memory
 * @to_device_bytes: out, bytes of @to_device_pages
 * @to_system_pages: out, pages migrated from this device's memory to system
 *	memory: by HMMGPU_IOCTL_MIGRATE, by CPU faults (the faulting page and
 *	its fault-around neighbours) and at eviction
 * @to_system_bytes: out, bytes of @to_system_pages
 * @cpu_faults: out, CPU faults on this device's memory handled (calls of
 *	the driver's migrate_to_ram)
 * @fault_around_pages: out, neighbours migrated by those faults besides
 *	the faulting pages
 * @copy_batches: out, copies submitted to the copy engine (each may be
 *	split over several channels)
 * @copy_errors: out, pages whose copy failed
 * @vram_alloc_failures: out, device pages that could not be allocated, not
 *	even by evicting (1.3: VRAM that is full is made room in by eviction)
 * @channel_busy_ns: out, per channel, the sum over its copy jobs of the
 *	time from ringing the doorbell to the completion interrupt; entries
 *	from @num_channels on are zero
 * @device_faults: out, page faults the device reported (1.3), duplicates
 *	included
 * @fault_replays: out, replays of faulted launches the driver ordered
 *	(1.3)
 * @fault_cancels: out, faulting pages the driver could not map, whose
 *	launches it failed (1.3)
 * @evicted_chunks: out, 2 MiB chunks of VRAM evicted to make room when
 *	the VRAM was full (1.3)
 * @evicted_pages: out, pages those evictions moved to system memory (1.3)
 * @reserved: in, must be 0; out, zero
 * @fault_batches: out, batches of device faults the driver fetched and
 *	serviced, each followed by one replay (1.4)
 * @fault_duplicates: out, device faults on a page that another fault of
 *	the same batch had already reported (1.4)
 * @prefetched_pages: out, pages the device fault service moved to this
 *	device's VRAM and mapped besides the faulting pages, chosen by its
 *	density prefetcher (1.4)
 * @remote_mapped_pages: out, pages the device mapped where they lie, in
 *	system memory or a peer's VRAM, instead of moving them (1.4)
 * @thrashing_events: out, pages found bouncing between this device and
 *	another processor; each is then mapped where it lies instead of
 *	moved for a while (1.4)
 * @peer_to_device_pages: out, pages moved into this device's VRAM straight
 *	from a peer's VRAM, also counted in @to_device_pages (1.4)
 * @peer_to_device_bytes: out, bytes of @peer_to_device_pages (1.4)
 * @tlb_invalidates: out, TLB invalidations the driver ordered (1.4)
 * @evicted_bytes: out, bytes of @evicted_pages (1.4)
 * @fault_dropped: out, device faults the hardware could not report because
 *	its fault buffer was full; the stalled work reports them again after
 *	the next replay (1.4)
 *
 * Reads the counters of the device. They start at zero when the device is
 * registered, only grow and are read without stopping the device: the
 * fields are not one atomic snapshot. A migration counts on the device that
 * owns the device page, whichever file asked for it. The same values appear
 * in debugfs, hmmgpu/hmmgpuN/counters.
 *
 * The structure grows at its end from one version to the next, and the
 * ioctl number carries its size (_IOC_SIZE). The driver takes every size
 * from that of version 1.2 (up to @reserved, HMMGPU_COUNTERS_SIZE_V1) on:
 * it fills the fields that the caller's size covers, so a program built
 * against an older header keeps working. A caller's structure larger than
 * the driver's must be zero past the end of the driver's.
 *
 * Errors: -EINVAL (see above), also for a size below
 * HMMGPU_COUNTERS_SIZE_V1; -E2BIG the caller's structure is larger than the
 * driver's and not zero where the driver's ends.
 */
struct hmmgpu_counters {
	__u32 flags;
	__u32 num_channels;
	__u64 to_device_pages;
	__u64 to_device_bytes;
	__u64 to_system_pages;
	__u64 to_system_bytes;
	__u64 cpu_faults;
	__u64 fault_around_pages;
	__u64 copy_batches;
	__u64 copy_errors;
	__u64 vram_alloc_failures;
	__u64 channel_busy_ns[HMMGPU_MAX_CHANNELS_UAPI];
	__u64 device_faults;
	__u64 fault_replays;
	__u64 fault_cancels;
	__u64 evicted_chunks;
	__u64 evicted_pages;
	__u64 reserved[3];
	__u64 fault_batches;
	__u64 fault_duplicates;
	__u64 prefetched_pages;
	__u64 remote_mapped_pages;
	__u64 thrashing_events;
	__u64 peer_to_device_pages;
	__u64 peer_to_device_bytes;
	__u64 tlb_invalidates;
	__u64 evicted_bytes;
	__u64 fault_dropped;
};

/* Size of struct hmmgpu_counters in versions 1.2 and 1.3. */
#define HMMGPU_COUNTERS_SIZE_V1 392

/**
 * enum hmmgpu_kernel - the device's built-in compute kernels
 *
 * Element i of operand x is at hmmgpu_launch.x + i * size, of y at
 * hmmgpu_launch.y + i * size; both must be aligned to the element size.
 * f32 arithmetic is IEEE 754 binary32, rounded per operation (no fused
 * multiply-add), elements processed in ascending order.
 *
 * @HMMGPU_KERNEL_FILL_U32: x[i] = (u32)scalar
 * @HMMGPU_KERNEL_COPY: x[i] = y[i], bytes; the ranges may not overlap
 * @HMMGPU_KERNEL_AXPY_F32: x[i] = a * y[i] + x[i], a = f32 bits of scalar
 * @HMMGPU_KERNEL_SCALE_F32: x[i] = a * x[i]
 * @HMMGPU_KERNEL_INCREMENT_U32: x[i] += (u32)scalar, wrapping
 * @HMMGPU_KERNEL_SUM_F32: result = the binary64 bits of the sum of x[i]
 *	(each converted exactly, added in binary64 in ascending order)
 * @HMMGPU_KERNEL_SUM_U64: result = the sum of the u64 x[i], wrapping
 * @HMMGPU_KERNEL_CHECKSUM: result = FNV-1a 64 of the count bytes at x
 */
enum hmmgpu_kernel {
	HMMGPU_KERNEL_FILL_U32 = 1,
	HMMGPU_KERNEL_COPY = 2,
	HMMGPU_KERNEL_AXPY_F32 = 3,
	HMMGPU_KERNEL_SCALE_F32 = 4,
	HMMGPU_KERNEL_INCREMENT_U32 = 5,
	HMMGPU_KERNEL_SUM_F32 = 6,
	HMMGPU_KERNEL_SUM_U64 = 7,
	HMMGPU_KERNEL_CHECKSUM = 8,
};

/* struct hmmgpu_launch.flags */
#define HMMGPU_LAUNCH_WAIT	_BITUL(0)	/* wait and fill the results */

/**
 * struct hmmgpu_launch - HMMGPU_IOCTL_LAUNCH argument
 * @flags: in, HMMGPU_LAUNCH_* bits
 * @kernel: in, enum hmmgpu_kernel
 * @stream: in, the stream (in-order compute queue) to launch on,
 *	< hmmgpu_info.num_streams
 * @pad: in, must be 0
 * @count: in, elements (bytes for COPY and CHECKSUM), 1 or more, at most
 *	256 MiB of each operand
 * @x: in, address of operand x in the caller's address space
 * @y: in, address of operand y, 0 for a kernel without one
 * @scalar: in, the scalar (low 32 bits), 0 for a kernel without one
 * @fence: out, the launch's fence on its stream, for HMMGPU_IOCTL_WAIT
 * @error: out with HMMGPU_LAUNCH_WAIT: 0, or the positive errno the launch
 *	ended with: EFAULT an address the device touched is not mapped with
 *	the access it needs (@fault_addr), EINVAL the device refused the
 *	operands before touching them (@x or @y not aligned to the element,
 *	more than 256 MiB of an operand, @y or the scalar's bits not zero
 *	where the kernel has none, COPY's ranges overlapping, an operand
 *	past 2^48), EIO the device failed
 * @pad2: out, 0
 * @result: out with HMMGPU_LAUNCH_WAIT: the kernel's result (0 for the
 *	kernels without one)
 * @fault_addr: out with HMMGPU_LAUNCH_WAIT and EFAULT: the page
 * @reserved: in, must be 0
 *
 * The device runs the kernel on the caller's memory where it lies: it
 * faults on pages it has no mapping for, and the driver services the fault
 * and lets it go on (see the README: faults and residency).
 *
 * A launch not yet waited for keeps its results on the device; it does not
 * hold up the stream for later launches, of this process or others.
 *
 * Errors: -EINVAL (see above); -EFAULT the argument is not readable or not
 * writable (checked before the launch: nothing runs); -EBUSY the file has
 * HMMGPU_LAUNCH_MAX_PENDING launches not yet waited for, or the device has
 * no free address-space context; -EPERM the caller's address space is not
 * the one that opened the file; -EIO the device has halted; -EINTR a
 * signal arrived while waiting (the launch still completes; wait for
 * @fence); -ENOMEM.
 */
struct hmmgpu_launch {
	__u32 flags;
	__u32 kernel;
	__u32 stream;
	__u32 pad;
	__u64 count;
	__u64 x;
	__u64 y;
	__u64 scalar;
	__u64 fence;
	__s32 error;
	__u32 pad2;
	__u64 result;
	__u64 fault_addr;
	__u64 reserved[4];
};

#define HMMGPU_LAUNCH_MAX_PENDING 64

/**
 * struct hmmgpu_wait - HMMGPU_IOCTL_WAIT argument
 * @flags: in, must be 0
 * @stream: in, the launch's stream
 * @fence: in, the launch's hmmgpu_launch.fence
 * @timeout_ns: in, how long to wait at most; 0 only polls
 * @error: out, as hmmgpu_launch.error
 * @pad: out, 0
 * @result: out, as hmmgpu_launch.result
 * @fault_addr: out, as hmmgpu_launch.fault_addr
 * @reserved: in, must be 0
 *
 * Waits for a launch of this file made without HMMGPU_LAUNCH_WAIT and
 * returns its results; a launch's results are returned once. Output fields
 * are ignored on input (here and in struct hmmgpu_launch). poll(2) and
 * epoll report the file readable (POLLIN) while a launch of it has
 * completed and not been waited for; POLLERR once the device is gone.
 *
 * Errors: -EINVAL (see above); -EFAULT the argument is not readable or not
 * writable (checked first: the launch stays pending); -EPERM the caller's
 * address space is not the one that opened the file (its launches are not
 * another process's to wait for); -ENOENT no launch of this file with that
 * fence is pending on the stream; -ETIME the launch did not complete within
 * @timeout_ns (it stays pending); -EINTR a signal arrived; -EIO the device
 * has halted.
 */
struct hmmgpu_wait {
	__u32 flags;
	__u32 stream;
	__u64 fence;
	__u64 timeout_ns;
	__s32 error;
	__u32 pad;
	__u64 result;
	__u64 fault_addr;
	__u64 reserved[4];
};

/**
 * enum hmmgpu_location - where the pages of a run are
 * @HMMGPU_LOC_NONE: not populated: never touched, or discarded
 * @HMMGPU_LOC_SYSTEM: in system memory
 * @HMMGPU_LOC_DEVICE: in the VRAM of device hmmgpu_run.device
 */
enum hmmgpu_location {
	HMMGPU_LOC_NONE = 0,
	HMMGPU_LOC_SYSTEM = 1,
	HMMGPU_LOC_DEVICE = 2,
};

/**
 * enum hmmgpu_mapping - how the device of the file maps the pages of a run
 * @HMMGPU_MAP_NONE: not mapped: its next access faults
 * @HMMGPU_MAP_LOCAL: its own VRAM
 * @HMMGPU_MAP_PEER: a peer device's VRAM, over the bus
 * @HMMGPU_MAP_SYSTEM: system memory, over the bus
 */
enum hmmgpu_mapping {
	HMMGPU_MAP_NONE = 0,
	HMMGPU_MAP_LOCAL = 1,
	HMMGPU_MAP_PEER = 2,
	HMMGPU_MAP_SYSTEM = 3,
};

/* struct hmmgpu_run.flags */
#define HMMGPU_RUN_WRITE	_BITUL(0)	/* the device may write */

/**
 * struct hmmgpu_run - consecutive pages alike, in HMMGPU_IOCTL_RESIDENCY
 * @addr: first page
 * @npages: pages
 * @location: enum hmmgpu_location
 * @device: with HMMGPU_LOC_DEVICE, N of the /dev/hmmgpuN holding them
 * @mapping: enum hmmgpu_mapping
 * @flags: HMMGPU_RUN_* bits, with a mapping
 */
struct hmmgpu_run {
	__u64 addr;
	__u64 npages;
	__u32 location;
	__u32 device;
	__u32 mapping;
	__u32 flags;
};

/**
 * struct hmmgpu_residency - HMMGPU_IOCTL_RESIDENCY argument
 * @addr: in, first address, page aligned
 * @length: in, bytes, page aligned, not 0
 * @runs: in, user pointer to an array of @max_runs struct hmmgpu_run
 * @max_runs: in, entries of @runs, 1 or more
 * @nruns: out, entries filled
 * @next: out, where the report stopped: @addr + @length, or the start of
 *	the run that did not fit; ask again from there
 * @flags: in, must be 0
 * @pad: in, must be 0
 * @reserved: in, must be 0
 *
 * Reports, in address order, where the pages of the caller's range are
 * and how this file's device maps them (HMMGPU_MAP_NONE before the file's
 * first launch), as runs of consecutive pages alike. Nothing is faulted in
 * or moved: the report is a snapshot that may be stale as soon as it is
 * returned.
 *
 * Errors: -EINVAL (see above); -EFAULT a page of the range is not mapped
 * (the runs before it are reported, @next is that page), or @runs is not
 * writable; -EPERM the caller's address space is not the one that opened
 * the file; -EINTR a fatal signal arrived; -ENOMEM.
 */
struct hmmgpu_residency {
	__u64 addr;
	__u64 length;
	__u64 runs;
	__u32 max_runs;
	__u32 nruns;
	__u64 next;
	__u32 flags;
	__u32 pad;
	__u64 reserved[4];
};

/**
 * enum hmmgpu_advice - hints for a range, as cudaMemAdvise() takes them
 * @HMMGPU_ADVISE_PREFERRED_DEVICE: the range prefers the file's device: its
 *	faults move the pages to its VRAM (also with fault_migrate off)
 * @HMMGPU_ADVISE_PREFERRED_CPU: the range prefers system memory: devices
 *	map its pages where they lie instead of moving them
 * @HMMGPU_ADVISE_UNSET_PREFERRED: forget the preferred location
 * @HMMGPU_ADVISE_ACCESSED_BY: the file's device accesses the range: it maps
 *	the pages where they lie instead of moving them (unless the range
 *	prefers it)
 * @HMMGPU_ADVISE_UNSET_ACCESSED_BY: forget the file's device as accessor
 * @HMMGPU_ADVISE_READ_MOSTLY: not supported (-EOPNOTSUPP): read-only copies
 *	of a page on several processors cannot be kept coherent, since the
 *	driver cannot be told of the CPU's next write
 * @HMMGPU_ADVISE_UNSET_READ_MOSTLY: not supported (-EOPNOTSUPP)
 */
enum hmmgpu_advice {
	HMMGPU_ADVISE_PREFERRED_DEVICE = 1,
	HMMGPU_ADVISE_PREFERRED_CPU = 2,
	HMMGPU_ADVISE_UNSET_PREFERRED = 3,
	HMMGPU_ADVISE_ACCESSED_BY = 4,
	HMMGPU_ADVISE_UNSET_ACCESSED_BY = 5,
	HMMGPU_ADVISE_READ_MOSTLY = 6,
	HMMGPU_ADVISE_UNSET_READ_MOSTLY = 7,
};

/**
 * struct hmmgpu_advise - HMMGPU_IOCTL_ADVISE argument
 * @addr: in, first address, page aligned
 * @length: in, bytes, page aligned, not 0
 * @advice: in, enum hmmgpu_advice
 * @flags: in, must be 0
 * @reserved: in, must be 0
 *
 * Sets advice for a range of the caller's address space. Advice belongs
 * to the process, whichever file set it: every device sees it. It steers
 * device faults only; nothing moves when it is set (use
 * HMMGPU_IOCTL_MIGRATE to prefetch). Advice is split and merged as ranges
 * change and dropped when the range is unmapped.
 *
 * Errors: -EINVAL (see above); -EOPNOTSUPP read-mostly; -EFAULT a page of
 * the range is not mapped; -EPERM the caller's address space is not the
 * one that opened the file; -ENOMEM.
 */
struct hmmgpu_advise {
	__u64 addr;
	__u64 length;
	__u32 advice;
	__u32 flags;
	__u64 reserved[4];
};

/**
 * enum hmmgpu_preferred - the preferred location of a range, as
 *	HMMGPU_IOCTL_GET_ADVICE reports it
 * @HMMGPU_PREFERRED_NONE: none, or not the same for every page of the range
 * @HMMGPU_PREFERRED_CPU: system memory
 * @HMMGPU_PREFERRED_DEVICE: the device hmmgpu_range_advice.preferred_device
 */
enum hmmgpu_preferred {
	HMMGPU_PREFERRED_NONE = 0,
	HMMGPU_PREFERRED_CPU = 1,
	HMMGPU_PREFERRED_DEVICE = 2,
};

/**
 * struct hmmgpu_range_advice - HMMGPU_IOCTL_GET_ADVICE argument (1.4)
 * @addr: in, first address, page aligned
 * @length: in, bytes, page aligned, not 0
 * @flags: in, must be 0
 * @preferred: out, enum hmmgpu_preferred: the preferred location every
 *	page of the range has, or HMMGPU_PREFERRED_NONE
 * @preferred_device: out, with HMMGPU_PREFERRED_DEVICE, N of /dev/hmmgpuN;
 *	else 0
 * @pad: out, 0
 * @accessed_by: out, bit N set when /dev/hmmgpuN is an accessed-by device
 *	of every page of the range
 * @reserved: in, must be 0
 *
 * Reads the advice HMMGPU_IOCTL_ADVISE set for a range of the caller's
 * address space, the way cudaMemRangeGetAttribute() reports it: a value is
 * reported only when the whole range has it. Read-mostly is never set.
 *
 * Errors: -EINVAL (see above); -EFAULT a page of the range is not mapped;
 * -EPERM the caller's address space is not the one that opened the file;
 * -ENOMEM.
 */
struct hmmgpu_range_advice {
	__u64 addr;
	__u64 length;
	__u32 flags;
	__u32 preferred;
	__u32 preferred_device;
	__u32 pad;
	__u64 accessed_by;
	__u64 reserved[4];
};

#define HMMGPU_IOCTL_GET_INFO	_IOR(HMMGPU_IOCTL_MAGIC, 0x00, struct hmmgpu_info)
#define HMMGPU_IOCTL_NOP	_IOWR(HMMGPU_IOCTL_MAGIC, 0x01, struct hmmgpu_nop)
#define HMMGPU_IOCTL_MIGRATE	_IOWR(HMMGPU_IOCTL_MAGIC, 0x02, struct hmmgpu_migrate)
#define HMMGPU_IOCTL_GET_COUNTERS \
	_IOWR(HMMGPU_IOCTL_MAGIC, 0x03, struct hmmgpu_counters)
#define HMMGPU_IOCTL_LAUNCH	_IOWR(HMMGPU_IOCTL_MAGIC, 0x04, struct hmmgpu_launch)
#define HMMGPU_IOCTL_WAIT	_IOWR(HMMGPU_IOCTL_MAGIC, 0x05, struct hmmgpu_wait)
#define HMMGPU_IOCTL_RESIDENCY	_IOWR(HMMGPU_IOCTL_MAGIC, 0x06, struct hmmgpu_residency)
#define HMMGPU_IOCTL_ADVISE	_IOW(HMMGPU_IOCTL_MAGIC, 0x07, struct hmmgpu_advise)
#define HMMGPU_IOCTL_GET_ADVICE \
	_IOWR(HMMGPU_IOCTL_MAGIC, 0x08, struct hmmgpu_range_advice)

#endif /* _UAPI_HMMGPU_H */
