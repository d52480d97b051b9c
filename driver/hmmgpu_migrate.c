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
 * one VMA at a time, pipelined two deep: batch N+1 is set up and its copy
 * submitted while the engines still copy batch N, then batch N is
 * finished. The mmap lock is held for read for a run of
 * %HMMGPU_MIGRATE_RUN batches and dropped between runs, to copy the run's
 * status to user space and to let writers in.
 *
 * To the device it selects system pages and hmmgpu VRAM pages alike. A
 * page in the VRAM of a peer (hmmgpu_device_is_peer()) moves VRAM to VRAM,
 * copied by this device's engine from the peer's VRAM; other hmmgpu pages
 * are only looked at (RESIDENT on this device, OTHER_DEVICE on a device
 * that is no peer) and left in place. A hole (no page, or the shared zero page)
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
 * fault_around_pages pages, or more where the process reads in order or
 * densely (hmmgpu_policy.c, DOC: CPU fault-around), clamped to the VMA and
 * copied with one command.
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
/* Batches per hold of the mmap lock in the ioctl (a run). */
#define HMMGPU_MIGRATE_RUN	8

static_assert(HMMGPU_MIGRATE_BATCH <= HMMGPU_COPY_MAX_PAGES);
static_assert(HMMGPU_CHUNK_PAGES <= HMMGPU_MIGRATE_BATCH);
static_assert(HMMGPU_REGION_PAGES <= HMMGPU_MIGRATE_BATCH);	/* fault-around */

/**
 * struct hmmgpu_batch - scratch space for migrating up to @cap pages
 * @cap: pages the arrays hold
 * @args: the migrate_vma of the batch; @args.src and @args.dst point to
 *	@src and @dst
 * @setup: migrate_vma_setup() succeeded: the batch must be finalized
 * @populate: to VRAM, holes get zeroed VRAM pages (a device's first touch)
 *	instead of being reported NOT_PRESENT
 * @owner: to VRAM, the process the destination pages are charged to, or
 *	NULL
 * @dir: direction
 * @src: migrate_vma.src
 * @dst: migrate_vma.dst
 * @sys: per page, the system page (source or destination), or NULL; to
 *	VRAM, the source may also be a peer's VRAM page (a peer migration)
 * @dev: per page, the VRAM page (source or destination), or NULL: the
 *	pages with both set are copied
 * @status: per page, enum hmmgpu_page_status (the ioctl points it into its
 *	status buffer)
 * @failed: per page, its copy failed
 * @gsys: the system pages to copy, grouped by the device of their VRAM page
 *	(and by the peer they come from)
 * @gvram: their VRAM offsets
 * @gpeer: for pages coming from a peer, their offsets in its VRAM
 * @gidx: their indexes in the batch
 * @gfailed: the failed pages of @gsys
 * @nops: copies in flight, one per device
 * @ops: the copies in flight
 * @copy_err: the first error of a copy of the batch
 */
struct hmmgpu_batch {
	unsigned long cap;
	struct migrate_vma args;
	bool setup;
	bool populate;
	struct hmmgpu_mm *owner;
	enum hmmgpu_copy_dir dir;
	unsigned long *src;
	unsigned long *dst;
	struct page **sys;
	struct page **dev;
	u8 *status;
	unsigned long *failed;
	struct page **gsys;
	u64 *gvram;
	u64 *gpeer;
	unsigned int *gidx;
	unsigned long *gfailed;
	unsigned int nops;
	struct hmmgpu_copy_op ops[HMMGPU_MAX_DEVICES];
	int copy_err;
};

/* Carve @n elements of @size bytes from *@p. */
static void *hmmgpu_batch_carve(char **p, unsigned long n, size_t size)
{
	void *ret = *p;

	*p += ALIGN(n * size, sizeof(long));
	return ret;
}

/* Allocate a batch for up to @cap pages, its arrays in the same block. */
static struct hmmgpu_batch *hmmgpu_batch_alloc(unsigned long cap, gfp_t gfp)
{
	size_t bits = BITS_TO_LONGS(cap) * sizeof(long);
	size_t per_page = 2 * sizeof(unsigned long) + 3 * sizeof(struct page *) +
			  sizeof(u8) + 2 * sizeof(u64) + sizeof(unsigned int);
	struct hmmgpu_batch *b;
	char *p;

