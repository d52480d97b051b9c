// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: page migration between system memory and VRAM
 */

/**
 * DOC: Overview
 *
 * Pages move with mm's migrate_vma_setup(), migrate_vma_pages() and
 * migrate_vma_finalize() (migrate_device_range() and friends at eviction);
 * the data moves through the copy engine of the device that owns the VRAM
 * page (hmmgpu_device_copy()). In every path the copy's fence is waited for
 * before migrate_vma_pages(), so that the new page holds its data before
 * mm maps it. A page whose copy failed gets no destination (its entry in
 * dst is cleared and the page freed), so mm leaves the old page in place.
 *
 * HMMGPU_IOCTL_MIGRATE works in batches of %HMMGPU_MIGRATE_BATCH pages,
 * one VMA at a time, with the mmap lock held for read per batch and
 * dropped to copy the batch's status to user space.
 *
 * To the device it selects system pages and hmmgpu VRAM pages alike:
 * hmmgpu pages are only looked at (RESIDENT on this device, OTHER_DEVICE
 * on another) and left in place. A hole (no page, or the shared zero page)
 * is reported NOT_PRESENT and not populated: there is no data to move, and
 * the first CPU touch would bring the page straight back. Page-cache pages
 * of file mappings are reported FILE: mm only moves anonymous pages to
 * device-private memory.
 *
 * To system memory it selects the VRAM pages of every hmmgpu device;
 * system pages are RESIDENT and holes NOT_PRESENT.
 *
 * A CPU access to a VRAM page calls hmmgpu_migrate_to_ram(). It migrates
 * the faulting page and its neighbours in an aligned window of
 * fault_around_pages pages (clamped to the VMA), copied with one command.
 * The faulting page decides the outcome: VM_FAULT_OOM when no system page
 * could be allocated for it, VM_FAULT_SIGBUS when its copy failed (copy
 * error, hung or lost device); a neighbour that could not move stays in
 * VRAM.
 *
 * Every path counts the pages that moved on the device owning their VRAM
 * page (&hmmgpu_device.stats, see hmmgpu_counters.c) once mm has moved
 * them, and the ioctl and the fault path fire the hmmgpu_migrate and
 * hmmgpu_cpu_fault tracepoints.
 */

/**
 * DOC: Locking
 *
 * The ioctl holds &hmmgpu_device.unplug_lock for read (taken by the ioctl
 * dispatcher), then the mmap lock for read; mm takes the page locks in
 * migrate_vma_setup(); the copy takes queue locks under all of them.
 * migrate_to_ram() is called by mm with the mmap lock (or the VMA lock)
 * held for read and the faulting page locked; it does not take the unplug
 * lock (that would invert it with the mmap lock), a removed device fails
 * its copies instead.
 */

#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"
#include "hmmgpu_trace.h"

/* Pages per migrate_vma_setup(); at most %HMMGPU_COPY_MAX_PAGES. */
#define HMMGPU_MIGRATE_BATCH	512

static_assert(HMMGPU_MIGRATE_BATCH <= HMMGPU_COPY_MAX_PAGES);
static_assert(HMMGPU_CHUNK_PAGES <= HMMGPU_MIGRATE_BATCH);

/**
 * struct hmmgpu_batch - scratch space for migrating up to
 *	%HMMGPU_MIGRATE_BATCH pages
 * @src: migrate_vma.src
 * @dst: migrate_vma.dst
 * @sys: per page, the system page (source or destination), or NULL
 * @dev: per page, the VRAM page (source or destination), or NULL: the
 *	pages with both set are copied
 * @status: per page, enum hmmgpu_page_status
 * @failed: per page, its copy failed
 * @todo: hmmgpu_batch_copy()'s pages not yet submitted
 * @gsys: hmmgpu_batch_copy()'s system pages of one device
 * @gvram: hmmgpu_batch_copy()'s VRAM offsets of one device
 * @gidx: hmmgpu_batch_copy()'s indexes of one device's pages in the batch
 * @gfailed: hmmgpu_batch_copy()'s failed pages of one device
 */
