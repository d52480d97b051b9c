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
 * hmmgpu_ctx_map() for the faulting pages. That follows the HMM rules
 * (Documentation/mm/hmm.rst): hmm_range_fault() under a sequence count of
 * the range's mmu_interval_notifier, and the device page table updated
 * under the context's lock only if no invalidation ran meanwhile
 * (mmu_interval_read_retry()), else again.
 *
 * What a page maps to: a VRAM page of this device (a device-private page
 * hmm_range_fault() returns as is, since its owner is ours), a VRAM page of
 * a peer device served by the same hardware (a peer mapping), or a system
 * page, mapped for DMA for as long as the device maps it.
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
 * &hmmgpu_ctx.lock (mutex) protects the device page table and
 * &hmmgpu_ctx.dma. The notifier callback takes it (called by mm with the
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

/**
 * struct hmmgpu_region - the notifier of one aligned region of a context
 * @mni: the interval notifier
 * @ctx: the context
 */
struct hmmgpu_region {
	struct mmu_interval_notifier mni;
	struct hmmgpu_ctx *ctx;
};

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
	hmmgpu_queue_exec(hmmgpu_queue_get(hdev, 0), &cmd);
	xa_for_each_range(&ctx->dma, index, entry, start >> PAGE_SHIFT,
			  (end >> PAGE_SHIFT) - 1) {
		dma_unmap_page(hdev->dev.parent,
			       (dma_addr_t)xa_to_value(entry) << PAGE_SHIFT,
			       PAGE_SIZE, DMA_BIDIRECTIONAL);
		xa_erase(&ctx->dma, index);
	}
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
	r = kzalloc(sizeof(*r), GFP_KERNEL);
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
		kfree(r);
		r = ERR_PTR(ret);
	}
	return r;
}

/*
 * The device mapping of the page hmm_range_fault() returned in @pfn;
 * *@dma is set for a system page, which is DMA-mapped here.
 */
static int hmmgpu_ctx_pte(struct hmmgpu_ctx *ctx, unsigned long pfn,
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
			return 0;
		}
		/* Peer access needs the same hardware (one emulator). */
		if (owner->ops != hdev->ops)
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
 * struct hmmgpu_map_run - scratch space of one hmmgpu_ctx_map()
 * @pfns: per page, what hmm_range_fault() found
 * @ptes: per page, its device mapping
 * @dma: per page, its DMA mapping (system pages) or DMA_MAPPING_ERROR
 */
struct hmmgpu_map_run {
	unsigned long pfns[HMMGPU_REGION_PAGES];
	struct hmmgpu_pte ptes[HMMGPU_REGION_PAGES];
	dma_addr_t dma[HMMGPU_REGION_PAGES];
};

/* Undo the DMA mappings of the first @n pages of @run. */
static void hmmgpu_map_run_unmap(struct hmmgpu_ctx *ctx,
				 struct hmmgpu_map_run *run, unsigned long n)
{
	while (n--)
		if (run->dma[n] != DMA_MAPPING_ERROR)
			dma_unmap_page(ctx->hdev->dev.parent, run->dma[n],
				       PAGE_SIZE, DMA_BIDIRECTIONAL);
}

/*
 * Record the DMA mappings of the system pages now mapped, replacing those
 * of pages mapped again (a write upgrade). Under the context's lock: the
 * slots were reserved.
 */
static void hmmgpu_ctx_track_dma(struct hmmgpu_ctx *ctx,
				 struct hmmgpu_map_run *run, u64 va,
				 unsigned long n)
{
	unsigned long i;
	void *old;

	for (i = 0; i < n; i++) {
		if (run->dma[i] == DMA_MAPPING_ERROR)
			continue;
		old = xa_store(&ctx->dma, (va >> PAGE_SHIFT) + i,
			       xa_mk_value(run->dma[i] >> PAGE_SHIFT),
			       GFP_NOWAIT);
		if (xa_is_value(old))
			dma_unmap_page(ctx->hdev->dev.parent,
				       (dma_addr_t)xa_to_value(old) << PAGE_SHIFT,
				       PAGE_SIZE, DMA_BIDIRECTIONAL);
	}
}

/*
 * Map the @n pages of @run at @va, under the lock, unless @r was
 * invalidated since @seq (-EAGAIN).
 */
static int hmmgpu_ctx_map_run(struct hmmgpu_ctx *ctx, struct hmmgpu_region *r,
			      unsigned long seq, u64 va,
			      struct hmmgpu_map_run *run, unsigned long n)
{
	struct hmmgpu_device *hdev = ctx->hdev;
	unsigned long i, pgoff = va >> PAGE_SHIFT;
	int ret;

	ret = hdev->ops->mmu_prepare(hdev, ctx->pt, va, n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		ret = hmmgpu_ctx_pte(ctx, run->pfns[i], &run->ptes[i],
				     &run->dma[i]);
		if (!ret && run->dma[i] != DMA_MAPPING_ERROR)
			ret = xa_reserve(&ctx->dma, pgoff + i, GFP_KERNEL);
		if (ret) {
			hmmgpu_map_run_unmap(ctx, run, i + 1);
			goto err_release;
		}
	}

	mutex_lock(&ctx->lock);
	if (mmu_interval_read_retry(&r->mni, seq)) {
		ret = -EAGAIN;
		goto err_unlock;
	}
	ret = hdev->ops->mmu_map(hdev, ctx->pt, va, run->ptes, n);
	if (ret) {
		/* Pages mapped before the failure go again, with their DMA. */
		hmmgpu_ctx_unmap_locked(ctx, va, va + (n << PAGE_SHIFT));
		goto err_unlock;
	}
	hmmgpu_ctx_track_dma(ctx, run, va, n);
	mutex_unlock(&ctx->lock);
	return 0;

err_unlock:
	mutex_unlock(&ctx->lock);
	hmmgpu_map_run_unmap(ctx, run, n);
	i = n;
err_release:
	while (i--)
		xa_release(&ctx->dma, pgoff + i);
	return ret;
}

