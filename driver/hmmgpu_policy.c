// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: fault-service policy: density prefetching, thrashing detection
 *	and CPU fault-around
 */

/**
 * DOC: Prefetching
 *
 * A device fault moves the faulting pages to the device (first touch), and
 * also neighbours the device is likely to touch next, chosen per notifier
 * region (%HMMGPU_REGION_PAGES pages, 2 MiB) the way NVIDIA's UVM driver
 * chooses them per VA block: the region's pages are the leaves of a binary
 * tree, each inner node a naturally aligned subregion of 2^k pages. A page
 * counts when it is already in this device's VRAM and mapped there, or
 * faults in this batch. For each faulting page, the largest subregion
 * around it in which at least prefetch_threshold percent of the pages count
 * is selected, and its other pages are prefetched: moved to the VRAM and
 * mapped with the faulting ones, so that the device does not fault on them.
 *
 * UVM's default is "more than 51%". Its GPUs fault from many warps at
 * once; this device faults one 64 KiB wave of a launch at a time, which
 * fills exactly half of the subregion above it, so the default here is
 * 50 (at least half): a stream through fresh memory then fetches 64 KiB
 * ahead after its first wave, and ever larger subregions as the region
 * fills up (4 to 6 faults per 2 MiB instead of 32). 0 turns prefetching
 * off.
 *
 * Pages that thrash (below), lie outside the VMAs of the faulting pages,
 * or would not move to the device (advice) are never prefetched. Within a
 * VMA the prefetcher cannot tell allocations apart: memory next to a
 * buffer in the same VMA (the heap, or adjacent anonymous mappings, which
 * mm merges) may come along, and go back at its next CPU access.
 */

/**
 * DOC: Thrashing
 *
 * A page that bounces between this device and another processor (the CPU
 * or another device) costs two migrations per round. Each device context
 * keeps, per page, when it last mapped the page from its own VRAM
 * (hmmgpu_thrash_arrive()) and when an hmmgpu migration then unmapped it
 * (hmmgpu_thrash_leave(); evictions, which make room rather than serve
 * another processor, and munmap do not count). When its fault service
 * brings such a page back to the VRAM (hmmgpu_thrash_return()), the round
 * was quick if the page had stayed less than thrash_lapse_ms. At
 * thrash_threshold quick rounds in a row the page thrashes (a counted
 * event): for thrash_pin_ms the device's faults map it where it lies,
 * remotely, instead of moving it (hmmgpu_thrash_pinned()), and it is not
 * prefetched. A threshold of 0 turns detection off.
 *
 * An unmapping by a migration is only a candidate: mm unmaps every page of
 * a range it migrates, also those that stay. A page that stayed is mapped
 * again without having moved, which forgets the candidate.
 *
 * The times are milliseconds of a 32-bit clock that wraps every 49 days;
 * only differences of recent times are compared.
 */

/**
 * DOC: CPU fault-around
 *
 * A CPU access to a VRAM page migrates it back together with its
 * neighbours (hmmgpu_migrate_to_ram()): the window around the faulting
 * page, naturally aligned, of fault_around_pages pages. Every migration
 * waits for a copy-engine round trip, which costs more than the copy of
 * the window, so a process that reads through device-resident memory in
 * order is served the way file readahead serves sequential reads: while
 * its faults keep landing in the window just after the previous one, the
 * window doubles, up to fault_around_max_pages (2 MiB, amdkfd's migration
 * granularity); any other fault starts again at fault_around_pages. A
 * fault_around_pages of 1 turns fault-around off, growth included.
 *
 * The state is one word per process (&hmmgpu_mm.cpu_stream, reached from
 * the faulting page): the end of the last window, with the base-2
 * logarithm of its size in pages in the low bits. Concurrent faults update
 * it without a lock; a lost update only costs a window of the base size.
 * Streams of several threads interleave and then get the base window.
 */

#include <linux/bitmap.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/minmax.h>
#include <linux/mm.h>

#include "hmmgpu_drv.h"

/* Levels of the tree above its leaves. */
#define HMMGPU_TREE_LEVELS	(HMMGPU_REGION_SHIFT - PAGE_SHIFT)

/**
 * hmmgpu_prefetch_select() - the pages a batch of faults should prefetch
 * @faulted: the faulting pages of the region
 * @counted: the other pages that count: in this device's VRAM and mapped
 * @allowed: the pages that may be prefetched
 * @prefetch: out, the pages to prefetch: in @allowed, not in @faulted or
 *	@counted
 * @count: scratch space of %HMMGPU_PREFETCH_TREE entries
 *
 * Every bitmap has %HMMGPU_REGION_PAGES bits. See DOC: Prefetching.
 */