struct hmmgpu_batch {
	unsigned long src[HMMGPU_MIGRATE_BATCH];
	unsigned long dst[HMMGPU_MIGRATE_BATCH];
	struct page *sys[HMMGPU_MIGRATE_BATCH];
	struct page *dev[HMMGPU_MIGRATE_BATCH];
	u8 status[HMMGPU_MIGRATE_BATCH];
	DECLARE_BITMAP(failed, HMMGPU_MIGRATE_BATCH);
	DECLARE_BITMAP(todo, HMMGPU_MIGRATE_BATCH);
	struct page *gsys[HMMGPU_MIGRATE_BATCH];
	u64 gvram[HMMGPU_MIGRATE_BATCH];
	unsigned int gidx[HMMGPU_MIGRATE_BATCH];
	DECLARE_BITMAP(gfailed, HMMGPU_MIGRATE_BATCH);
};

static struct hmmgpu_batch *hmmgpu_batch_alloc(gfp_t gfp)
{
	return kvmalloc(sizeof(struct hmmgpu_batch), gfp);
}

/* Clear the per-page state of the first @n pages. */
static void hmmgpu_batch_reset(struct hmmgpu_batch *b, unsigned long n)
{
	memset(b->dst, 0, n * sizeof(b->dst[0]));
	memset(b->sys, 0, n * sizeof(b->sys[0]));
	memset(b->dev, 0, n * sizeof(b->dev[0]));
	bitmap_zero(b->failed, HMMGPU_MIGRATE_BATCH);
}

/*
 * Submit the pages of one device found in @b->todo, starting at @first,
 * and record their failures in @b->failed. Return: the copy's result.
 */
static int hmmgpu_batch_copy_device(struct hmmgpu_batch *b, unsigned long n,
				    unsigned long first,
				    enum hmmgpu_copy_dir dir)
{
	struct hmmgpu_device *hdev = hmmgpu_vram_page_device(b->dev[first]);
	unsigned long i = first;
	unsigned int m = 0, k;
	int ret;

	for_each_set_bit_from(i, b->todo, n) {
		if (hmmgpu_vram_page_device(b->dev[i]) != hdev)
			continue;
		clear_bit(i, b->todo);
		b->gsys[m] = b->sys[i];
		b->gvram[m] = hmmgpu_vram_page_offset(b->dev[i]);
		b->gidx[m++] = i;
	}
	bitmap_zero(b->gfailed, m);
	ret = hmmgpu_device_copy(hdev, dir, b->gsys, b->gvram, m, b->gfailed);
	for_each_set_bit(k, b->gfailed, m)
		set_bit(b->gidx[k], b->failed);
	return ret;
}

/**
 * hmmgpu_batch_copy() - copy the pages of a batch that have both a system
 *	and a VRAM page
 * @b: the batch
 * @n: its pages
 * @dir: direction
 *
 * Each page is copied by the engine of the device owning its VRAM page, the
 * pages of one device with one hmmgpu_device_copy(). Failed pages are set in
 * @b->failed.
 *
 * Return: 0, or the first error of hmmgpu_device_copy().
 */
static int hmmgpu_batch_copy(struct hmmgpu_batch *b, unsigned long n,
			     enum hmmgpu_copy_dir dir)
{
	unsigned long i;
	int ret = 0, err;

	bitmap_zero(b->todo, HMMGPU_MIGRATE_BATCH);
	for (i = 0; i < n; i++)
		if (b->sys[i] && b->dev[i])
			set_bit(i, b->todo);

	while ((i = find_first_bit(b->todo, n)) < n) {
		err = hmmgpu_batch_copy_device(b, n, i, dir);
		if (!ret)
			ret = err;
	}
	return ret;
}

/* Free the destination page of page @i, whose copy failed. */
static void hmmgpu_batch_drop_dst(struct hmmgpu_batch *b, unsigned long i,
				  enum hmmgpu_copy_dir dir)
{
	struct page **dst = dir == HMMGPU_COPY_TO_VRAM ? &b->dev[i] : &b->sys[i];

