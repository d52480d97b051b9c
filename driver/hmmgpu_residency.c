// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: where the pages of a range are, and how a device maps them
 */

/**
 * DOC: Residency query
 *
 * HMMGPU_IOCTL_RESIDENCY reports the pages of a range of the caller's
 * address space as runs: their location (not populated, system memory, or
 * the VRAM of which device) from a non-faulting hmm_range_fault() in
 * batches of %HMMGPU_RESIDENCY_BATCH pages, and how the file's device maps
 * them, from its page table (&hmmgpu_backend_ops.mmu_query) under the
 * context's lock. A temporary interval notifier over the range gives
 * hmm_range_fault() its sequence count; the report being a snapshot, a
 * race only retries the batch, it is not an error.
 */

#include <linux/hmm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"

#define HMMGPU_RESIDENCY_BATCH	512
/*
 * Runs gathered before they are copied to user space: a whole batch's, and
 * the last run of the batch before, which may still grow. The copy happens
 * between batches, never under the context's lock: it may fault, and a
 * fault may need that lock (the context's notifier).
 */
#define HMMGPU_RESIDENCY_RUNS	(HMMGPU_RESIDENCY_BATCH + 1)

/**
 * struct hmmgpu_residency_ctx - the state of one query
 * @args: the ioctl's argument
 * @ctx: the file's device address space, or NULL
 * @pfns: one batch's hmm_range_fault() result
 * @runs: runs not yet copied out; the last one may still grow
 * @nruns: entries of @runs
 * @copied: runs copied to user space
 */
struct hmmgpu_residency_ctx {
	struct hmmgpu_residency *args;
	struct hmmgpu_ctx *ctx;
	unsigned long pfns[HMMGPU_RESIDENCY_BATCH];
	struct hmmgpu_run runs[HMMGPU_RESIDENCY_RUNS];
	unsigned int nruns;
	u32 copied;
};

static bool hmmgpu_residency_invalidate(struct mmu_interval_notifier *mni,
					const struct mmu_notifier_range *range,
					unsigned long cur_seq)
{
	mmu_interval_set_seq(mni, cur_seq);
	return true;
}

static const struct mmu_interval_notifier_ops hmmgpu_residency_ops = {
	.invalidate = hmmgpu_residency_invalidate,
};

/* Copy the complete runs out, keeping the last (it may grow). */
static int hmmgpu_residency_flush(struct hmmgpu_residency_ctx *rc, bool all)
{
	struct hmmgpu_run __user *urun = u64_to_user_ptr(rc->args->runs);
	unsigned int n;

	if (!rc->nruns)
		return 0;
	n = all ? rc->nruns : rc->nruns - 1;
	if (!n)
		return 0;
	if (copy_to_user(urun + rc->copied, rc->runs, n * sizeof(rc->runs[0])))
		return -EFAULT;
	rc->copied += n;
	memmove(rc->runs, rc->runs + n, (rc->nruns - n) * sizeof(rc->runs[0]));
	rc->nruns -= n;
	return 0;
}

/*
 * Add one page to the runs; there is room for a batch since the last
 * flush. Return: 0, or 1 when @max_runs are full (the page is not added).
 */
static int hmmgpu_residency_add(struct hmmgpu_residency_ctx *rc,
				const struct hmmgpu_run *page)
{
	struct hmmgpu_run *last = rc->nruns ? &rc->runs[rc->nruns - 1] : NULL;

	if (last && last->location == page->location &&
	    last->device == page->device && last->mapping == page->mapping &&
	    last->flags == page->flags &&
	    last->addr + (last->npages << PAGE_SHIFT) == page->addr) {
		last->npages++;
		return 0;
	}
	if (rc->copied + rc->nruns == rc->args->max_runs)
		return 1;
	if (WARN_ON_ONCE(rc->nruns == HMMGPU_RESIDENCY_RUNS))
		return 1;
	rc->runs[rc->nruns++] = *page;
	return 0;
}

/* Describe the page at @va, which hmm_range_fault() found as @pfn. */
static void hmmgpu_residency_page(struct hmmgpu_residency_ctx *rc, u64 va,
				  unsigned long pfn, struct hmmgpu_run *run)
{
	struct hmmgpu_ctx *ctx = rc->ctx;
	struct hmmgpu_pte pte;
	struct page *page;

	memset(run, 0, sizeof(*run));
	run->addr = va;
	run->npages = 1;
	if ((pfn & HMM_PFN_VALID) && !(pfn & HMM_PFN_ERROR)) {
		page = hmm_pfn_to_page(pfn);
		if (hmmgpu_is_vram_page(page)) {
			run->location = HMMGPU_LOC_DEVICE;
			run->device = hmmgpu_vram_page_device(page)->minor;
		} else {
			run->location = HMMGPU_LOC_SYSTEM;
		}
	}
	if (!ctx || !ctx->hdev->ops->mmu_query(ctx->hdev, ctx->pt, va, &pte))
		return;
	run->flags = pte.write ? HMMGPU_RUN_WRITE : 0;
	if (pte.aperture == HMMGPU_PTE_VRAM)
		run->mapping = HMMGPU_MAP_LOCAL;
	else if (pte.aperture == HMMGPU_PTE_PEER)
		run->mapping = HMMGPU_MAP_PEER;
	else
		run->mapping = HMMGPU_MAP_SYSTEM;
}

