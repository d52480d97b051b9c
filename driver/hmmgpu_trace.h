/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmmgpu: tracepoints, in /sys/kernel/tracing/events/hmmgpu/
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM hmmgpu

#if !defined(_HMMGPU_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _HMMGPU_TRACE_H

#include <linux/tracepoint.h>

/*
 * hmmgpu_migrate - one run of HMMGPU_IOCTL_MIGRATE: the pages migrated
 *	under one hold of the mmap lock (up to 4096)
 * @minor: N of the ioctl's /dev/hmmgpuN
 * @to_device: the direction is to the device (else to system memory)
 * @start: first address of the run
 * @npages: pages of the run
 * @migrated: pages that moved
 * @failed: pages that could not move (neither moved nor already resident)
 */
TRACE_EVENT(hmmgpu_migrate,
	TP_PROTO(int minor, bool to_device, unsigned long start,
		 unsigned long npages, unsigned long migrated,
		 unsigned long failed),
	TP_ARGS(minor, to_device, start, npages, migrated, failed),
	TP_STRUCT__entry(
		__field(int, minor)
		__field(bool, to_device)
		__field(unsigned long, start)
		__field(unsigned long, npages)
		__field(unsigned long, migrated)
		__field(unsigned long, failed)
	),
	TP_fast_assign(
		__entry->minor = minor;
		__entry->to_device = to_device;
		__entry->start = start;
		__entry->npages = npages;
		__entry->migrated = migrated;
		__entry->failed = failed;
	),
	TP_printk("hmmgpu%d %s start=0x%lx npages=%lu migrated=%lu failed=%lu",
		  __entry->minor, __entry->to_device ? "to_device" : "to_system",
		  __entry->start, __entry->npages, __entry->migrated,
		  __entry->failed)
);

/*
 * hmmgpu_cpu_fault - one CPU fault on a VRAM page (migrate_to_ram)
 * @minor: N of the hmmgpuN owning the faulting page
 * @address: the faulting address
 * @window: pages of the fault-around window
 * @result: the vm_fault_t returned to mm (0: the access is retried)
 */
TRACE_EVENT(hmmgpu_cpu_fault,
	TP_PROTO(int minor, unsigned long address, unsigned long window,
		 unsigned int result),
	TP_ARGS(minor, address, window, result),
	TP_STRUCT__entry(
		__field(int, minor)
		__field(unsigned long, address)
		__field(unsigned long, window)
		__field(unsigned int, result)
	),
	TP_fast_assign(
		__entry->minor = minor;
		__entry->address = address;
		__entry->window = window;
		__entry->result = result;
	),
	TP_printk("hmmgpu%d address=0x%lx window=%lu result=0x%x",
		  __entry->minor, __entry->address, __entry->window,
		  __entry->result)
);

/*
 * hmmgpu_device_fault - a faulting page of a batch the fault worker fetched
 * @minor: N of the device's /dev/hmmgpuN
 * @ctx: the context (hardware index)
 * @va: the page
 * @write: some fault on it was a write
 * @faults: the faults that reported it in the batch
 */
TRACE_EVENT(hmmgpu_device_fault,
	TP_PROTO(int minor, u32 ctx, u64 va, bool write, unsigned int faults),
	TP_ARGS(minor, ctx, va, write, faults),
	TP_STRUCT__entry(
		__field(int, minor)
		__field(u32, ctx)
		__field(u64, va)
		__field(bool, write)
		__field(unsigned int, faults)
	),
	TP_fast_assign(
		__entry->minor = minor;
		__entry->ctx = ctx;
		__entry->va = va;
		__entry->write = write;
		__entry->faults = faults;
	),
	TP_printk("hmmgpu%d ctx=%u va=0x%llx %s faults=%u", __entry->minor,
		  __entry->ctx, __entry->va, __entry->write ? "write" : "read",
		  __entry->faults)
);

/*
 * hmmgpu_device_map - a run of pages mapped in a context's page table
 * @minor: N of the device's /dev/hmmgpuN
 * @ctx: the context (hardware index)
 * @va: the first page
 * @npages: pages of the run
 * @aperture: where the first page lies (enum hmmgpu_pte_aperture)
 * @write: the first page is mapped writable
 */
TRACE_EVENT(hmmgpu_device_map,
	TP_PROTO(int minor, u32 ctx, u64 va, unsigned int npages, u8 aperture,
		 bool write),
	TP_ARGS(minor, ctx, va, npages, aperture, write),
	TP_STRUCT__entry(
		__field(int, minor)
		__field(u32, ctx)
		__field(u64, va)
		__field(unsigned int, npages)
		__field(u8, aperture)
		__field(bool, write)
	),
	TP_fast_assign(
		__entry->minor = minor;
		__entry->ctx = ctx;
		__entry->va = va;
		__entry->npages = npages;
		__entry->aperture = aperture;
		__entry->write = write;
	),
	TP_printk("hmmgpu%d ctx=%u va=0x%llx npages=%u aperture=%u %s",
		  __entry->minor, __entry->ctx, __entry->va, __entry->npages,
		  __entry->aperture, __entry->write ? "rw" : "ro")
);

/*
 * hmmgpu_fault_service - the fault service of the faulting pages of one
 *	region (2 MiB) of a context
 * @minor: N of the device's /dev/hmmgpuN
 * @ctx: the context (hardware index)
 * @va: the first faulting page
 * @npages: the faulting pages
 * @result: 0 or the error of hmmgpu_ctx_fault()
 */
TRACE_EVENT(hmmgpu_fault_service,
	TP_PROTO(int minor, u32 ctx, u64 va, unsigned int npages, int result),
	TP_ARGS(minor, ctx, va, npages, result),
	TP_STRUCT__entry(
		__field(int, minor)
		__field(u32, ctx)
		__field(u64, va)
		__field(unsigned int, npages)
		__field(int, result)
	),
	TP_fast_assign(
		__entry->minor = minor;
		__entry->ctx = ctx;
		__entry->va = va;
		__entry->npages = npages;
		__entry->result = result;
	),
	TP_printk("hmmgpu%d ctx=%u va=0x%llx npages=%u result=%d",
		  __entry->minor, __entry->ctx, __entry->va, __entry->npages,
		  __entry->result)
);

#endif /* _HMMGPU_TRACE_H */

/* Out of tree: the header is found relative to the including file. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE hmmgpu_trace
#include <trace/define_trace.h>