void hmmgpu_prefetch_select(const unsigned long *faulted,
			    const unsigned long *counted,
			    const unsigned long *allowed,
			    unsigned long *prefetch, u16 *count)
{
	unsigned int threshold = READ_ONCE(hmmgpu_prefetch_threshold);
	unsigned int p, node, level, best;

	/* count[node]: the tree in heap order, root 1, leaves from 512 on */

	bitmap_zero(prefetch, HMMGPU_REGION_PAGES);
	if (!threshold || threshold > 100)
		return;
	for (p = 0; p < HMMGPU_REGION_PAGES; p++)
		count[HMMGPU_REGION_PAGES + p] = test_bit(p, faulted) ||
						 test_bit(p, counted);
	for (node = HMMGPU_REGION_PAGES - 1; node; node--)
		count[node] = count[2 * node] + count[2 * node + 1];

	for_each_set_bit(p, faulted, HMMGPU_REGION_PAGES) {
		node = HMMGPU_REGION_PAGES + p;
		best = 0;
		for (level = 1; level <= HMMGPU_TREE_LEVELS; level++) {
			node /= 2;
			if (count[node] * 100 >= threshold << level)
				best = level;
		}
		if (best)
			bitmap_set(prefetch, round_down(p, 1U << best),
				   1U << best);
	}
	bitmap_and(prefetch, prefetch, allowed, HMMGPU_REGION_PAGES);
	bitmap_andnot(prefetch, prefetch, faulted, HMMGPU_REGION_PAGES);
	bitmap_andnot(prefetch, prefetch, counted, HMMGPU_REGION_PAGES);
}

/**
 * hmmgpu_thrash_now() - the clock of the thrashing detection
 *
 * Return: milliseconds, wrapping at 2^32.
 */
u32 hmmgpu_thrash_now(void)
{
	return (u32)ktime_to_ms(ktime_get());
}

/**
 * hmmgpu_thrash_arrive() - a page is now mapped from the device's VRAM
 * @t: the region's state
 * @page: the page's index in the region
 * @now: hmmgpu_thrash_now()
 */
void hmmgpu_thrash_arrive(struct hmmgpu_thrash *t, unsigned int page, u32 now)
{
	t->arrived[page] = now;
	t->left[page] = 0;
}

/**
 * hmmgpu_thrash_leave() - an hmmgpu migration unmaps a page that was mapped
 *	from the device's VRAM
 * @t: the region's state
 * @page: the page's index in the region
 * @now: hmmgpu_thrash_now()
 */
void hmmgpu_thrash_leave(struct hmmgpu_thrash *t, unsigned int page, u32 now)
{
	if (!t->left[page])
		t->left[page] = now ?: 1;	/* 0 means "did not leave" */
}

/**
 * hmmgpu_thrash_return() - the device's fault service moved a page back
 *	to its VRAM
 * @t: the region's state
 * @page: the page's index in the region
 * @now: hmmgpu_thrash_now()
 *
 * Return: true when this makes the page thrash: it is pinned to remote
 * mappings for thrash_pin_ms from @now.
 */
bool hmmgpu_thrash_return(struct hmmgpu_thrash *t, unsigned int page, u32 now)
{
	unsigned int threshold = READ_ONCE(hmmgpu_thrash_threshold);
	u32 stayed = t->left[page] - t->arrived[page];

	if (!threshold || !t->left[page])
		return false;
	t->left[page] = 0;
	if (stayed > READ_ONCE(hmmgpu_thrash_lapse_ms)) {
		t->bounces[page] = 0;
		return false;
	}
	if (++t->bounces[page] < min(threshold, 255U))
		return false;
	t->bounces[page] = 0;
	t->until[page] = (now + READ_ONCE(hmmgpu_thrash_pin_ms)) ?: 1;
	return true;
}

/**
 * hmmgpu_thrash_pinned() - whether a page is to be mapped remotely
 * @t: the region's state
 * @page: the page's index in the region
 * @now: hmmgpu_thrash_now()
 *
 * Return: true while the page is pinned by hmmgpu_thrash_return().
 */
bool hmmgpu_thrash_pinned(struct hmmgpu_thrash *t, unsigned int page, u32 now)
{
	if (!t->until[page])
		return false;
	if ((s32)(t->until[page] - now) > 0)
		return true;
	t->until[page] = 0;
	return false;
}

/* A fault-around size parameter, in pages: a power of two, 1 to 512. */
static unsigned int hmmgpu_fault_around_param(unsigned int n)
{
	return rounddown_pow_of_two(clamp(n, 1U, (unsigned int)HMMGPU_REGION_PAGES));
}

/**
 * hmmgpu_fault_around() - the fault-around window of a CPU fault on VRAM
 * @stream: the process's state (&hmmgpu_mm.cpu_stream), updated; or NULL
 * @addr: the faulting address
 * @vm_start: start of its VMA
 * @vm_end: end of its VMA
 * @start: out, first address of the window
 * @end: out, end of the window
 *
 * See DOC: CPU fault-around. The window holds @addr, lies in the VMA and
 * starts on a multiple of fault_around_pages pages.
 */
void hmmgpu_fault_around(unsigned long *stream, unsigned long addr,
			 unsigned long vm_start, unsigned long vm_end,
			 unsigned long *start, unsigned long *end)
{
	unsigned int base = hmmgpu_fault_around_param(READ_ONCE(hmmgpu_fault_around_pages));
	unsigned int max = hmmgpu_fault_around_param(READ_ONCE(hmmgpu_fault_around_max_pages));
	unsigned long last = stream ? READ_ONCE(*stream) : 0;
	unsigned long next = last & PAGE_MASK;
	unsigned int pages = 1U << (last & ~PAGE_MASK);
	unsigned int n = base;

	if (base > 1 && next && addr >= next &&
	    addr - next < (unsigned long)pages << PAGE_SHIFT)
		n = clamp(pages * 2, base, max(base, max));
	*start = max(ALIGN_DOWN(addr, (unsigned long)base << PAGE_SHIFT), vm_start);
	*end = min(*start + ((unsigned long)n << PAGE_SHIFT), vm_end);
	if (stream)
		WRITE_ONCE(*stream, *end | ilog2(n));
}