/*
 * Snapshot the batch at @addr, within one VMA, into @rc->pfns. Return: the
 * end of the batch, or 0 with -EFAULT in *@err for an unmapped @addr.
 */
static unsigned long hmmgpu_residency_snapshot(struct hmmgpu_residency_ctx *rc,
					       struct mmu_interval_notifier *mni,
					       unsigned long addr,
					       unsigned long end, int *err)
{
	struct mm_struct *mm = mni->mm;
	struct hmm_range range = {
		.notifier = mni,
		.start = addr,
		.hmm_pfns = rc->pfns,
		.dev_private_owner = hmmgpu_pgmap_owner,
	};
	struct vm_area_struct *vma;
	int ret;

	do {
		range.notifier_seq = mmu_interval_read_begin(mni);
		mmap_read_lock(mm);
		vma = vma_lookup(mm, addr);
		if (!vma) {
			mmap_read_unlock(mm);
			*err = -EFAULT;
			return 0;
		}
		range.end = min3(end, vma->vm_end,
				 addr + HMMGPU_RESIDENCY_BATCH * PAGE_SIZE);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
	} while (ret == -EBUSY);
	*err = ret;
	return ret ? 0 : range.end;
}

/* Report the pages of [@addr, @end); stops early when the runs are full. */
static int hmmgpu_residency_walk(struct hmmgpu_residency_ctx *rc,
				 struct mmu_interval_notifier *mni,
				 unsigned long addr, unsigned long end)
{
	struct hmmgpu_run page;
	unsigned long bend, i;
	int ret = 0;

	while (addr < end) {
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = hmmgpu_residency_flush(rc, false);
		if (ret)
			break;
		bend = hmmgpu_residency_snapshot(rc, mni, addr, end, &ret);
		if (!bend)
			break;
		if (rc->ctx)
			mutex_lock(&rc->ctx->lock);
		for (i = 0; addr < bend; i++, addr += PAGE_SIZE) {
			hmmgpu_residency_page(rc, addr, rc->pfns[i], &page);
			ret = hmmgpu_residency_add(rc, &page);
			if (ret)
				break;
		}
		if (rc->ctx)
			mutex_unlock(&rc->ctx->lock);
		if (ret)
			break;
	}
	rc->args->next = addr;
	return ret < 0 ? ret : 0;
}

static bool hmmgpu_residency_valid(const struct hmmgpu_residency *a)
{
	return !a->flags && !a->pad && a->max_runs &&
	       !memchr_inv(a->reserved, 0, sizeof(a->reserved)) &&
	       PAGE_ALIGNED(a->addr) && PAGE_ALIGNED(a->length) && a->length &&
	       a->addr + a->length > a->addr &&
	       a->addr + a->length <= TASK_SIZE;
}

/* The query with a reference on @rc's mm; inserts the temporary notifier. */
static int hmmgpu_residency_mm(struct hmmgpu_residency_ctx *rc,
			       struct mm_struct *mm)
{
	struct hmmgpu_residency *args = rc->args;
	struct mmu_interval_notifier mni = {};
	int ret, err;

	ret = mmu_interval_notifier_insert(&mni, mm, args->addr, args->length,
					   &hmmgpu_residency_ops);
	if (ret)
		return ret;
	ret = hmmgpu_residency_walk(rc, &mni, args->addr,
				    args->addr + args->length);
	mmu_interval_notifier_remove(&mni);
	err = hmmgpu_residency_flush(rc, true);
	args->nruns = rc->copied;
	return ret ?: err;
}

/**
 * hmmgpu_ioctl_residency() - HMMGPU_IOCTL_RESIDENCY
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_residency
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_residency(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_residency_ctx *rc;
	struct hmmgpu_residency args;
	int ret;

	if (!(hfile->hdev->caps & HMMGPU_CAP_MIGRATE))
		return -ENOTTY;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (!hmmgpu_residency_valid(&args))
		return -EINVAL;
	if (current->mm != hfile->mm)
		return -EPERM;

	rc = kvzalloc(sizeof(*rc), GFP_KERNEL);
	if (!rc)
		return -ENOMEM;
	rc->args = &args;
	mutex_lock(&hfile->lock);
	rc->ctx = hfile->ctx;
	if (rc->ctx)
		kref_get(&rc->ctx->ref);
	mutex_unlock(&hfile->lock);

	ret = -EPERM;
	if (mmget_not_zero(hfile->mm)) {
		ret = hmmgpu_residency_mm(rc, hfile->mm);
		mmput(hfile->mm);
	}
	if (rc->ctx)
		hmmgpu_ctx_put(rc->ctx);
	kvfree(rc);
	/* -EFAULT from the walk still reports the runs before the hole. */
	if ((!ret || ret == -EFAULT) && copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}