	unlock_page(*dst);
	put_page(*dst);
	*dst = NULL;
}

/* Fill migrate_vma.dst from the destination pages. */
static void hmmgpu_batch_set_dst(struct hmmgpu_batch *b, unsigned long n,
				 enum hmmgpu_copy_dir dir)
{
	unsigned long i;

	for (i = 0; i < n; i++) {
		struct page *dpage = dir == HMMGPU_COPY_TO_VRAM ? b->dev[i] :
								  b->sys[i];

		if (!dpage || !b->sys[i] || !b->dev[i])
			continue;
		b->dst[i] = migrate_pfn(page_to_pfn(dpage));
		if (b->src[i] & MIGRATE_PFN_WRITE)
			b->dst[i] |= MIGRATE_PFN_WRITE;
	}
}

/*
 * Copy, drop the destinations of failed pages and fill dst. Return: the
 * copy's first error.
 */
static int hmmgpu_batch_copy_and_set(struct hmmgpu_batch *b, unsigned long n,
				     enum hmmgpu_copy_dir dir)
{
	unsigned long i;
	int ret;

	ret = hmmgpu_batch_copy(b, n, dir);
	for_each_set_bit(i, b->failed, n) {
		hmmgpu_batch_drop_dst(b, i, dir);
		b->status[i] = HMMGPU_PAGE_COPY_FAILED;
	}
	hmmgpu_batch_set_dst(b, n, dir);
	return ret;
}

/* Why a page that mm did not select for migration stays. */
static u8 hmmgpu_status_unselected(struct vm_area_struct *vma)
{
	return vma_is_anonymous(vma) ? HMMGPU_PAGE_BUSY : HMMGPU_PAGE_FILE;
}

/* Pick a destination for each page selected to move to @hdev. */
static void hmmgpu_batch_prepare_to_vram(struct hmmgpu_batch *b,
					 struct migrate_vma *args,
					 struct hmmgpu_device *hdev)
{
	unsigned long i;

	for (i = 0; i < args->npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		if (!(b->src[i] & MIGRATE_PFN_MIGRATE)) {
			b->status[i] = hmmgpu_status_unselected(args->vma);
		} else if (!spage) {
			b->status[i] = HMMGPU_PAGE_NOT_PRESENT;
		} else if (hmmgpu_is_vram_page(spage)) {
			b->status[i] = hmmgpu_vram_page_device(spage) == hdev ?
				       HMMGPU_PAGE_RESIDENT :
				       HMMGPU_PAGE_OTHER_DEVICE;
		} else if (!PageAnon(spage)) {
			b->status[i] = HMMGPU_PAGE_FILE;
		} else {
			b->dev[i] = hmmgpu_vram_alloc_page(hdev);
			if (!b->dev[i]) {
				b->status[i] = HMMGPU_PAGE_NO_VRAM;
				continue;
			}
			b->sys[i] = spage;
			b->status[i] = HMMGPU_PAGE_MIGRATED;
		}
	}
}

/* Pick a destination for each VRAM page selected to move back. */
static void hmmgpu_batch_prepare_to_system(struct hmmgpu_batch *b,
					   struct migrate_vma *args)
{
	unsigned long i, addr;

	for (i = 0; i < args->npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		addr = args->start + (i << PAGE_SHIFT);
		if (!(b->src[i] & MIGRATE_PFN_MIGRATE)) {
			b->status[i] = spage ? HMMGPU_PAGE_BUSY :
					       HMMGPU_PAGE_RESIDENT;
			continue;
		}
		if (!spage) {
			b->status[i] = HMMGPU_PAGE_NOT_PRESENT;
			continue;
		}
		b->sys[i] = alloc_page_vma(GFP_HIGHUSER_MOVABLE, args->vma,
					   addr);
		if (!b->sys[i]) {
			b->status[i] = HMMGPU_PAGE_BUSY;
			continue;
		}
		lock_page(b->sys[i]);
		b->dev[i] = spage;
		b->status[i] = HMMGPU_PAGE_MIGRATED;
	}
}

