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
 * neighbours (hmmgpu_migrate_to_ram()): a window around the faulting page.
 * Every such migration waits for a copy-engine round trip, which costs
 * more than copying the window, so the window grows where the process is
 * evidently going to read more:
 *
 * - In order, the way file readahead serves sequential reads: while the
 *   process's faults keep landing in the window just after the previous
 *   one, the window doubles, up to fault_around_max_pages (2 MiB, amdkfd's
 *   migration granularity).
 * - By density, the way the device fault service prefetches (DOC:
 *   Prefetching): in the region (2 MiB) of the fault, the pages that CPU
 *   faults brought back lately count, and the window is the largest
 *   naturally aligned subregion around the faulting page, up to
 *   fault_around_max_pages, in which at least prefetch_threshold percent
 *   of the pages count. A process that reads a buffer in random order
 *   thus takes the second half of each region in one fault.
 *
 * Otherwise the window is the aligned fault_around_pages around the page.
 * Neither rule applies in a region whose pages the device's own faults
 * moved to it within the last thrash_lapse_ms: there the device is at work
 * and would fault the pages straight back (the two would thrash), so the
 * CPU takes only the base window. A fault_around_pages of 1 turns
 * fault-around off, growth included; a prefetch_threshold of 0 turns the
 * density rule off.
 *
 * The state is per process (&struct hmmgpu_cpu_faults in &struct
 * hmmgpu_mm, reached from the faulting page): the last window, and a
 * bitmap of the pages brought back for each of the regions faulted in
 * lately (a direct-mapped table of %HMMGPU_CPU_REGIONS regions, 128 MiB;
 * a region not faulted in for a second is forgotten). Pages that move to a
 * device again (hmmgpu_migrate.c) or are unmapped are cleared from it.
 * Streams of several threads interleave and then get the density rule
 * only.
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
 * hmmgpu_cpu_faults_init() - initialise the fault-around state of a process
 * @cf: the state, zeroed
 */
void hmmgpu_cpu_faults_init(struct hmmgpu_cpu_faults *cf)
{
	spin_lock_init(&cf->lock);
}

/* The entry of the region of @addr, or NULL when it is not in the table. */
static struct hmmgpu_cpu_region *
hmmgpu_cpu_region(struct hmmgpu_cpu_faults *cf, unsigned long addr)
{
	unsigned long base = addr & ~(HMMGPU_REGION_SIZE - 1);
	struct hmmgpu_cpu_region *cr;

	cr = &cf->regions[(base >> HMMGPU_REGION_SHIFT) % HMMGPU_CPU_REGIONS];
	return cr->base == base ? cr : NULL;
}

/*
 * The entry of the region of @addr, emptied when another region held its
 * slot or when @forget says so.
 */
static struct hmmgpu_cpu_region *
hmmgpu_cpu_region_take(struct hmmgpu_cpu_faults *cf, unsigned long addr,
		       bool forget)
{
	unsigned long base = addr & ~(HMMGPU_REGION_SIZE - 1);
	struct hmmgpu_cpu_region *cr;

	cr = &cf->regions[(base >> HMMGPU_REGION_SHIFT) % HMMGPU_CPU_REGIONS];
	if (cr->base != base || forget) {
		cr->base = base;
		cr->busy = 0;
		bitmap_zero(cr->back, HMMGPU_REGION_PAGES);
	}
	return cr;
}

/* Pages of bits [@start, @start + @n) of a region's bitmap that are set. */
static unsigned int hmmgpu_bits_in(const unsigned long *map,
				   unsigned int start, unsigned int n)
{
	DECLARE_BITMAP(tmp, HMMGPU_REGION_PAGES);

	bitmap_shift_right(tmp, map, start, HMMGPU_REGION_PAGES);
	return bitmap_weight(tmp, n);
}

/*
 * The density window (see DOC: CPU fault-around) of a fault at page @page
 * of region @cr, or 0: the largest aligned subregion of at most @max pages,
 * larger than @min, where @threshold percent of the pages are back.
 */
static unsigned int hmmgpu_fault_density(const struct hmmgpu_cpu_region *cr,
					 unsigned int page, unsigned int min,
					 unsigned int max, unsigned int threshold)
{
	unsigned int k, first, count;

	for (k = max; k > min; k /= 2) {
		first = ALIGN_DOWN(page, k);
		count = hmmgpu_bits_in(cr->back, first, k) +
			!test_bit(page, cr->back);
		if (count * 100 >= k * threshold)
			return k;
	}
	return 0;
}