	b = kvmalloc(sizeof(*b) + cap * per_page + 2 * bits +
		     5 * sizeof(long), gfp);
	if (!b)
		return NULL;
	b->cap = cap;
	b->owner = NULL;
	p = (char *)(b + 1);
	b->src = hmmgpu_batch_carve(&p, cap, sizeof(*b->src));
	b->dst = hmmgpu_batch_carve(&p, cap, sizeof(*b->dst));
	b->sys = hmmgpu_batch_carve(&p, cap, sizeof(*b->sys));
	b->dev = hmmgpu_batch_carve(&p, cap, sizeof(*b->dev));
	b->gsys = hmmgpu_batch_carve(&p, cap, sizeof(*b->gsys));
	b->gvram = hmmgpu_batch_carve(&p, cap, sizeof(*b->gvram));
	b->gpeer = hmmgpu_batch_carve(&p, cap, sizeof(*b->gpeer));
	b->gidx = hmmgpu_batch_carve(&p, cap, sizeof(*b->gidx));
	b->failed = hmmgpu_batch_carve(&p, 1, bits);
	b->gfailed = hmmgpu_batch_carve(&p, 1, bits);
	b->status = hmmgpu_batch_carve(&p, cap, sizeof(*b->status));
	return b;
}

/* Start a batch of @n pages, at most @b->cap, in direction @dir. */
static void hmmgpu_batch_reset(struct hmmgpu_batch *b, unsigned long n,
			       enum hmmgpu_copy_dir dir)
{
	memset(b->dst, 0, n * sizeof(b->dst[0]));
	memset(b->sys, 0, n * sizeof(b->sys[0]));
	memset(b->dev, 0, n * sizeof(b->dev[0]));
	bitmap_zero(b->failed, b->cap);
	b->setup = false;
	b->populate = false;
	b->dir = dir;
	b->nops = 0;
	b->copy_err = 0;
}

/* The peer whose VRAM page @i of @b comes from, or NULL. */
static struct hmmgpu_device *hmmgpu_batch_peer(struct hmmgpu_batch *b,
					       unsigned long i)
{
	if (b->dir != HMMGPU_COPY_TO_VRAM || !hmmgpu_is_vram_page(b->sys[i]))
		return NULL;
	return hmmgpu_vram_page_device(b->sys[i]);
}

/*
 * Gather the pages of one device (and one peer they come from) found in
 * @todo, starting at @first, into @b->gsys from index @m on, and submit
 * their copy. Return: the pages gathered.
 */
static unsigned int hmmgpu_batch_submit_device(struct hmmgpu_batch *b,
					       unsigned long *todo,
					       unsigned long n,
					       unsigned long first,
					       unsigned int m)
{
	struct hmmgpu_device *hdev = hmmgpu_vram_page_device(b->dev[first]);
	struct hmmgpu_device *peer = hmmgpu_batch_peer(b, first);
	struct hmmgpu_copy copy = { .dir = b->dir };
	unsigned long i = first;
	unsigned int start = m;

	for_each_set_bit_from(i, todo, n) {
		if (hmmgpu_vram_page_device(b->dev[i]) != hdev ||
		    hmmgpu_batch_peer(b, i) != peer)
			continue;
		clear_bit(i, todo);
		b->gsys[m] = b->sys[i];
		b->gvram[m] = hmmgpu_vram_page_offset(b->dev[i]);
		if (peer)
			b->gpeer[m] = hmmgpu_vram_page_offset(b->sys[i]);
		b->gidx[m++] = i;
	}
	copy.npages = m - start;
	copy.sys = b->gsys + start;
	copy.vram = b->gvram + start;
	if (peer) {
		copy.dir = HMMGPU_COPY_FROM_PEER;
		copy.peer_vram = b->gpeer + start;
		copy.peer = peer->peer_index;
	}
	hmmgpu_device_copy_submit(hdev, &copy, &b->ops[b->nops++]);
	return m - start;
}

/**
 * hmmgpu_batch_copy_submit() - start copying the pages of a batch that have
 *	both a system and a VRAM page
 * @b: the batch
 * @n: its pages
 *
 * Each page is copied by the engine of the device owning its VRAM page
 * (the destination's, for a page coming from a peer), the pages of one
 * device with one copy; the copies of every device run concurrently.
 * hmmgpu_batch_copy_wait() must follow.
 */