/* Add @npages moved pages in direction @dir to the counters of @hdev. */
static void hmmgpu_stats_moved(struct hmmgpu_device *hdev,
			       enum hmmgpu_copy_dir dir, unsigned long npages)
{
	if (!hdev || !npages)
		return;
	if (dir == HMMGPU_COPY_TO_VRAM)
		atomic64_add(npages, &hdev->stats.to_device_pages);
	else
		atomic64_add(npages, &hdev->stats.to_system_pages);
}

/**
 * hmmgpu_batch_account() - count the pages of a batch that moved
 * @b: the batch, after migrate_vma_pages() (or migrate_device_pages()) and
 *	before finalizing it, while its VRAM pages are still referenced
 * @n: its pages
 * @dir: direction
 *
 * Each page counts on the device that owns its VRAM page; consecutive
 * pages of one device are added at once.
 *
 * Return: the pages that moved.
 */
static unsigned long hmmgpu_batch_account(struct hmmgpu_batch *b,
					  unsigned long n,
					  enum hmmgpu_copy_dir dir)
{
	struct hmmgpu_device *hdev = NULL, *owner;
	unsigned long i, run = 0, moved = 0;

	for (i = 0; i < n; i++) {
		if (!b->dst[i] || !(b->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		owner = hmmgpu_vram_page_device(b->dev[i]);
		if (owner != hdev) {
			hmmgpu_stats_moved(hdev, dir, run);
			hdev = owner;
			run = 0;
		}
		run++;
		moved++;
	}
	hmmgpu_stats_moved(hdev, dir, run);
	return moved;
}

/* Pages that mm refused in migrate_vma_pages() did not move after all. */
static void hmmgpu_batch_check_moved(struct hmmgpu_batch *b, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++)
		if (b->dst[i] && !(b->src[i] & MIGRATE_PFN_MIGRATE))
			b->status[i] = HMMGPU_PAGE_BUSY;
}

/**
 * hmmgpu_migrate_range() - migrate one batch within one VMA
 * @hdev: the device of the ioctl
 * @vma: the VMA, its mm's mmap lock held for read
 * @b: the batch
 * @start: first address
 * @end: end address, at most %HMMGPU_MIGRATE_BATCH pages after @start,
 *	within @vma
 * @dir: direction
 *
 * Fills @b->status for the pages of the range.
 *
 * Return: 0, or the first copy error (the pages are reported anyway).
 */
static int hmmgpu_migrate_range(struct hmmgpu_device *hdev,
				struct vm_area_struct *vma,
				struct hmmgpu_batch *b, unsigned long start,
				unsigned long end, enum hmmgpu_copy_dir dir)
{
	struct migrate_vma args = {
		.vma = vma,
		.start = start,
		.end = end,
		.src = b->src,
		.dst = b->dst,
		.pgmap_owner = hmmgpu_pgmap_owner,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
	};
	unsigned long n = (end - start) >> PAGE_SHIFT;
	int ret;

	mmap_assert_locked(vma->vm_mm);
	hmmgpu_batch_reset(b, n);
	if (dir == HMMGPU_COPY_TO_VRAM)
		args.flags |= MIGRATE_VMA_SELECT_SYSTEM;
	if (migrate_vma_setup(&args)) {
		/* hugetlb, DAX, VM_IO/VM_PFNMAP: mm moves none of it */
		memset(b->status, hmmgpu_status_unselected(vma), n);
		return 0;
	}

	if (dir == HMMGPU_COPY_TO_VRAM)
		hmmgpu_batch_prepare_to_vram(b, &args, hdev);
	else
		hmmgpu_batch_prepare_to_system(b, &args);
	ret = hmmgpu_batch_copy_and_set(b, n, dir);
	migrate_vma_pages(&args);
	hmmgpu_batch_check_moved(b, n);
	hmmgpu_batch_account(b, n, dir);
	migrate_vma_finalize(&args);
	return ret;
}

static bool hmmgpu_migrate_valid(const struct hmmgpu_migrate *args)
{
	u32 dir = args->flags;

	return (dir == HMMGPU_MIGRATE_TO_DEVICE ||
		dir == HMMGPU_MIGRATE_TO_SYSTEM) &&
	       !args->pad &&
	       !memchr_inv(args->reserved, 0, sizeof(args->reserved)) &&
	       PAGE_ALIGNED(args->addr) && PAGE_ALIGNED(args->length) &&
	       args->length && args->addr + args->length > args->addr &&
	       args->addr + args->length <= TASK_SIZE;
}

static void hmmgpu_migrate_count(struct hmmgpu_migrate *args, const u8 *status,
				 unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++) {
		if (status[i] == HMMGPU_PAGE_MIGRATED)
			args->migrated++;
		else if (status[i] == HMMGPU_PAGE_RESIDENT)
			args->resident++;
		else
			args->failed++;
	}
}

