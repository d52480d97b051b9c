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

#endif /* _HMMGPU_TRACE_H */

/* Out of tree: the header is found relative to the including file. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE hmmgpu_trace
#include <trace/define_trace.h>