static void hmmgpu_batch_copy_submit(struct hmmgpu_batch *b, unsigned long n)
{
	unsigned long *todo = b->gfailed;	/* free until the waits */
	unsigned int m = 0;
	unsigned long i;

	bitmap_zero(todo, b->cap);
	for (i = 0; i < n; i++)
		if (b->sys[i] && b->dev[i])
			set_bit(i, todo);
	while ((i = find_first_bit(todo, n)) < n)
		m += hmmgpu_batch_submit_device(b, todo, n, i, m);
}

/*
 * Wait for the copies of a batch and set the failed pages in @b->failed.
 * Return: 0, or the first error of the copies.
 */
static int hmmgpu_batch_copy_wait(struct hmmgpu_batch *b)
{
	unsigned int i, k, m = 0;
	int err;

	bitmap_zero(b->gfailed, b->cap);
	for (i = 0; i < b->nops; i++) {
		err = hmmgpu_device_copy_wait(&b->ops[i], b->gfailed, m);
		if (err && !b->copy_err)
			b->copy_err = err;
		m += b->ops[i].npages;
	}
	for_each_set_bit(k, b->gfailed, m)
		set_bit(b->gidx[k], b->failed);
	b->nops = 0;
	return b->copy_err;
}

/* Free the destination page of page @i, whose copy failed. */
static void hmmgpu_batch_drop_dst(struct hmmgpu_batch *b, unsigned long i)
{
	struct page **dst = b->dir == HMMGPU_COPY_TO_VRAM ? &b->dev[i] :
							   &b->sys[i];

	unlock_page(*dst);
	put_page(*dst);
	*dst = NULL;
}

/* Fill migrate_vma.dst from the destination pages. */
static void hmmgpu_batch_set_dst(struct hmmgpu_batch *b, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++) {
		struct page *dpage = b->dir == HMMGPU_COPY_TO_VRAM ? b->dev[i] :
								     b->sys[i];

		if (!dpage || !b->sys[i] || !b->dev[i])
			continue;
		b->dst[i] = migrate_pfn(page_to_pfn(dpage));
		if (b->src[i] & MIGRATE_PFN_WRITE)
			b->dst[i] |= MIGRATE_PFN_WRITE;
	}
}

/*
 * Wait for the copies, drop the destinations of failed pages and fill dst.
 * Return: the copies' first error.
 */
static int hmmgpu_batch_copy_end(struct hmmgpu_batch *b, unsigned long n)
{
	unsigned long i;
	int ret;

	ret = hmmgpu_batch_copy_wait(b);
	for_each_set_bit(i, b->failed, n) {
		hmmgpu_batch_drop_dst(b, i);
		b->status[i] = HMMGPU_PAGE_COPY_FAILED;
	}
	hmmgpu_batch_set_dst(b, n);
	return ret;
}

/* Point @b->args at [@start, @end) of @vma, selecting our VRAM pages. */
static void hmmgpu_batch_args(struct hmmgpu_batch *b,
			      struct vm_area_struct *vma, unsigned long start,
			      unsigned long end)
{
	b->args = (struct migrate_vma) {
		.vma = vma,
		.start = start,
		.end = end,
		.src = b->src,
		.dst = b->dst,
		.pgmap_owner = hmmgpu_pgmap_owner,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
	};
}

/* Why a page that mm did not select for migration stays. */
static u8 hmmgpu_status_unselected(struct vm_area_struct *vma)
{
	return vma_is_anonymous(vma) ? HMMGPU_PAGE_BUSY : HMMGPU_PAGE_FILE;
}

/* Give page @i a VRAM page of @hdev to be copied to from @src. */
static void hmmgpu_batch_take(struct hmmgpu_batch *b, unsigned long i,
			      struct hmmgpu_device *hdev, struct page *src)
{
	b->dev[i] = hmmgpu_vram_alloc_page(hdev);
	if (!b->dev[i]) {
		b->status[i] = HMMGPU_PAGE_NO_VRAM;
		return;
	}
	if (b->owner)
		hmmgpu_mm_charge(b->owner, b->dev[i], hdev->minor);
	b->sys[i] = src;
	b->status[i] = HMMGPU_PAGE_MIGRATED;
}

/* Whether the VRAM page @spage, not of @hdev, can move to @hdev. */
static bool hmmgpu_batch_from_peer(struct hmmgpu_device *hdev,
				   struct page *spage)
{
	return hmmgpu_device_is_peer(hdev, hmmgpu_vram_page_device(spage));
}