/*
 * Migrate the batch at @addr: look up its VMA with the mmap lock held and
 * return the end of what was done in *@next. Return: 0, -EFAULT for an
 * unmapped address, or the batch's copy error.
 */
static int hmmgpu_migrate_batch(struct hmmgpu_device *hdev,
				struct mm_struct *mm, struct hmmgpu_batch *b,
				unsigned long addr, unsigned long end,
				enum hmmgpu_copy_dir dir, unsigned long *next)
{
	struct vm_area_struct *vma;
	int ret;

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (!vma) {
		mmap_read_unlock(mm);
		return -EFAULT;
	}
	end = min3(end, vma->vm_end,
		   addr + ((unsigned long)HMMGPU_MIGRATE_BATCH << PAGE_SHIFT));
	ret = hmmgpu_migrate_range(hdev, vma, b, addr, end, dir);
	mmap_read_unlock(mm);
	*next = end;
	return ret;
}

/* The body of the ioctl, with a reference on @mm. */
static int hmmgpu_migrate_mm(struct hmmgpu_device *hdev, struct mm_struct *mm,
			     struct hmmgpu_migrate *args,
			     struct hmmgpu_batch *b)
{
	enum hmmgpu_copy_dir dir = args->flags == HMMGPU_MIGRATE_TO_DEVICE ?
				   HMMGPU_COPY_TO_VRAM : HMMGPU_COPY_TO_SYSTEM;
	u8 __user *ustatus = u64_to_user_ptr(args->status);
	unsigned long addr = args->addr, end = args->addr + args->length;
	unsigned long next, n;
	u64 migrated, failed;
	int copy_err = 0, ret;

	while (addr < end) {
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = hmmgpu_migrate_batch(hdev, mm, b, addr, end, dir, &next);
		if (ret == -EFAULT)
			return ret;
		if (ret && !copy_err)
			copy_err = ret;

		n = (next - addr) >> PAGE_SHIFT;
		migrated = args->migrated;
		failed = args->failed;
		hmmgpu_migrate_count(args, b->status, n);
		trace_hmmgpu_migrate(hdev->minor, dir == HMMGPU_COPY_TO_VRAM,
				     addr, n, args->migrated - migrated,
				     args->failed - failed);
		if (args->status && copy_to_user(ustatus, b->status, n))
			return -EFAULT;
		ustatus += n;
		addr = next;
	}
	/*
	 * -ENODEV tells that this file's device is gone; a copy that failed
	 * on another (lost) device owning the pages is an -EIO here.
	 */
	if (copy_err && !args->migrated && args->failed)
		return copy_err == -ENODEV &&
		       hmmgpu_device_usable(hdev) == -ENODEV ? -ENODEV : -EIO;
	return 0;
}

