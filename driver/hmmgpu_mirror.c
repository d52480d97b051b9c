// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: device address spaces mirroring process address spaces
 */

/**
 * DOC: Overview
 *
 * A &struct hmmgpu_ctx is one device address space (a hardware context)
 * that mirrors the address space of the process that opened the device
 * file: a device virtual address is the process's virtual address. It is
 * created by the file's first launch and lives until the file is released
 * or the device is unregistered.
 *
 * The device page table starts empty; the device faults on every page it
 * has no mapping for, and the fault service (hmmgpu_fault.c) calls
 * hmmgpu_ctx_fault() for the faulting pages of each region. It moves the
 * pages the policy wants on the device there first (first touch, with the
 * prefetcher's neighbours, see hmmgpu_policy.c), then maps them. That
 * follows the HMM rules (Documentation/mm/hmm.rst): hmm_range_fault() under
 * a sequence count of the range's mmu_interval_notifier, with per-page
 * request flags (fault, write) so that one call covers a region's faults
 * and prefetches, and the device page table updated under the context's
 * lock only if no invalidation ran meanwhile (mmu_interval_read_retry()),
 * else again. A migration to the device (HMMGPU_IOCTL_MIGRATE) maps the
 * pages it leaves in the VRAM the same way, without faulting anything in
 * (hmmgpu_ctx_map_resident()).
 *
 * What a page maps to: a VRAM page of this device (a device-private page
 * hmm_range_fault() returns as is, since its owner is ours), a VRAM page of
 * a peer (hmmgpu_device_is_peer(): a peer mapping), or a system page,
 * mapped for DMA for as long as the device maps it. A VRAM page of a device
 * that is no peer, or a read-only VRAM page the device wants to write
 * (shared after fork), is faulted back to system memory as for a CPU
 * access, and serviced again.
 *
 * Each region remembers which of its pages the device maps from its own
 * VRAM (what the prefetcher counts) and, per page, what the thrashing
 * detection needs; the notifier tells it which pages a migration takes
 * away.
 *
 * Notifiers cover the address space in aligned regions of
 * %HMMGPU_REGION_SIZE, inserted when a page of the region is first
 * mapped. An invalidation (munmap, mprotect, COW, migration, reclaim, THP
 * split, exit) clears the device mappings of the range, waits for the
 * device's TLB invalidation, and only then lets the CPU-side change go on.
 */

/**
 * DOC: Locking
 *
 * &hmmgpu_ctx.regions_lock (mutex) is held by hmmgpu_ctx_map() from the
 * lookup of the region to the end, and by hmmgpu_ctx_destroy() to remove
 * the notifiers: a region is never freed under a fault. It is taken
 * without the mmap lock, which inserting a notifier and faulting take
 * inside it.
 *
 * &hmmgpu_ctx.lock (mutex) protects the device page table, &hmmgpu_ctx.dma
 * and the per-page state of the regions (&hmmgpu_region.local and
 * .thrash). The notifier callback takes it (called by mm with the
 * mmap lock or page locks held, possibly in reclaim), so nothing under it
 * may allocate with reclaim, take the mmap lock or wait for page locks; it
 * nests outside the queue 0 lock (the TLB invalidation). Page-table
 * directories are therefore allocated before it is taken
 * (&hmmgpu_backend_ops.mmu_prepare, under the regions lock, which
 * serialises it with the maps).
 *
 * The device's context table (&hmmgpu_device.contexts) is an allocating
 * xarray under its own lock; a context found there is only used with a
 * reference (hmmgpu_ctx_get()).
 */

#include <linux/dma-mapping.h>
#include <linux/hmm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "hmmgpu_drv.h"
#include "hmmgpu_trace.h"

/**
 * struct hmmgpu_region - the notifier of one aligned region of a context
 * @mni: the interval notifier
 * @ctx: the context
 * @local: pages mapped from the device's own VRAM (under &hmmgpu_ctx.lock)
 * @thrash: thrashing detection (under &hmmgpu_ctx.lock)
 */
struct hmmgpu_region {
	struct mmu_interval_notifier mni;
	struct hmmgpu_ctx *ctx;
	DECLARE_BITMAP(local, HMMGPU_REGION_PAGES);
	struct hmmgpu_thrash thrash;
};

/* The first address of the region of @va. */
static u64 hmmgpu_region_base(u64 va)
{
	return va & ~((u64)HMMGPU_REGION_SIZE - 1);
}

/*
 * Clear the device mappings of [@start, @end) and wait until the device no
 * longer uses them; then release the DMA mappings of the system pages.
 */
static void hmmgpu_ctx_unmap_locked(struct hmmgpu_ctx *ctx, u64 start,
				    u64 end)
{
	struct hmmgpu_device *hdev = ctx->hdev;
	struct hmmgpu_cmd cmd = {
		.op = HMMGPU_CMD_TLB_INVALIDATE,
		.inval = { .ctx = ctx->index, .start = start, .end = end },
	};
	unsigned long index;
	void *entry;

	lockdep_assert_held(&ctx->lock);
	if (!hdev->ops->mmu_unmap(hdev, ctx->pt, start, end))
		return;
	/*
	 * A failed invalidation means a halted or lost device: it executes
	 * nothing any more, so nothing uses the old translations either.
	 */
	atomic64_inc(&hdev->stats.tlb_invalidates);
	hmmgpu_queue_exec(hmmgpu_queue_get(hdev, 0), &cmd);
	xa_for_each_range(&ctx->dma, index, entry, start >> PAGE_SHIFT,
			  (end >> PAGE_SHIFT) - 1) {
		dma_unmap_page(hdev->dev.parent,
			       (dma_addr_t)xa_to_value(entry) << PAGE_SHIFT,
			       PAGE_SIZE, DMA_BIDIRECTIONAL);
		xa_erase(&ctx->dma, index);
	}
}