/* Pick a destination for each page selected to move to @hdev. */
static void hmmgpu_batch_prepare_to_vram(struct hmmgpu_batch *b,
					 struct migrate_vma *args,
					 struct hmmgpu_device *hdev)
{
	unsigned long i;

	for (i = 0; i < args->npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		if (!(b->src[i] & MIGRATE_PFN_MIGRATE))
			b->status[i] = hmmgpu_status_unselected(args->vma);
		else if (!spage && !b->populate)
			b->status[i] = HMMGPU_PAGE_NOT_PRESENT;
		else if (!spage)	/* first touch by the device: zeroed VRAM */
			hmmgpu_batch_take(b, i, hdev, ZERO_PAGE(0));
		else if (!hmmgpu_is_vram_page(spage) && !PageAnon(spage))
			b->status[i] = HMMGPU_PAGE_FILE;
		else if (!hmmgpu_is_vram_page(spage))
			hmmgpu_batch_take(b, i, hdev, spage);
		else if (hmmgpu_vram_page_device(spage) == hdev)
			b->status[i] = HMMGPU_PAGE_RESIDENT;
		else if (hmmgpu_batch_from_peer(hdev, spage))
			hmmgpu_batch_take(b, i, hdev, spage);
		else
			b->status[i] = HMMGPU_PAGE_OTHER_DEVICE;
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
 * Each page counts on the device that owns its VRAM page (the destination
 * of a peer migration, where it also counts as a peer migration);
 * consecutive pages of one device are added at once.
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
		if (hmmgpu_batch_peer(b, i))
			atomic64_inc(&owner->stats.peer_to_device_pages);
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
 * hmmgpu_batch_start() - set up one batch within one VMA and start its copy
 * @b: the batch; @b->status points to room for its pages' status
 * @hdev: the device of the ioctl
 * @vma: the VMA, its mm's mmap lock held for read
 * @start: first address
 * @end: end address, at most @b->cap pages after @start, within @vma
 * @dir: direction
 * @populate: see &hmmgpu_batch.populate
 *
 * Fills @b->status for the pages of the range; hmmgpu_batch_finish() ends
 * the batch, under the same hold of the mmap lock.
 */
static void hmmgpu_batch_start(struct hmmgpu_batch *b,
			       struct hmmgpu_device *hdev,
			       struct vm_area_struct *vma, unsigned long start,
			       unsigned long end, enum hmmgpu_copy_dir dir,
			       bool populate)
{
	unsigned long n = (end - start) >> PAGE_SHIFT;

	mmap_assert_locked(vma->vm_mm);
	hmmgpu_batch_reset(b, n, dir);
	b->populate = populate;
	hmmgpu_batch_args(b, vma, start, end);
	if (dir == HMMGPU_COPY_TO_VRAM)
		b->args.flags |= MIGRATE_VMA_SELECT_SYSTEM;
	if (migrate_vma_setup(&b->args)) {
		/* hugetlb, DAX, VM_IO/VM_PFNMAP: mm moves none of it */
		memset(b->status, hmmgpu_status_unselected(vma), n);
		return;
	}
	b->setup = true;

	if (dir == HMMGPU_COPY_TO_VRAM)
		hmmgpu_batch_prepare_to_vram(b, &b->args, hdev);
	else
		hmmgpu_batch_prepare_to_system(b, &b->args);
	hmmgpu_batch_copy_submit(b, n);
}

/**
 * hmmgpu_batch_finish() - end a batch started by hmmgpu_batch_start()
 * @b: the batch
 *
 * Waits for the batch's copies, then lets mm move the pages that were
 * copied and restore the others.
 *
 * Return: 0, or the first copy error (the pages are reported anyway).
 */
static int hmmgpu_batch_finish(struct hmmgpu_batch *b)
{
	unsigned long n = b->args.npages;
	int ret;

	if (!b->setup)
		return 0;
	ret = hmmgpu_batch_copy_end(b, n);
	migrate_vma_pages(&b->args);
	hmmgpu_batch_check_moved(b, n);
	hmmgpu_batch_account(b, n, b->dir);
	migrate_vma_finalize(&b->args);
	b->setup = false;
	/* What went to the VRAM no longer counts as brought back by the CPU. */
	if (b->dir == HMMGPU_COPY_TO_VRAM && b->owner)
		hmmgpu_fault_around_forget(hmmgpu_mm_cpu_faults(b->owner),
					   b->args.start, b->args.end,
					   b->populate);
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

/**
 * struct hmmgpu_migrate_ctx - the state of one HMMGPU_IOCTL_MIGRATE
 * @hdev: the device of the ioctl
 * @mm: the address space, referenced
 * @dir: direction
 * @batch: two batches: one is copied while the other is set up
 * @status: the status of each page of a run
 * @copy_err: the first copy error
 */
struct hmmgpu_migrate_ctx {
	struct hmmgpu_device *hdev;
	struct mm_struct *mm;
	enum hmmgpu_copy_dir dir;
	struct hmmgpu_batch *batch[2];
	u8 status[HMMGPU_MIGRATE_RUN * HMMGPU_MIGRATE_BATCH];
	int copy_err;
};

static void hmmgpu_migrate_finish(struct hmmgpu_migrate_ctx *ctx,
				  struct hmmgpu_batch *b)
{
	int err = hmmgpu_batch_finish(b);

	if (err && !ctx->copy_err)
		ctx->copy_err = err;
}

/**
 * hmmgpu_migrate_run() - migrate up to %HMMGPU_MIGRATE_RUN batches under one
 *	hold of the mmap lock
 * @ctx: the ioctl
 * @addr: first address
 * @end: end of the run, at most %HMMGPU_MIGRATE_RUN batches after @addr
 * @next: out, the end of what was done
 *
 * Pipelined: batch N+1 is set up (pages collected, unmapped and locked by
 * mm, destinations allocated, DMA mapped, its copy submitted) while the
 * copy engine still moves batch N, which is finished afterwards. Fills
 * @ctx->status from index 0 for [@addr, *@next).
 *
 * Return: 0, or -EFAULT when *@next is not mapped.
 */
static int hmmgpu_migrate_run(struct hmmgpu_migrate_ctx *ctx,
			      unsigned long addr, unsigned long end,
			      unsigned long *next)
{
	struct hmmgpu_batch *prev = NULL, *cur;
	struct vm_area_struct *vma;
	unsigned long start = addr, bend;
	unsigned int i = 0;
	int ret = 0;

	mmap_read_lock(ctx->mm);
	while (addr < end) {
		vma = vma_lookup(ctx->mm, addr);
		if (!vma) {
			ret = -EFAULT;
			break;
		}
		bend = min3(end, vma->vm_end,
			    addr + (HMMGPU_MIGRATE_BATCH << PAGE_SHIFT));
		cur = ctx->batch[i++ & 1];
		cur->status = ctx->status + ((addr - start) >> PAGE_SHIFT);
		hmmgpu_batch_start(cur, ctx->hdev, vma, addr, bend, ctx->dir,
				   false);
		if (prev)
			hmmgpu_migrate_finish(ctx, prev);
		prev = cur;
		addr = bend;
	}
	if (prev)
		hmmgpu_migrate_finish(ctx, prev);
	mmap_read_unlock(ctx->mm);
	*next = addr;
	return ret;
}

/* Report the status of @n pages at @addr, the start of the last run. */
static int hmmgpu_migrate_report(struct hmmgpu_migrate_ctx *ctx,
				 struct hmmgpu_migrate *args,
				 unsigned long addr, unsigned long n)
{
	u64 migrated = args->migrated, failed = args->failed;

	hmmgpu_migrate_count(args, ctx->status, n);
	trace_hmmgpu_migrate(ctx->hdev->minor, ctx->dir == HMMGPU_COPY_TO_VRAM,
			     addr, n, args->migrated - migrated,
			     args->failed - failed);
	if (args->status &&
	    copy_to_user(u64_to_user_ptr(args->status) +
			 ((addr - args->addr) >> PAGE_SHIFT), ctx->status, n))
		return -EFAULT;
	return 0;
}

/* The body of the ioctl, with a reference on @ctx->mm. */
static int hmmgpu_migrate_mm(struct hmmgpu_migrate_ctx *ctx,
			     struct hmmgpu_migrate *args)
{
	unsigned long addr = args->addr, end = args->addr + args->length;
	unsigned long run = HMMGPU_MIGRATE_RUN * HMMGPU_MIGRATE_BATCH;
	unsigned long next;
	int ret, err;

	while (addr < end) {
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = hmmgpu_migrate_run(ctx, addr,
					 min(end, addr + (run << PAGE_SHIFT)),
					 &next);
		err = hmmgpu_migrate_report(ctx, args, addr,
					    (next - addr) >> PAGE_SHIFT);
		if (ret || err)
			return ret ?: err;
		addr = next;
	}
	/*
	 * -ENODEV tells that this file's device is gone; a copy that failed
	 * on another (lost) device owning the pages is an -EIO here.
	 */
	if (ctx->copy_err && !args->migrated && args->failed)
		return ctx->copy_err == -ENODEV &&
		       hmmgpu_device_usable(ctx->hdev) == -ENODEV ? -ENODEV :
								    -EIO;
	return 0;
}

/*
 * After a migration to the device, map what is now in its VRAM in the
 * file's device address space, if it has one: a prefetch is followed by
 * launches, which then do not fault on the pages.
 */
static void hmmgpu_migrate_map(struct hmmgpu_file *hfile, u64 start, u64 end)
{
	struct hmmgpu_ctx *ctx = hmmgpu_file_ctx(hfile);

	if (!ctx)
		return;
	hmmgpu_ctx_map_resident(ctx, start, end);
	hmmgpu_ctx_put(ctx);
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
	struct hmmgpu_migrate_ctx *ctx;
	struct hmmgpu_migrate args;
	int ret = -ENOMEM;

	if (!(hdev->caps & HMMGPU_CAP_MIGRATE))
		return -ENOTTY;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (!hmmgpu_migrate_valid(&args))
		return -EINVAL;
	if (current->mm != hfile->mm)
		return -EPERM;
	/* Nothing moves unless every status byte can be written. */
	if (args.status && clear_user(u64_to_user_ptr(args.status),
				      args.length >> PAGE_SHIFT))
		return -EFAULT;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	ctx->hdev = hdev;
	ctx->mm = hfile->mm;
	ctx->dir = args.flags == HMMGPU_MIGRATE_TO_DEVICE ?
		   HMMGPU_COPY_TO_VRAM : HMMGPU_COPY_TO_SYSTEM;
	ctx->batch[0] = hmmgpu_batch_alloc(HMMGPU_MIGRATE_BATCH, GFP_KERNEL);
	ctx->batch[1] = hmmgpu_batch_alloc(HMMGPU_MIGRATE_BATCH, GFP_KERNEL);
	if (!ctx->batch[0] || !ctx->batch[1])
		goto out_free;
	ctx->batch[0]->owner = hfile->advice;
	ctx->batch[1]->owner = hfile->advice;
	if (!mmget_not_zero(ctx->mm)) {
		ret = -EPERM;
		goto out_free;
	}
	args.migrated = 0;
	args.resident = 0;
	args.failed = 0;
	ret = hmmgpu_migrate_mm(ctx, &args);
	if (!ret && ctx->dir == HMMGPU_COPY_TO_VRAM)
		hmmgpu_migrate_map(hfile, args.addr, args.addr + args.length);
	mmput(ctx->mm);
	if (!ret && copy_to_user(uarg, &args, sizeof(args)))
		ret = -EFAULT;
out_free:
	kvfree(ctx->batch[1]);
	kvfree(ctx->batch[0]);
	kfree(ctx);
	return ret;
}

/**
 * hmmgpu_migrate_for_device() - migrate pages to a device for its access
 * @hdev: the device that faulted
 * @mm: the address space, with a reference
 * @owner: its process, which the VRAM pages are charged to
 * @start: first page
 * @end: end of the range, at most %HMMGPU_MIGRATE_BATCH pages after @start
 * @status: out, per page of the range, its enum hmmgpu_page_status
 *	(%HMMGPU_PAGE_NOT_PRESENT where nothing is mapped)
 *
 * The device fault service's first-touch policy: the anonymous pages of
 * the range, in whichever VMAs, move to @hdev's VRAM, holes (pages never
 * touched) get zeroed VRAM pages, pages in a peer's VRAM move VRAM to
 * VRAM. Pages that cannot move (file pages, pages on a device that is not
 * a peer, busy pages, VRAM exhausted) stay where they are; the device maps
 * them there.
 *
 * Context: process context, takes the mmap lock for read.
 * Return: 0 or -ENOMEM.
 */
int hmmgpu_migrate_for_device(struct hmmgpu_device *hdev,
			      struct mm_struct *mm, struct hmmgpu_mm *owner,
			      unsigned long start, unsigned long end,
			      u8 *status)
{
	unsigned long addr = start, next;
	struct vm_area_struct *vma;
	struct hmmgpu_batch *b;

	b = hmmgpu_batch_alloc((end - start) >> PAGE_SHIFT, GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	b->owner = owner;
	memset(status, HMMGPU_PAGE_NOT_PRESENT, (end - start) >> PAGE_SHIFT);
	mmap_read_lock(mm);
	for (; addr < end; addr = next) {
		vma = find_vma(mm, addr);
		if (!vma || vma->vm_start >= end)
			break;
		addr = max(addr, vma->vm_start);
		next = min(end, vma->vm_end);
		b->status = status + ((addr - start) >> PAGE_SHIFT);
		hmmgpu_batch_start(b, hdev, vma, addr, next,
				   HMMGPU_COPY_TO_VRAM, true);
		hmmgpu_batch_finish(b);
	}
	mmap_read_unlock(mm);
	kvfree(b);
	return 0;
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
	struct hmmgpu_device *hdev = hmmgpu_vram_page_device(vmf->page);
	unsigned long start, end, n, fi;
	struct hmmgpu_batch *b;
	vm_fault_t ret;

	atomic64_inc(&hdev->stats.cpu_faults);
	hmmgpu_fault_around(hmmgpu_page_cpu_faults(vmf->page), vmf->address,
			    vmf->vma->vm_start, vmf->vma->vm_end, &start, &end);
	n = (end - start) >> PAGE_SHIFT;
	b = hmmgpu_batch_alloc(n, GFP_KERNEL);
	if (!b) {
		ret = VM_FAULT_OOM;
		goto out_trace;
	}
	hmmgpu_batch_reset(b, n, HMMGPU_COPY_TO_SYSTEM);
	hmmgpu_batch_args(b, vmf->vma, start, end);
	b->args.fault_page = vmf->page;
	if (migrate_vma_setup(&b->args)) {
		ret = VM_FAULT_SIGBUS;
		goto out_free;
	}
	fi = (vmf->address - start) >> PAGE_SHIFT;

	ret = hmmgpu_fault_prepare(b, &b->args, fi);
	hmmgpu_batch_copy_submit(b, n);
	hmmgpu_batch_copy_end(b, n);
	if (b->status[fi] == HMMGPU_PAGE_COPY_FAILED)
		ret = VM_FAULT_SIGBUS;
	migrate_vma_pages(&b->args);
	hmmgpu_fault_account(hdev, b, &b->args, fi);
	migrate_vma_finalize(&b->args);
out_free:
	kvfree(b);
out_trace:
	trace_hmmgpu_cpu_fault(hdev->minor, vmf->address, n,
			       (__force unsigned int)ret);
	return ret;
}

/* Distinct processes whose pages one eviction batch pins, at most. */
#define HMMGPU_EVICT_OWNERS	8

/**
 * struct hmmgpu_evict_owners - the processes an eviction batch pinned
 * @n: entries used
 * @hm: the process, from &page.zone_device_data
 * @pinned: whether hmmgpu_mm_pin() pinned it
 */
struct hmmgpu_evict_owners {
	unsigned int n;
	struct hmmgpu_mm *hm[HMMGPU_EVICT_OWNERS];
	bool pinned[HMMGPU_EVICT_OWNERS];
};

/*
 * Whether the process @hm, which a page of the batch is charged to, has its
 * address space pinned for the batch; pins it on first sight. A process
 * past the table's end counts as not pinned.
 */
static bool hmmgpu_evict_pinned(struct hmmgpu_evict_owners *o,
				struct hmmgpu_mm *hm)
{
	unsigned int i;

	if (!hm)
		return true;	/* charged to no process: nothing to tear down */
	for (i = 0; i < o->n; i++)
		if (o->hm[i] == hm)
			return o->pinned[i];
	if (o->n == HMMGPU_EVICT_OWNERS)
		return false;
	o->hm[o->n] = hm;
	o->pinned[o->n] = hmmgpu_mm_pin(hm);
	return o->pinned[o->n++];
}

/*
 * Pin the address spaces of the processes the pages of [@start_pfn,
 * @start_pfn + @npages) are charged to, and hold (locked, referenced, bit
 * set in @held) the pages whose process could not be pinned, so that
 * migrate_device_range() passes over them. Pages that are free or locked
 * are left to it.
 */
static void hmmgpu_evict_pin_owners(struct hmmgpu_evict_owners *o,
				    unsigned long start_pfn,
				    unsigned long npages, unsigned long *held)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		struct page *page = pfn_to_page(start_pfn + i);

		if (!get_page_unless_zero(page))
			continue;
		if (!trylock_page(page)) {
			put_page(page);
			continue;
		}
		/* Locked and referenced: the page stays charged to it. */
		if (hmmgpu_evict_pinned(o, page->zone_device_data)) {
			unlock_page(page);
			put_page(page);
		} else {
			__set_bit(i, held);
		}
	}
}

/* Release what hmmgpu_evict_pin_owners() took. */
static void hmmgpu_evict_unpin_owners(struct hmmgpu_evict_owners *o,
				      unsigned long start_pfn,
				      unsigned long npages, unsigned long *held)
{
	unsigned long i;

	for_each_set_bit(i, held, npages) {
		struct page *page = pfn_to_page(start_pfn + i);

		unlock_page(page);
		put_page(page);
	}
	while (o->n--)
		if (o->pinned[o->n])
			hmmgpu_mm_unpin(o->hm[o->n]);
}

/**
 * hmmgpu_migrate_evict() - move the VRAM pages of a pfn range back to
 *	system memory, wherever they are mapped
 * @start_pfn: first pfn, of a VRAM page
 * @npages: pages, at most %HMMGPU_MIGRATE_BATCH
 * @lossy: the device is going away: a page whose copy fails comes back
 *	zero-filled (counted as lost and logged) instead of staying in VRAM
 *
 * Pages that are free or busy are skipped (the caller retries if it must),
 * and so are the pages of a process that is exiting or unmapping memory:
 * its exit or munmap() may free them.
 * Only page locks are taken, with trylock: the caller may hold the mmap
 * lock and page locks (an allocation making room).
 *
 * migrate_device_range() unmaps the pages through their reverse map with
 * no mmap lock, and migrate_device_finalize() walks it again, through each
 * page's anon_vma, which mm does not pin in between (migrate_folio_unmap()
 * does, for LRU pages). Each page's process is pinned first
 * (hmmgpu_mm_pin()), so that neither its exit nor its munmap() frees that
 * anon_vma under the eviction; see there for what it cannot cover.
 *
 * Context: process context, sleeps.
 * Return: the pages moved.
 */
unsigned long hmmgpu_migrate_evict(unsigned long start_pfn,
				   unsigned long npages, bool lossy)
{
	struct hmmgpu_evict_owners owners = {};
	DECLARE_BITMAP(held, HMMGPU_MIGRATE_BATCH) = {};
	struct hmmgpu_batch *b;
	unsigned long i, lost = 0, moved;

	if (WARN_ON_ONCE(npages > HMMGPU_MIGRATE_BATCH))
		npages = HMMGPU_MIGRATE_BATCH;
	hmmgpu_evict_pin_owners(&owners, start_pfn, npages, held);
	b = hmmgpu_batch_alloc(npages, GFP_KERNEL | __GFP_NOFAIL);
	hmmgpu_batch_reset(b, npages, HMMGPU_COPY_TO_SYSTEM);
	migrate_device_range(b->src, start_pfn, npages);
	for (i = 0; i < npages; i++) {
		struct page *spage = migrate_pfn_to_page(b->src[i]);

		if (!spage || !(b->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		/* Freed and reallocated since the pinning: pin its process. */
		hmmgpu_evict_pinned(&owners, spage->zone_device_data);
		b->sys[i] = alloc_page(GFP_HIGHUSER_MOVABLE | __GFP_NOFAIL);
		lock_page(b->sys[i]);
		b->dev[i] = spage;
	}

	hmmgpu_batch_copy_submit(b, npages);
	hmmgpu_batch_copy_wait(b);
	for_each_set_bit(i, b->failed, npages) {
		if (lossy) {
			clear_highpage(b->sys[i]);
			lost++;
		} else {
			hmmgpu_batch_drop_dst(b, i);
		}
	}
	hmmgpu_batch_set_dst(b, npages);
	migrate_device_pages(b->src, b->dst, npages);
	moved = hmmgpu_batch_account(b, npages, HMMGPU_COPY_TO_SYSTEM);
	migrate_device_finalize(b->src, b->dst, npages);
	hmmgpu_evict_unpin_owners(&owners, start_pfn, npages, held);
	if (lost)
		pr_err("hmmgpu: %lu pages of a failed device lost their data at eviction (now zero-filled)\n",
		       lost);
	kvfree(b);
	return moved;
}