/**
 * hmmgpu_ioctl_migrate() - HMMGPU_IOCTL_MIGRATE
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_migrate
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_migrate(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct mm_struct *mm = hfile->mm;
	struct hmmgpu_migrate args;
	struct hmmgpu_batch *b;
	int ret;

	if (!(hdev->caps & HMMGPU_CAP_MIGRATE))
		return -ENOTTY;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (!hmmgpu_migrate_valid(&args))
		return -EINVAL;
	if (current->mm != mm)
		return -EPERM;
	/* Nothing moves unless every status byte can be written. */
	if (args.status && clear_user(u64_to_user_ptr(args.status),
				      args.length >> PAGE_SHIFT))
		return -EFAULT;

	b = hmmgpu_batch_alloc(GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	if (!mmget_not_zero(mm)) {
		ret = -EPERM;
		goto out_free;
	}
	args.migrated = 0;
	args.resident = 0;
	args.failed = 0;
	ret = hmmgpu_migrate_mm(hdev, mm, &args, b);
	mmput(mm);
	if (!ret && copy_to_user(uarg, &args, sizeof(args)))
		ret = -EFAULT;
out_free:
	kvfree(b);
	return ret;
}

/* The aligned fault-around window of @vmf, clamped to its VMA. */
static void hmmgpu_fault_window(struct vm_fault *vmf, unsigned long *start,
				unsigned long *end)
{
	unsigned int n = READ_ONCE(hmmgpu_fault_around_pages);
	unsigned long size;

	n = clamp(n, 1U, (unsigned int)HMMGPU_MIGRATE_BATCH);
	size = (unsigned long)rounddown_pow_of_two(n) << PAGE_SHIFT;
	*start = max(ALIGN_DOWN(vmf->address, size), vmf->vma->vm_start);
	*end = min(ALIGN_DOWN(vmf->address, size) + size, vmf->vma->vm_end);
}

/*
 * Allocate the system pages of the fault: the faulting page (index @fi)
 * first; without it nothing else is tried. Return: 0 or VM_FAULT_OOM.
 */