/*
 * The pages of [@start, @end) of @r are no longer mapped. Those mapped from
 * the VRAM that an hmmgpu migration (not an eviction, nor a munmap) takes
 * away have left the device (thrashing detection).
 */
static void hmmgpu_region_unmapped(struct hmmgpu_region *r,
				   const struct mmu_notifier_range *range,
				   u64 start, u64 end)
{
	u64 base = r->mni.interval_tree.start;
	unsigned int first = (start - base) >> PAGE_SHIFT;
	unsigned int last = (end - base) >> PAGE_SHIFT;
	unsigned int p = first;
	u32 now;

	lockdep_assert_held(&r->ctx->lock);
	if (range->event == MMU_NOTIFY_MIGRATE &&
	    range->owner == hmmgpu_pgmap_owner) {
		now = hmmgpu_thrash_now();
		for_each_set_bit_from(p, r->local, last)
			hmmgpu_thrash_leave(&r->thrash, p, now);
	}
	bitmap_clear(r->local, first, last - first);
}

/**
 * hmmgpu_ctx_unmap_pages() - unmap pages from a context with one TLB
 *	invalidation
 * @hdev: the device
 * @index: the context's hardware index
 * @va: the virtual pages, in ascending order
 * @n: their number
 *
 * For eviction, which then lets mm unmap the pages page by page: the
 * device's notifiers find them unmapped already. The pages are VRAM pages
 * (no DMA mapping to release); a page that maps something else by now is
 * unmapped all the same and faults again. The notifiers still keep the
 * context's per-page state.
 *
 * Context: process context; may be called with the mmap lock and page
 * locks held (nests like the notifiers).
 */
void hmmgpu_ctx_unmap_pages(struct hmmgpu_device *hdev, u32 index,
			    const u64 *va, unsigned int n)
{
	struct hmmgpu_ctx *ctx = hmmgpu_ctx_get(hdev, index);
	struct hmmgpu_cmd cmd = {
		.op = HMMGPU_CMD_TLB_INVALIDATE,
		.inval = { .ctx = index },
	};
	bool mapped = false;
	unsigned int i;

	if (!ctx)
		return;
	mutex_lock(&ctx->lock);
	for (i = 0; i < n && !ctx->torn; i++)
		mapped |= hdev->ops->mmu_unmap(hdev, ctx->pt, va[i],
					       va[i] + PAGE_SIZE);
	if (mapped) {
		cmd.inval.start = va[0];
		cmd.inval.end = va[n - 1] + PAGE_SIZE;
		atomic64_inc(&hdev->stats.tlb_invalidates);
		hmmgpu_queue_exec(hmmgpu_queue_get(hdev, 0), &cmd);
	}
	mutex_unlock(&ctx->lock);
	hmmgpu_ctx_put(ctx);
}

static bool hmmgpu_region_invalidate(struct mmu_interval_notifier *mni,
				     const struct mmu_notifier_range *range,
				     unsigned long cur_seq)
{
	struct hmmgpu_region *r = container_of(mni, struct hmmgpu_region, mni);
	struct hmmgpu_ctx *ctx = r->ctx;
	u64 start = max(range->start, mni->interval_tree.start);
	u64 end = min(range->end, mni->interval_tree.last + 1);

	/* Waiting for the device's TLB invalidation sleeps. */
	if (!mmu_notifier_range_blockable(range))
		return false;
	mutex_lock(&ctx->lock);
	mmu_interval_set_seq(mni, cur_seq);
	hmmgpu_region_unmapped(r, range, start, end);
	hmmgpu_ctx_unmap_locked(ctx, start, end);
	mutex_unlock(&ctx->lock);
	return true;
}

static const struct mmu_interval_notifier_ops hmmgpu_region_ops = {
	.invalidate = hmmgpu_region_invalidate,
};

/* The region of @va, inserting its notifier on first use; under regions_lock. */
static struct hmmgpu_region *hmmgpu_ctx_region(struct hmmgpu_ctx *ctx, u64 va)
{
	unsigned long index = va >> HMMGPU_REGION_SHIFT;
	struct hmmgpu_region *r;
	int ret;

	lockdep_assert_held(&ctx->regions_lock);
	if (ctx->dead)
		return ERR_PTR(-ENODEV);
	r = xa_load(&ctx->regions, index);
	if (r)
		return r;
	r = kvzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return ERR_PTR(-ENOMEM);
	r->ctx = ctx;
	ret = mmu_interval_notifier_insert(&r->mni, ctx->mm,
					   (unsigned long)index << HMMGPU_REGION_SHIFT,
					   HMMGPU_REGION_SIZE, &hmmgpu_region_ops);
	if (!ret)
		ret = xa_err(xa_store(&ctx->regions, index, r, GFP_KERNEL));
	if (ret) {
		if (r->mni.mm)
			mmu_interval_notifier_remove(&r->mni);
		kvfree(r);
		r = ERR_PTR(ret);
	}
	return r;
}

/*
 * The device mapping at @va of the page hmm_range_fault() returned in
 * @pfn; *@dma is set for a system page, which is DMA-mapped here.
 */