/* hmmgpu_ctx_map() for pages of one advice; @migrate: move them first. */
static int __hmmgpu_ctx_map(struct hmmgpu_ctx *ctx, u64 va,
			    unsigned long npages, bool write, bool migrate)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	struct hmmgpu_map_run *run = ctx->map_run;
	struct hmmgpu_region *r;
	struct hmm_range range = {
		.start = va,
		.end = va + (npages << PAGE_SHIFT),
		.default_flags = HMM_PFN_REQ_FAULT |
				 (write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = hmmgpu_pgmap_owner,
	};
	unsigned long i;
	int ret;

	if (WARN_ON_ONCE(!npages || (va >> HMMGPU_REGION_SHIFT) !=
			 ((range.end - 1) >> HMMGPU_REGION_SHIFT)))
		return -EINVAL;
	range.hmm_pfns = run->pfns;

	/* Also serialises the use of @run. */
	mutex_lock(&ctx->regions_lock);
	r = hmmgpu_ctx_region(ctx, va);
	if (IS_ERR(r)) {
		ret = PTR_ERR(r);
		goto out_unlock;
	}
	range.notifier = &r->mni;
	ret = -EBUSY;
	if (!mmget_not_zero(ctx->mm))
		goto out_unlock;
	/* First touch: the pages move to this device, where they can. */
	if (migrate)
		hmmgpu_migrate_for_device(ctx->hdev, ctx->mm, va, range.end);
	do {
		if (time_after(jiffies, timeout)) {
			ret = -EBUSY;
			break;
		}
		range.notifier_seq = mmu_interval_read_begin(&r->mni);
		mmap_read_lock(ctx->mm);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(ctx->mm);
		if (ret == -EBUSY)
			continue;
		if (ret)
			break;
		/*
		 * hmm_range_fault() reports our own VRAM pages as they are,
		 * without the write fault asked for: a read-only one (a
		 * read-only VMA, or shared after fork) is faulted like any
		 * other page, which brings it back to system memory and
		 * breaks COW, or fails for a read-only VMA.
		 */
		for (i = 0; write && i < npages; i++)
			if (!(run->pfns[i] & HMM_PFN_WRITE))
				break;
		if (write && i < npages && range.dev_private_owner) {
			range.dev_private_owner = NULL;
			ret = -EAGAIN;
			continue;
		}
		ret = hmmgpu_ctx_map_run(ctx, r, range.notifier_seq, va, run,
					 npages);
	} while (ret == -EBUSY || ret == -EAGAIN);
	mmput(ctx->mm);
out_unlock:
	mutex_unlock(&ctx->regions_lock);
	return ret == -EPERM ? -EFAULT : ret;
}

/**
 * hmmgpu_ctx_map() - map pages of the process for the device
 * @ctx: the context
 * @va: the first page
 * @npages: pages, all in the region of @va
 * @write: the device wants to write them
 *
 * Pages whose advice (hmmgpu_advice.c) or, without advice, the
 * fault_migrate policy (the default) asks for it first move to this
 * device's VRAM (zeroed VRAM for pages never touched), where they can.
 * Then they are faulted in as the CPU would (hmm_range_fault()), for
 * writing when @write, and mapped in the device page table with the
 * permission the CPU has, where they lie: this VRAM, a peer's, or system
 * memory.
 *
 * Context: process context (the fault worker); takes the mmap lock.
 * Return: 0; -EFAULT when a page is not mapped in the process or not with
 * the access asked for, -EBUSY when the process is exiting or invalidations
 * kept racing; -EOPNOTSUPP for a page in another kind of device's memory;
 * -ENOMEM; -ENODEV when the context was torn down. On an error the pages
 * of the run from the range of advice that failed on are not mapped.
 */
int hmmgpu_ctx_map(struct hmmgpu_ctx *ctx, u64 va, unsigned long npages,
		   bool write)
{
	u64 end = va + (npages << PAGE_SHIFT), next;
	struct hmmgpu_advice_attrs attrs;
	bool migrate;
	int ret;

	for (; va < end; va = next) {
		next = min_t(u64, end,
			     hmmgpu_advice_lookup(ctx->advice, va, &attrs));
		migrate = hmmgpu_advice_migrate(&attrs, ctx->hdev->minor);
		ret = __hmmgpu_ctx_map(ctx, va, (next - va) >> PAGE_SHIFT,
				       write, migrate);
		if (ret)
			return ret;
	}
	return 0;
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
 * taken, ERR_PTR(-ENOMEM), or the error of the bind command.
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

	ret = xa_alloc(&hdev->contexts, &index, NULL,
		       XA_LIMIT(0, hdev->num_contexts - 1), GFP_KERNEL);
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
		kfree(r);
	}
	xa_destroy(&ctx->regions);
	mutex_unlock(&ctx->regions_lock);

	mutex_lock(&ctx->lock);
	hmmgpu_ctx_unmap_locked(ctx, 0, 1ULL << HMMGPU_VA_BITS);
	mutex_unlock(&ctx->lock);
	xa_destroy(&ctx->dma);
	/* A device that failed to unbind may still walk the table. */
	if (unbound)
		hdev->ops->mmu_free(hdev, ctx->pt);
	else
		dev_warn(&hdev->dev, "context %u not unbound, its page table is leaked\n",
			 ctx->index);
}