static vm_fault_t hmmgpu_fault_prepare(struct hmmgpu_batch *b,
				       struct migrate_vma *args,
				       unsigned long fi)
{
	unsigned long i;

	for (i = 0; i < args->npages; i++)
		b->status[i] = HMMGPU_PAGE_RESIDENT;
	if (!(b->src[fi] & MIGRATE_PFN_MIGRATE))
		return 0;	/* raced: someone else moved it; retry the access */

	b->sys[fi] = alloc_page_vma(GFP_HIGHUSER_MOVABLE, args->vma,
				    args->start + (fi << PAGE_SHIFT));
	if (!b->sys[fi])
		return VM_FAULT_OOM;
	lock_page(b->sys[fi]);
	b->dev[fi] = migrate_pfn_to_page(b->src[fi]);

	for (i = 0; i < args->npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		if (i == fi || !spage || !(b->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		b->sys[i] = alloc_page_vma(GFP_HIGHUSER_MOVABLE |
					   __GFP_NOWARN, args->vma,
					   args->start + (i << PAGE_SHIFT));
		if (!b->sys[i])
			continue;
		lock_page(b->sys[i]);
		b->dev[i] = spage;
	}
	return 0;
}

/*
 * Count the pages a fault moved; the neighbours of the faulting page (index
 * @fi) count as fault-around pages of @hdev, the device of the faulting page.
 */
static void hmmgpu_fault_account(struct hmmgpu_device *hdev,
				 struct hmmgpu_batch *b,
				 struct migrate_vma *args, unsigned long fi)
{
	unsigned long moved;

	moved = hmmgpu_batch_account(b, args->npages, HMMGPU_COPY_TO_SYSTEM);
	if (b->dst[fi] && (b->src[fi] & MIGRATE_PFN_MIGRATE))
		moved--;
	if (moved)
		atomic64_add(moved, &hdev->stats.fault_around_pages);
}

/**
 * hmmgpu_migrate_to_ram() - &dev_pagemap_ops.migrate_to_ram of VRAM pages
 * @vmf: the fault on a VRAM page, &vm_fault.page locked
 *
 * Migrates the faulting page and its neighbours in the fault-around window
 * back to system memory (see DOC: Overview).
 *
 * Context: called by mm with the mmap lock or the VMA lock held for read;
 * sleeps.
 * Return: 0 (the access is retried), VM_FAULT_SIGBUS when the faulting
 * page's copy failed or its device is gone, VM_FAULT_OOM when no page or
 * scratch memory could be allocated.
 */
vm_fault_t hmmgpu_migrate_to_ram(struct vm_fault *vmf)
{
	struct migrate_vma args = {
		.vma = vmf->vma,
		.pgmap_owner = hmmgpu_pgmap_owner,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page = vmf->page,
	};
	struct hmmgpu_device *hdev = hmmgpu_vram_page_device(vmf->page);
	struct hmmgpu_batch *b;
	unsigned long fi;
	vm_fault_t ret;

	atomic64_inc(&hdev->stats.cpu_faults);
	hmmgpu_fault_window(vmf, &args.start, &args.end);
	b = hmmgpu_batch_alloc(GFP_KERNEL);
	if (!b) {
		ret = VM_FAULT_OOM;
		goto out_trace;
	}
	args.src = b->src;
	args.dst = b->dst;
	hmmgpu_batch_reset(b, (args.end - args.start) >> PAGE_SHIFT);
	if (migrate_vma_setup(&args)) {
		ret = VM_FAULT_SIGBUS;
		goto out_free;
	}
	fi = (vmf->address - args.start) >> PAGE_SHIFT;

	ret = hmmgpu_fault_prepare(b, &args, fi);
	hmmgpu_batch_copy_and_set(b, args.npages, HMMGPU_COPY_TO_SYSTEM);
	if (b->status[fi] == HMMGPU_PAGE_COPY_FAILED)
		ret = VM_FAULT_SIGBUS;
	migrate_vma_pages(&args);
	hmmgpu_fault_account(hdev, b, &args, fi);
	migrate_vma_finalize(&args);
out_free:
	kvfree(b);
out_trace:
	trace_hmmgpu_cpu_fault(hdev->minor, vmf->address,
			       (args.end - args.start) >> PAGE_SHIFT,
			       (__force unsigned int)ret);
	return ret;
}

/**
 * hmmgpu_migrate_evict() - move the VRAM pages of a pfn range back to
 *	system memory, wherever they are mapped
 * @start_pfn: first pfn, of a VRAM page
 * @npages: pages, at most %HMMGPU_MIGRATE_BATCH
 *
 * Pages that are free or busy are skipped (the caller retries). A page
 * whose copy fails comes back zero-filled and is counted as lost.
 *
 * Context: process context, sleeps; no mmap lock held.
 */
void hmmgpu_migrate_evict(unsigned long start_pfn, unsigned long npages)
{
	struct hmmgpu_batch *b;
	unsigned long i, lost = 0;

	b = hmmgpu_batch_alloc(GFP_KERNEL | __GFP_NOFAIL);
	hmmgpu_batch_reset(b, npages);
	migrate_device_range(b->src, start_pfn, npages);
	for (i = 0; i < npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		if (!spage || !(b->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		b->sys[i] = alloc_page(GFP_HIGHUSER_MOVABLE | __GFP_NOFAIL);
		lock_page(b->sys[i]);
		b->dev[i] = spage;
	}

	hmmgpu_batch_copy(b, npages, HMMGPU_COPY_TO_SYSTEM);
	for_each_set_bit(i, b->failed, npages) {
		clear_highpage(b->sys[i]);
		lost++;
	}
	hmmgpu_batch_set_dst(b, npages, HMMGPU_COPY_TO_SYSTEM);
	migrate_device_pages(b->src, b->dst, npages);
	hmmgpu_batch_account(b, npages, HMMGPU_COPY_TO_SYSTEM);
	migrate_device_finalize(b->src, b->dst, npages);
	if (lost)
		pr_err("hmmgpu: %lu pages of a failed device lost their data at eviction (now zero-filled)\n",
		       lost);
	kvfree(b);
}