static int hmmgpu_ctx_pte(struct hmmgpu_ctx *ctx, u64 va, unsigned long pfn,
			  struct hmmgpu_pte *pte, dma_addr_t *dma)
{
	struct hmmgpu_device *hdev = ctx->hdev, *owner;
	struct page *page = hmm_pfn_to_page(pfn);

	memset(pte, 0, sizeof(*pte));
	pte->write = pfn & HMM_PFN_WRITE;
	*dma = DMA_MAPPING_ERROR;
	if (hmmgpu_is_vram_page(page)) {
		owner = hmmgpu_vram_page_device(page);
		pte->addr = hmmgpu_vram_page_offset(page);
		hmmgpu_vram_touch(page);
		if (owner == hdev) {
			pte->aperture = HMMGPU_PTE_VRAM;
			hmmgpu_vram_note_map(page, ctx->index, va);
			return 0;
		}
		if (!hmmgpu_device_is_peer(hdev, owner))
			return -EOPNOTSUPP;
		pte->aperture = HMMGPU_PTE_PEER;
		pte->peer = owner->peer_index;
		return 0;
	}
	*dma = dma_map_page(hdev->dev.parent, page, 0, PAGE_SIZE,
			    DMA_BIDIRECTIONAL);
	if (dma_mapping_error(hdev->dev.parent, *dma))
		return -ENOMEM;
	pte->aperture = HMMGPU_PTE_SYSMEM;
	pte->addr = *dma;
	return 0;
}

/**
 * struct hmmgpu_map_run - the scratch space of the fault service in one
 *	region of a context, used under &hmmgpu_ctx.regions_lock
 * @base: the region's first address
 * @lo: the first page of the span that hmm_range_fault() looks at
 * @hi: the end of that span
 * @faulted: the pages the device faulted on (input)
 * @write: the pages it wants to write (input)
 * @prefetch: pages prefetched besides them
 * @want: the pages to map: @faulted and @prefetch
 * @peek: pages of @want only looked up, mapped where present: prefetched
 *	pages the migration did not move
 * @migrate: the pages to move to the device first
 * @map: the pages being mapped
 * @repull: pages to fault back to system memory and service again: a
 *	read-only VRAM page the device wants to write (shared after fork), or
 *	a page of a device that is not a peer
 * @counted: the pages the prefetcher counts as there: mapped from the VRAM
 * @status: per page, the outcome of its migration
 * @pfns: per page, what hmm_range_fault() found (from @lo on)
 * @ptes: per page, its device mapping
 * @dma: per page, its DMA mapping (system pages) or DMA_MAPPING_ERROR
 * @tree: the prefetcher's scratch space
 */