/**
 * hmmgpu_fault_around() - the fault-around window of a CPU fault on VRAM
 * @cf: the process's state, updated; or NULL (the base window)
 * @addr: the faulting address
 * @vm_start: start of its VMA
 * @vm_end: end of its VMA
 * @start: out, first address of the window
 * @end: out, end of the window
 *
 * See DOC: CPU fault-around. The window holds @addr, lies in the VMA and
 * starts on a multiple of fault_around_pages pages. It is recorded as
 * brought back.
 */
void hmmgpu_fault_around(struct hmmgpu_cpu_faults *cf, unsigned long addr,
			 unsigned long vm_start, unsigned long vm_end,
			 unsigned long *start, unsigned long *end)
{
	unsigned int base = hmmgpu_fault_around_param(READ_ONCE(hmmgpu_fault_around_pages));
	unsigned int max = hmmgpu_fault_around_param(READ_ONCE(hmmgpu_fault_around_max_pages));
	unsigned int threshold = READ_ONCE(hmmgpu_prefetch_threshold);
	unsigned long region = addr & ~(HMMGPU_REGION_SIZE - 1);
	unsigned int page = (addr - region) >> PAGE_SHIFT;
	unsigned int n = base, k = 0, first, last;
	struct hmmgpu_cpu_region *cr;

	max = max(base, max);
	*start = ALIGN_DOWN(addr, (unsigned long)base << PAGE_SHIFT);
	if (!cf || base == 1)
		goto out;

	spin_lock(&cf->lock);
	cr = hmmgpu_cpu_region(cf, addr);
	if (cr && cr->busy &&
	    time_before(jiffies, cr->busy + msecs_to_jiffies(READ_ONCE(hmmgpu_thrash_lapse_ms))))
		max = base;	/* the device is at work here */
	if (cr && time_after(jiffies, cr->stamp + HZ))
		cr = NULL;
	if (cf->next && addr >= cf->next &&
	    addr - cf->next < (unsigned long)cf->pages << PAGE_SHIFT)
		n = clamp(cf->pages * 2, base, max);
	if (cr && threshold)
		k = hmmgpu_fault_density(cr, page, n, max, min(threshold, 100U));
	if (k) {
		n = k;
		*start = region + ((unsigned long)ALIGN_DOWN(page, k) << PAGE_SHIFT);
	}
	if (!cr)	/* new, or stale: it starts over */
		cr = hmmgpu_cpu_region_take(cf, region, true);
	cr->stamp = jiffies;
	/* The window, as far as it lies in this region, comes back. */
	first = (*start - region) >> PAGE_SHIFT;
	last = min_t(unsigned long, first + n, HMMGPU_REGION_PAGES);
	bitmap_set(cr->back, first, last - first);
	cf->next = *start + ((unsigned long)n << PAGE_SHIFT);
	cf->pages = n;
	spin_unlock(&cf->lock);
out:
	*end = min(*start + ((unsigned long)n << PAGE_SHIFT), vm_end);
	*start = max(*start, vm_start);
}

/**
 * hmmgpu_fault_around_forget() - pages left system memory or the process
 * @cf: the process's state
 * @start: first address
 * @end: end of the range
 * @device_fault: a device fault moved the pages to its VRAM
 *
 * The pages of [@start, @end) moved to a device, or were unmapped: they no
 * longer count as brought back, and a window that ended in the range no
 * longer makes the next fault sequential. After a device fault, the CPU's
 * faults in the region keep to the base window for a while (see DOC: CPU
 * fault-around).
 *
 * Context: any; takes &hmmgpu_cpu_faults.lock.
 */
void hmmgpu_fault_around_forget(struct hmmgpu_cpu_faults *cf,
				unsigned long start, unsigned long end,
				bool device_fault)
{
	unsigned long base, first, last;
	struct hmmgpu_cpu_region *cr;
	unsigned int i;

	spin_lock(&cf->lock);
	if (cf->next > start && cf->next <= end)
		cf->next = 0;
	if (device_fault) {
		/* The fault service moves pages of one region at a time. */
		cr = hmmgpu_cpu_region_take(cf, start, false);
		cr->stamp = jiffies;
		cr->busy = jiffies ? jiffies : 1;
	}
	for (i = 0; i < HMMGPU_CPU_REGIONS; i++) {
		struct hmmgpu_cpu_region *cr = &cf->regions[i];

		base = cr->base;
		if (!base || end <= base || start >= base + HMMGPU_REGION_SIZE)
			continue;
		first = (max(start, base) - base) >> PAGE_SHIFT;
		last = (min(end, base + HMMGPU_REGION_SIZE) - base) >> PAGE_SHIFT;
		bitmap_clear(cr->back, first, last - first);
	}
	spin_unlock(&cf->lock);
}