struct hmmgpu_map_run {
	u64 base;
	unsigned int lo;
	unsigned int hi;
	DECLARE_BITMAP(faulted, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(write, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(prefetch, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(want, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(peek, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(migrate, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(map, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(repull, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(counted, HMMGPU_REGION_PAGES);
	u8 status[HMMGPU_REGION_PAGES];
	unsigned long pfns[HMMGPU_REGION_PAGES];
	struct hmmgpu_pte ptes[HMMGPU_REGION_PAGES];
	dma_addr_t dma[HMMGPU_REGION_PAGES];
	u16 tree[HMMGPU_PREFETCH_TREE];
};

/* The address of page @i of the run's region. */
static u64 hmmgpu_run_va(const struct hmmgpu_map_run *run, unsigned int i)
{
	return run->base + ((u64)i << PAGE_SHIFT);
}

/* Undo the DMA mappings and reservations of the pages in @run->map. */
static void hmmgpu_map_run_release(struct hmmgpu_ctx *ctx,
				   struct hmmgpu_map_run *run)
{
	unsigned int i;

	for_each_set_bit(i, run->map, HMMGPU_REGION_PAGES) {
		if (run->dma[i] == DMA_MAPPING_ERROR)
			continue;
		dma_unmap_page(ctx->hdev->dev.parent, run->dma[i], PAGE_SIZE,
			       DMA_BIDIRECTIONAL);
		xa_release(&ctx->dma, hmmgpu_run_va(run, i) >> PAGE_SHIFT);
	}
}

/*
 * Build the device mapping of every page in @run->map, DMA-mapping the
 * system pages and reserving their slots in &hmmgpu_ctx.dma.
 */
static int hmmgpu_map_run_ptes(struct hmmgpu_ctx *ctx,
			       struct hmmgpu_map_run *run)
{
	unsigned int i;
	int ret = 0;

	for_each_set_bit(i, run->map, HMMGPU_REGION_PAGES) {
		ret = hmmgpu_ctx_pte(ctx, hmmgpu_run_va(run, i),
				     run->pfns[i - run->lo], &run->ptes[i],
				     &run->dma[i]);
		if (!ret && run->dma[i] != DMA_MAPPING_ERROR) {
			ret = xa_reserve(&ctx->dma,
					 hmmgpu_run_va(run, i) >> PAGE_SHIFT,
					 GFP_KERNEL);
			if (ret)
				dma_unmap_page(ctx->hdev->dev.parent,
					       run->dma[i], PAGE_SIZE,
					       DMA_BIDIRECTIONAL);
		}
		if (ret)
			break;
	}
	if (ret) {
		/* the pages from @i on hold nothing */
		bitmap_clear(run->map, i, HMMGPU_REGION_PAGES - i);
		hmmgpu_map_run_release(ctx, run);
	}
	return ret;
}

/*
 * Record what @run mapped, under the context's lock: the DMA mappings of
 * its system pages (replacing those of pages mapped again for writing),
 * which pages the device now uses from its own VRAM, and the counters.
 */
static void hmmgpu_map_run_commit(struct hmmgpu_ctx *ctx,
				  struct hmmgpu_region *r,
				  struct hmmgpu_map_run *run)
{
	struct hmmgpu_stats *stats = &ctx->hdev->stats;
	unsigned int i, remote = 0, prefetched = 0;
	u32 now = hmmgpu_thrash_now();
	void *old;

	for_each_set_bit(i, run->map, HMMGPU_REGION_PAGES) {
		if (run->ptes[i].aperture != HMMGPU_PTE_VRAM) {
			remote++;
			clear_bit(i, r->local);
		} else if (!__test_and_set_bit(i, r->local)) {
			hmmgpu_thrash_arrive(&r->thrash, i, now);
			prefetched += test_bit(i, run->prefetch);
		}
		if (run->dma[i] == DMA_MAPPING_ERROR)
			continue;
		old = xa_store(&ctx->dma, hmmgpu_run_va(run, i) >> PAGE_SHIFT,
			       xa_mk_value(run->dma[i] >> PAGE_SHIFT),
			       GFP_NOWAIT);
		if (xa_is_value(old))
			dma_unmap_page(ctx->hdev->dev.parent,
				       (dma_addr_t)xa_to_value(old) << PAGE_SHIFT,
				       PAGE_SIZE, DMA_BIDIRECTIONAL);
	}
	atomic64_add(remote, &stats->remote_mapped_pages);
	atomic64_add(prefetched, &stats->prefetched_pages);
}

/*
 * Map the pages of @run->map in the device page table, under the lock,
 * unless @r was invalidated since @seq (-EAGAIN). The table's directories
 * for the span are allocated first.
 */
static int hmmgpu_map_run_apply(struct hmmgpu_ctx *ctx, struct hmmgpu_region *r,
				unsigned long seq, struct hmmgpu_map_run *run)
{
	struct hmmgpu_device *hdev = ctx->hdev;
	unsigned int i, end;
	int ret;

	if (bitmap_empty(run->map, HMMGPU_REGION_PAGES))
		return 0;
	ret = hdev->ops->mmu_prepare(hdev, ctx->pt, hmmgpu_run_va(run, run->lo),
				     run->hi - run->lo);
	if (!ret)
		ret = hmmgpu_map_run_ptes(ctx, run);
	if (ret)
		return ret;

	mutex_lock(&ctx->lock);
	if (mmu_interval_read_retry(&r->mni, seq)) {
		ret = -EAGAIN;
		goto err_unlock;
	}
	for_each_set_bitrange(i, end, run->map, HMMGPU_REGION_PAGES) {
		trace_hmmgpu_device_map(hdev->minor, ctx->index,
					hmmgpu_run_va(run, i), end - i,
					run->ptes[i].aperture,
					run->ptes[i].write);
		ret = hdev->ops->mmu_map(hdev, ctx->pt, hmmgpu_run_va(run, i),
					 &run->ptes[i], end - i);
		if (ret) {
			/* Pages mapped before the failure go again. */
			hmmgpu_ctx_unmap_locked(ctx, hmmgpu_run_va(run, run->lo),
						hmmgpu_run_va(run, run->hi));
			bitmap_clear(r->local, run->lo, run->hi - run->lo);
			goto err_unlock;
		}
	}
	hmmgpu_map_run_commit(ctx, r, run);
	mutex_unlock(&ctx->lock);
	return 0;

err_unlock:
	mutex_unlock(&ctx->lock);
	hmmgpu_map_run_release(ctx, run);
	return ret;
}

/*
 * Choose which pages of what hmm_range_fault() returned to map (@run->map)
 * and which to pull back to system memory first (@run->repull). With
 * @local_only, only pages of the device's own VRAM are mapped.
 */
static void hmmgpu_map_run_classify(struct hmmgpu_ctx *ctx,
				    struct hmmgpu_map_run *run, bool local_only)
{
	struct hmmgpu_device *owner;
	unsigned long pfn;
	struct page *page;
	unsigned int i;

	bitmap_zero(run->map, HMMGPU_REGION_PAGES);
	bitmap_zero(run->repull, HMMGPU_REGION_PAGES);
	for_each_set_bit(i, run->want, HMMGPU_REGION_PAGES) {
		pfn = run->pfns[i - run->lo];
		if (!(pfn & HMM_PFN_VALID) || (pfn & HMM_PFN_ERROR))
			continue;
		page = hmm_pfn_to_page(pfn);
		owner = hmmgpu_is_vram_page(page) ?
			hmmgpu_vram_page_device(page) : NULL;
		if (local_only && owner != ctx->hdev)
			continue;
		if (owner && ((owner != ctx->hdev &&
			       !hmmgpu_device_is_peer(ctx->hdev, owner)) ||
			      (test_bit(i, run->write) &&
			       !(pfn & HMM_PFN_WRITE)))) {
			if (!test_bit(i, run->peek))
				__set_bit(i, run->repull);
			continue;
		}
		__set_bit(i, run->map);
	}
}

/* Set the request flags of hmm_range_fault() for the pages of the span. */
static void hmmgpu_map_run_request(struct hmmgpu_map_run *run, bool fault)
{
	unsigned int i;

	for (i = run->lo; i < run->hi; i++) {
		run->pfns[i - run->lo] = 0;
		if (!fault || !test_bit(i, run->want) ||
		    test_bit(i, run->peek))
			continue;
		run->pfns[i - run->lo] = HMM_PFN_REQ_FAULT;
		if (test_bit(i, run->write))
			run->pfns[i - run->lo] |= HMM_PFN_REQ_WRITE;
	}
}

/*
 * hmm_range_fault() of @range, the pages of @run from @run->lo (requesting
 * what @fault says), retried while it races with invalidations, until
 * @timeout. Return: its result.
 */
static int hmmgpu_map_run_hmm(struct hmmgpu_ctx *ctx, struct hmm_range *range,
			      struct hmmgpu_map_run *run, bool fault,
			      unsigned long timeout)
{
	int ret;

	do {
		if (time_after(jiffies, timeout))
			return -EBUSY;
		hmmgpu_map_run_request(run, fault);
		range->notifier_seq = mmu_interval_read_begin(range->notifier);
		mmap_read_lock(ctx->mm);
		ret = hmm_range_fault(range);
		mmap_read_unlock(ctx->mm);
	} while (ret == -EBUSY);
	return ret;
}

/* The timeout of one hmm_range_fault() loop, from now. */
static unsigned long hmmgpu_map_run_timeout(void)
{
	return jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
}

/*
 * Fault in (@fault) or only look up the pages of @run->want as the CPU
 * would, for writing those in @run->write, and map them. @owner is the
 * device-private owner hmm_range_fault() leaves VRAM pages to, NULL to
 * pull VRAM pages back to system memory.
 */
static int hmmgpu_map_run_fault(struct hmmgpu_ctx *ctx, struct hmmgpu_region *r,
				struct hmmgpu_map_run *run, bool fault,
				void *owner)
{
	unsigned long timeout = hmmgpu_map_run_timeout();
	struct hmm_range range = {
		.notifier = &r->mni,
		.start = hmmgpu_run_va(run, run->lo),
		.end = hmmgpu_run_va(run, run->hi),
		.hmm_pfns = run->pfns,
		.pfn_flags_mask = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
		.dev_private_owner = owner,
	};
	int ret;

	do {
		ret = hmmgpu_map_run_hmm(ctx, &range, run, fault, timeout);
		if (ret)
			return ret;
		hmmgpu_map_run_classify(ctx, run, !fault);
		ret = hmmgpu_map_run_apply(ctx, r, range.notifier_seq, run);
	} while (ret == -EAGAIN);
	return ret;
}

/* Set @run->lo and @run->hi around the pages of @run->want. */
static void hmmgpu_map_run_span(struct hmmgpu_map_run *run)
{
	run->lo = find_first_bit(run->want, HMMGPU_REGION_PAGES);
	run->hi = find_last_bit(run->want, HMMGPU_REGION_PAGES) + 1;
}

/*
 * Bring the pages of @run->repull back to system memory (breaking COW for
 * writes), one run of them at a time.
 */
static int hmmgpu_map_run_repull(struct hmmgpu_ctx *ctx,
				 struct hmmgpu_region *r,
				 struct hmmgpu_map_run *run)
{
	unsigned long timeout = hmmgpu_map_run_timeout();
	struct hmm_range range = {
		.notifier = &r->mni,
		.hmm_pfns = run->pfns,
		.pfn_flags_mask = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
	};
	unsigned int i, end;
	int ret;

	bitmap_copy(run->want, run->repull, HMMGPU_REGION_PAGES);
	for_each_set_bitrange(i, end, run->repull, HMMGPU_REGION_PAGES) {
		run->lo = i;
		run->hi = end;
		range.start = hmmgpu_run_va(run, i);
		range.end = hmmgpu_run_va(run, end);
		ret = hmmgpu_map_run_hmm(ctx, &range, run, true, timeout);
		if (ret)
			return ret;
	}
	return 0;
}

/* Move the runs of @run->migrate to the device; note the pages returning. */
static void hmmgpu_map_run_migrate(struct hmmgpu_ctx *ctx,
				   struct hmmgpu_region *r,
				   struct hmmgpu_map_run *run)
{
	struct hmmgpu_device *hdev = ctx->hdev;
	unsigned int i, end, events = 0;
	u32 now;

	memset(run->status, HMMGPU_PAGE_NOT_PRESENT, sizeof(run->status));
	for_each_set_bitrange(i, end, run->migrate, HMMGPU_REGION_PAGES)
		if (hmmgpu_migrate_for_device(hdev, ctx->mm, ctx->advice,
					      hmmgpu_run_va(run, i),
					      hmmgpu_run_va(run, end),
					      run->status + i))
			return;

	now = hmmgpu_thrash_now();
	mutex_lock(&ctx->lock);
	for_each_set_bit(i, run->migrate, HMMGPU_REGION_PAGES)
		if (run->status[i] == HMMGPU_PAGE_MIGRATED)
			events += hmmgpu_thrash_return(&r->thrash, i, now);
	mutex_unlock(&ctx->lock);
	atomic64_add(events, &hdev->stats.thrashing_events);
}

/*
 * The pages of the region that would move to the device when it faults on
 * them, in @run->migrate: advice (or the fault_migrate default) says so and
 * they do not thrash.
 */
static void hmmgpu_map_run_policy(struct hmmgpu_ctx *ctx,
				  struct hmmgpu_region *r,
				  struct hmmgpu_map_run *run)
{
	struct hmmgpu_advice_attrs attrs;
	u64 va = run->base, end = va + HMMGPU_REGION_SIZE, next;
	unsigned int i;
	u32 now;

	bitmap_zero(run->migrate, HMMGPU_REGION_PAGES);
	for (; va < end; va = next) {
		next = min_t(u64, end, hmmgpu_advice_lookup(ctx->advice, va,
							    &attrs));
		if (hmmgpu_advice_migrate(&attrs, ctx->hdev->minor))
			bitmap_set(run->migrate, (va - run->base) >> PAGE_SHIFT,
				   (next - va) >> PAGE_SHIFT);
	}
	now = hmmgpu_thrash_now();
	mutex_lock(&ctx->lock);
	for_each_set_bit(i, run->migrate, HMMGPU_REGION_PAGES)
		if (hmmgpu_thrash_pinned(&r->thrash, i, now))
			__clear_bit(i, run->migrate);
	bitmap_copy(run->counted, r->local, HMMGPU_REGION_PAGES);
	mutex_unlock(&ctx->lock);
}

/* Clear the bits of [@va, @end) in @bits, a bitmap of @run's region. */
static void hmmgpu_map_run_clear(struct hmmgpu_map_run *run,
				 unsigned long *bits, u64 va, u64 end)
{
	bitmap_clear(bits, (va - run->base) >> PAGE_SHIFT,
		     (end - va) >> PAGE_SHIFT);
}

/*
 * Keep the pages of @run->prefetch only in VMAs that hold a faulting page
 * and that the device could read: elsewhere they would fail the whole
 * fault or belong to some other mapping of the process.
 */
static void hmmgpu_map_run_clip(struct hmmgpu_ctx *ctx,
				struct hmmgpu_map_run *run)
{
	u64 va = run->base, end = va + HMMGPU_REGION_SIZE, next;
	struct vm_area_struct *vma;
	unsigned int first, last;

	mmap_read_lock(ctx->mm);
	for (; va < end; va = next) {
		vma = find_vma(ctx->mm, va);
		if (!vma || vma->vm_start >= end) {
			hmmgpu_map_run_clear(run, run->prefetch, va, end);
			break;
		}
		if (vma->vm_start > va)
			hmmgpu_map_run_clear(run, run->prefetch, va,
					     vma->vm_start);
		va = max_t(u64, va, vma->vm_start);
		next = min_t(u64, end, vma->vm_end);
		first = (va - run->base) >> PAGE_SHIFT;
		last = (next - run->base) >> PAGE_SHIFT;
		if (!(vma->vm_flags & VM_READ) ||
		    (vma->vm_flags & (VM_IO | VM_PFNMAP)) ||
		    find_next_bit(run->faulted, last, first) >= last)
			hmmgpu_map_run_clear(run, run->prefetch, va, next);
	}
	mmap_read_unlock(ctx->mm);
}

/*
 * Prefetched pages that did not move are not worth faulting in (a hole
 * would be populated for nothing). But the migration unmapped them from
 * the device all the same (mm invalidates the whole range it migrates), so
 * they are looked up and, where present, mapped again where they lie:
 * otherwise a wave whose faulting pages prefetch each other's neighbours,
 * pages that cannot move, would fault on one half while the other is
 * mapped, for ever.
 */
static void hmmgpu_map_run_peek_unmoved(struct hmmgpu_map_run *run)
{
	unsigned int i;

	for_each_set_bit(i, run->prefetch, HMMGPU_REGION_PAGES) {
		if (run->status[i] == HMMGPU_PAGE_MIGRATED ||
		    run->status[i] == HMMGPU_PAGE_RESIDENT)
			continue;
		__clear_bit(i, run->prefetch);
		__set_bit(i, run->peek);
	}
}

/* Service the faults of @run in @r (see hmmgpu_ctx_fault()). */
static int hmmgpu_region_fault(struct hmmgpu_ctx *ctx, struct hmmgpu_region *r,
			       struct hmmgpu_map_run *run, bool prefetch)
{
	int ret, round;

	hmmgpu_map_run_policy(ctx, r, run);
	bitmap_zero(run->prefetch, HMMGPU_REGION_PAGES);
	bitmap_zero(run->peek, HMMGPU_REGION_PAGES);
	if (prefetch) {
		hmmgpu_prefetch_select(run->faulted, run->counted, run->migrate,
				       run->prefetch, run->tree);
		hmmgpu_map_run_clip(ctx, run);
	}
	bitmap_or(run->want, run->faulted, run->prefetch, HMMGPU_REGION_PAGES);
	bitmap_and(run->migrate, run->migrate, run->want, HMMGPU_REGION_PAGES);

	for (round = 0; ; round++) {
		hmmgpu_map_run_migrate(ctx, r, run);
		hmmgpu_map_run_peek_unmoved(run);
		hmmgpu_map_run_span(run);
		ret = hmmgpu_map_run_fault(ctx, r, run, true,
					   hmmgpu_pgmap_owner);
		if (ret || bitmap_empty(run->repull, HMMGPU_REGION_PAGES))
			return ret;
		/* Once back in system memory they are serviced again. */
		if (round)
			return -EBUSY;
		ret = hmmgpu_map_run_repull(ctx, r, run);
		if (ret)
			return ret;
		bitmap_and(run->migrate, run->migrate, run->repull,
			   HMMGPU_REGION_PAGES);
	}
}

/**
 * hmmgpu_ctx_fault() - service device faults on pages of one region
 * @ctx: the context
 * @base: the region's first address (aligned to %HMMGPU_REGION_SIZE)
 * @faulted: the faulting pages of the region, %HMMGPU_REGION_PAGES bits
 * @write: the pages of them the device wants to write
 * @prefetch: also prefetch neighbours (hmmgpu_policy.c)
 *
 * Pages whose advice (hmmgpu_advice.c) or, without advice, the
 * fault_migrate policy (the default) asks for it, and that do not thrash,
 * first move to this device's VRAM (zeroed VRAM for pages never touched,
 * VRAM to VRAM from a peer), where they can. Then they are faulted in as
 * the CPU would (hmm_range_fault()), for writing where asked, and mapped in
 * the device page table with the permission the CPU has, where they lie:
 * this VRAM, a peer's, or system memory. A page the device wants to write
 * that is read-only in VRAM (shared after fork), or one in the VRAM of a
 * device that is no peer, comes back to system memory first, as for a CPU
 * access, and is serviced again.
 *
 * Context: process context (the fault worker); takes the mmap lock.
 * Return: 0; -EFAULT when a faulting page is not mapped in the process or
 * not with the access asked for (none of the pages are then mapped),
 * -ESRCH when the process has exited, -ENODEV when the context was torn
 * down: the faults cannot be serviced; -EBUSY when invalidations kept
 * racing, -ENOMEM: they may be, later.
 */
int hmmgpu_ctx_fault(struct hmmgpu_ctx *ctx, u64 base,
		     const unsigned long *faulted, const unsigned long *write,
		     bool prefetch)
{
	struct hmmgpu_map_run *run = ctx->map_run;
	struct hmmgpu_region *r;
	int ret;

	if (WARN_ON_ONCE(base != hmmgpu_region_base(base) ||
			 bitmap_empty(faulted, HMMGPU_REGION_PAGES)))
		return -EINVAL;
	/* Also serialises the use of @run. */
	mutex_lock(&ctx->regions_lock);
	r = hmmgpu_ctx_region(ctx, base);
	if (IS_ERR(r)) {
		ret = PTR_ERR(r);
		goto out_unlock;
	}
	ret = -ESRCH;
	if (!mmget_not_zero(ctx->mm))
		goto out_unlock;
	run->base = base;
	bitmap_copy(run->faulted, faulted, HMMGPU_REGION_PAGES);
	bitmap_copy(run->write, write, HMMGPU_REGION_PAGES);
	ret = hmmgpu_region_fault(ctx, r, run, prefetch);
	mmput(ctx->mm);
out_unlock:
	mutex_unlock(&ctx->regions_lock);
	return ret == -EPERM ? -EFAULT : ret;
}

/**
 * hmmgpu_ctx_map() - map a run of pages of the process for the device
 * @ctx: the context
 * @va: the first page
 * @npages: pages, all in the region of @va
 * @write: the device wants to write them
 *
 * hmmgpu_ctx_fault() for a run of pages, without prefetching.
 *
 * Return: as hmmgpu_ctx_fault().
 */
int hmmgpu_ctx_map(struct hmmgpu_ctx *ctx, u64 va, unsigned long npages,
		   bool write)
{
	DECLARE_BITMAP(faulted, HMMGPU_REGION_PAGES) = {};
	DECLARE_BITMAP(wr, HMMGPU_REGION_PAGES) = {};
	u64 base = hmmgpu_region_base(va);

	if (WARN_ON_ONCE(!npages || hmmgpu_region_base(va + ((npages - 1)
					<< PAGE_SHIFT)) != base))
		return -EINVAL;
	bitmap_set(faulted, (va - base) >> PAGE_SHIFT, npages);
	if (write)
		bitmap_copy(wr, faulted, HMMGPU_REGION_PAGES);
	return hmmgpu_ctx_fault(ctx, base, faulted, wr, false);
}

/**
 * hmmgpu_ctx_map_resident() - map the pages of a range that are in the
 *	device's VRAM
 * @ctx: the context
 * @start: first page
 * @end: end of the range
 *
 * After a migration to the device (HMMGPU_IOCTL_MIGRATE), so that its
 * launches do not fault on the pages it was given. Nothing is faulted in
 * or moved; pages elsewhere are left to the device's faults. Best effort:
 * errors leave pages unmapped.
 *
 * Context: process context; takes the mmap lock for read.
 */
void hmmgpu_ctx_map_resident(struct hmmgpu_ctx *ctx, u64 start, u64 end)
{
	struct hmmgpu_map_run *run = ctx->map_run;
	struct hmmgpu_region *r;
	u64 base, first, last;

	if (!mmget_not_zero(ctx->mm))
		return;
	for (; start < end; start = base + HMMGPU_REGION_SIZE) {
		base = hmmgpu_region_base(start);
		first = (start - base) >> PAGE_SHIFT;
		last = (min_t(u64, end, base + HMMGPU_REGION_SIZE) - base) >>
		       PAGE_SHIFT;
		mutex_lock(&ctx->regions_lock);
		r = hmmgpu_ctx_region(ctx, base);
		if (IS_ERR(r)) {
			mutex_unlock(&ctx->regions_lock);
			break;
		}
		run->base = base;
		bitmap_zero(run->want, HMMGPU_REGION_PAGES);
		bitmap_set(run->want, first, last - first);
		bitmap_zero(run->write, HMMGPU_REGION_PAGES);
		bitmap_zero(run->prefetch, HMMGPU_REGION_PAGES);
		bitmap_zero(run->peek, HMMGPU_REGION_PAGES);
		hmmgpu_map_run_span(run);
		hmmgpu_map_run_fault(ctx, r, run, false, hmmgpu_pgmap_owner);
		mutex_unlock(&ctx->regions_lock);
	}
	mmput(ctx->mm);
}

static int hmmgpu_ctx_bind(struct hmmgpu_ctx *ctx, u64 root)
{
	struct hmmgpu_cmd cmd = {
		.op = HMMGPU_CMD_CTX_BIND,
		.ctx = { .index = ctx->index, .root = root },
	};

	return hmmgpu_queue_exec(hmmgpu_queue_get(ctx->hdev, 0), &cmd);
}

/**
 * hmmgpu_ctx_create() - create the device address space of a file
 * @hdev: a device with %HMMGPU_CAP_COMPUTE
 * @mm: the file's address space (mmgrab()bed by the file)
 *
 * Context: process context, sleeps.
 * Return: the context, or ERR_PTR(-EBUSY) when every hardware context is
 * taken, ERR_PTR(-ENODEV) when the device is going away, ERR_PTR(-ENOMEM),
 * or the error of the bind command.
 */
struct hmmgpu_ctx *hmmgpu_ctx_create(struct hmmgpu_device *hdev,
				     struct mm_struct *mm)
{
	struct hmmgpu_ctx *ctx;
	u32 index;
	int ret;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return ERR_PTR(-ENOMEM);
	ctx->map_run = kvmalloc(sizeof(*ctx->map_run), GFP_KERNEL);
	if (!ctx->map_run) {
		kfree(ctx);
		return ERR_PTR(-ENOMEM);
	}
	ctx->hdev = hdev;
	ctx->mm = mm;
	mmgrab(mm);
	mutex_init(&ctx->lock);
	mutex_init(&ctx->regions_lock);
	xa_init(&ctx->regions);
	xa_init(&ctx->dma);
	kref_init(&ctx->ref);

	xa_lock(&hdev->contexts);
	ret = hdev->contexts_closed ? -ENODEV :
	      __xa_alloc(&hdev->contexts, &index, NULL,
			 XA_LIMIT(0, hdev->num_contexts - 1), GFP_KERNEL);
	xa_unlock(&hdev->contexts);
	if (ret)
		goto err_free;
	ctx->index = index;
	ctx->advice = hmmgpu_mm_get(mm);
	if (IS_ERR(ctx->advice)) {
		ret = PTR_ERR(ctx->advice);
		goto err_erase;
	}
	ret = hdev->ops->mmu_alloc(hdev, &ctx->pt, &ctx->root);
	if (ret)
		goto err_advice;
	ret = hmmgpu_ctx_bind(ctx, ctx->root);
	if (ret)
		goto err_mmu;
	xa_store(&hdev->contexts, index, ctx, GFP_KERNEL);
	return ctx;

err_mmu:
	hdev->ops->mmu_free(hdev, ctx->pt);
err_advice:
	hmmgpu_mm_put(ctx->advice);
err_erase:
	xa_erase(&hdev->contexts, index);
err_free:
	mmdrop(mm);
	kvfree(ctx->map_run);
	kfree(ctx);
	return ERR_PTR(ret);
}

/**
 * hmmgpu_ctx_get() - look a context up by its hardware index
 * @hdev: the device
 * @index: the index a fault names
 *
 * Return: the context with a reference (hmmgpu_ctx_put()), or NULL.
 */
struct hmmgpu_ctx *hmmgpu_ctx_get(struct hmmgpu_device *hdev, u32 index)
{
	struct hmmgpu_ctx *ctx;

	xa_lock(&hdev->contexts);
	ctx = xa_load(&hdev->contexts, index);
	if (ctx && !kref_get_unless_zero(&ctx->ref))
		ctx = NULL;
	xa_unlock(&hdev->contexts);
	return ctx;
}

static void hmmgpu_ctx_release(struct kref *ref)
{
	struct hmmgpu_ctx *ctx = container_of(ref, struct hmmgpu_ctx, ref);

	hmmgpu_mm_put(ctx->advice);
	mmdrop(ctx->mm);
	kvfree(ctx->map_run);
	kfree(ctx);
}

/**
 * hmmgpu_ctx_put() - drop a reference of hmmgpu_ctx_get()
 * @ctx: the context
 */
void hmmgpu_ctx_put(struct hmmgpu_ctx *ctx)
{
	kref_put(&ctx->ref, hmmgpu_ctx_release);
}

/**
 * hmmgpu_ctx_destroy() - tear a context down
 * @ctx: the context, no longer reachable through its file
 *
 * Unbinds the hardware context (which fails its stalled launches), removes
 * the notifiers, unmaps everything and frees the page table. Called at the
 * file's release or when the device is unregistered, whichever comes first;
 * the second call does nothing.
 *
 * Context: process context, sleeps.
 */
void hmmgpu_ctx_destroy(struct hmmgpu_ctx *ctx)
{
	struct hmmgpu_device *hdev = ctx->hdev;
	struct hmmgpu_region *r;
	unsigned long index;
	bool unbound;

	mutex_lock(&ctx->regions_lock);
	if (ctx->dead) {
		mutex_unlock(&ctx->regions_lock);
		return;
	}
	ctx->dead = true;
	xa_erase(&hdev->contexts, ctx->index);

	unbound = !hmmgpu_ctx_bind(ctx, 0);
	xa_for_each(&ctx->regions, index, r) {
		mmu_interval_notifier_remove(&r->mni);
		kvfree(r);
	}
	xa_destroy(&ctx->regions);
	mutex_unlock(&ctx->regions_lock);

	mutex_lock(&ctx->lock);
	hmmgpu_ctx_unmap_locked(ctx, 0, 1ULL << HMMGPU_VA_BITS);
	ctx->torn = true;
	mutex_unlock(&ctx->lock);
	xa_destroy(&ctx->dma);
	/* A device that failed to unbind may still walk the table. */
	if (unbound)
		hdev->ops->mmu_free(hdev, ctx->pt);
	else
		dev_warn(&hdev->dev, "context %u not unbound, its page table is leaked\n",
			 ctx->index);
}
