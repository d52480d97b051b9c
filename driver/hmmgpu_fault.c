// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: servicing the device's replayable page faults
 */

/**
 * DOC: Fault service
 *
 * A launch that touches a page its context does not map (or writes a page
 * mapped read-only) stalls, and the hardware reports the fault
 * (hmmgpu_fault_signal()). The device's fault worker then, until the
 * hardware has nothing more to report:
 *
 * 1. fetches a batch of up to %HMMGPU_FAULT_BATCH faults
 *    (&hmmgpu_backend_ops.fault_fetch);
 * 2. sorts them by context, address and stall and gathers the distinct
 *    pages (a page is reported by every wave, launch and queue that touched
 *    it, and again after each replay), a write winning over a read;
 * 3. services them per context and notifier region (2 MiB):
 *    hmmgpu_ctx_fault() moves them to the device (first touch) with the
 *    neighbours the prefetcher picks (hmmgpu_policy.c) and maps them where
 *    they lie, faulting them in for the process first as the CPU would.
 *    When that fails because a page cannot be mapped (not mapped in the
 *    process, or not writable for a write; or the process has exited), the
 *    region's pages are serviced again without prefetching, run of
 *    consecutive pages by run and a failed run page by page, and a page
 *    that cannot be mapped gets the launches of the stalls that reported
 *    it cancelled: they end with -EFAULT. Cancelling by stall, not by
 *    page, spares a launch that stalled on the same page after the batch
 *    was read (another launch of the process, which may be allowed to read
 *    the page). A failure that may pass (invalidations that kept racing
 *    with the service, memory short) cancels nothing: the replay retries
 *    the pages, which fault again;
 * 4. replays: every stalled launch retries, and a page that still faults
 *    is reported again.
 *
 * The hardware may drop faults when its buffer is full; they come back
 * after the replay, so a batch with drops is replayed like any other.
 */

#include <linux/slab.h>
#include <linux/sort.h>

#include "hmmgpu_drv.h"
#include "hmmgpu_trace.h"

#define HMMGPU_FAULT_BATCH	256

/**
 * struct hmmgpu_fault_page - one distinct faulting page of a batch
 * @ctx: context
 * @va: the page
 * @write: some fault on it was a write
 * @first: its first fault in the sorted batch
 * @nfaults: its faults (one per stall that reported it)
 */
struct hmmgpu_fault_page {
	u32 ctx;
	u64 va;
	bool write;
	unsigned int first;
	unsigned int nfaults;
};

/**
 * struct hmmgpu_fault_batch - the worker's scratch space
 * @faults: the faults fetched, sorted by context, page and stall
 * @pages: the distinct pages of @faults
 * @faulted: the faulting pages of the region being serviced
 * @write: those of them written
 */
struct hmmgpu_fault_batch {
	struct hmmgpu_fault faults[HMMGPU_FAULT_BATCH];
	struct hmmgpu_fault_page pages[HMMGPU_FAULT_BATCH];
	DECLARE_BITMAP(faulted, HMMGPU_REGION_PAGES);
	DECLARE_BITMAP(write, HMMGPU_REGION_PAGES);
};

/**
 * hmmgpu_fault_signal() - the hardware reported faults
 * @hdev: the device
 *
 * Context: any, including hard IRQ.
 */
void hmmgpu_fault_signal(struct hmmgpu_device *hdev)
{
	queue_work(system_unbound_wq, &hdev->fault_work);
}

static int hmmgpu_fault_cmp(const void *a, const void *b)
{
	const struct hmmgpu_fault *x = a, *y = b;

	if (x->ctx != y->ctx)
		return x->ctx < y->ctx ? -1 : 1;
	if (x->va != y->va)
		return x->va < y->va ? -1 : 1;
	if (x->stall != y->stall)
		return x->stall < y->stall ? -1 : 1;
	return 0;
}

/*
 * Sort the @n faults of @fb and gather their distinct pages (a page is
 * reported by every wave, launch and queue that touched it, and again after
 * each replay). Return: the distinct pages.
 */
static unsigned int hmmgpu_fault_gather(struct hmmgpu_fault_batch *fb,
					unsigned int n)
{
	struct hmmgpu_fault_page *p = NULL;
	unsigned int i, m = 0;

	sort(fb->faults, n, sizeof(fb->faults[0]), hmmgpu_fault_cmp, NULL);
	for (i = 0; i < n; i++) {
		const struct hmmgpu_fault *f = &fb->faults[i];

		if (!p || p->ctx != f->ctx || p->va != f->va) {
			p = &fb->pages[m++];
			*p = (struct hmmgpu_fault_page) {
				.ctx = f->ctx, .va = f->va, .first = i,
			};
		}
		p->write |= f->write;
		p->nfaults++;
	}
	return m;
}

/*
 * Fail the launches stalled on a page that cannot be mapped: each stall
 * that reported it, so that a launch that has stalled on the same page
 * since then is not hit.
 */
static void hmmgpu_fault_cancel(struct hmmgpu_device *hdev,
				const struct hmmgpu_fault_batch *fb,
				const struct hmmgpu_fault_page *p)
{
	struct hmmgpu_cmd cmd = {
		.op = HMMGPU_CMD_FAULT_CANCEL,
		.cancel = { .ctx = p->ctx, .va = p->va },
	};
	const struct hmmgpu_fault *f = &fb->faults[p->first];
	unsigned int i;

	atomic64_inc(&hdev->stats.fault_cancels);
	for (i = 0; i < p->nfaults; i++) {
		if (i && f[i].stall == f[i - 1].stall)
			continue;
		cmd.cancel.stall = f[i].stall;
		hmmgpu_queue_exec(hmmgpu_queue_get(hdev, 0), &cmd);
	}
}

/*
 * The pages from @p[0] on that form one run: the same context and access,
 * consecutive pages, one notifier region.
 */
static unsigned int hmmgpu_fault_run(const struct hmmgpu_fault_page *p,
				     unsigned int n)
{
	unsigned int k = 1;

	while (k < n && p[k].ctx == p[0].ctx && p[k].write == p[0].write &&
	       p[k].va == p[0].va + ((u64)k << PAGE_SHIFT) &&
	       p[k].va >> HMMGPU_REGION_SHIFT == p[0].va >> HMMGPU_REGION_SHIFT)
		k++;
	return k;
}

/* The pages from @p[0] on in the same context and notifier region. */
static unsigned int hmmgpu_fault_region(const struct hmmgpu_fault_page *p,
					unsigned int n)
{
	unsigned int k = 1;

	while (k < n && p[k].ctx == p[0].ctx &&
	       p[k].va >> HMMGPU_REGION_SHIFT == p[0].va >> HMMGPU_REGION_SHIFT)
		k++;
	return k;
}

/* Whether a fault service failed for good (see hmmgpu_ctx_fault()). */
static bool hmmgpu_fault_fatal(int err)
{
	return err == -EFAULT || err == -ESRCH || err == -ENODEV;
}

/*
 * Service the @k pages of one region together, with prefetching; when
 * that fails because a page cannot be mapped, run by run and a failed run
 * page by page, cancelling the launches of the pages that cannot be
 * mapped. Pages whose service may succeed later are left to the replay.
 */
static void hmmgpu_fault_map(struct hmmgpu_device *hdev, struct hmmgpu_ctx *ctx,
			     struct hmmgpu_fault_batch *fb,
			     const struct hmmgpu_fault_page *p, unsigned int k)
{
	u64 base = p->va & ~((u64)HMMGPU_REGION_SIZE - 1);
	unsigned int i, j, m;
	int ret;

	if (!ctx)
		goto cancel;
	bitmap_zero(fb->faulted, HMMGPU_REGION_PAGES);
	bitmap_zero(fb->write, HMMGPU_REGION_PAGES);
	for (i = 0; i < k; i++) {
		__set_bit((p[i].va - base) >> PAGE_SHIFT, fb->faulted);
		if (p[i].write)
			__set_bit((p[i].va - base) >> PAGE_SHIFT, fb->write);
	}
	for (i = 0; i < k; i++)
		trace_hmmgpu_device_fault(hdev->minor, p[i].ctx, p[i].va,
					  p[i].write, p[i].nfaults);
	ret = hmmgpu_ctx_fault(ctx, base, fb->faulted, fb->write, true);
	trace_hmmgpu_fault_service(hdev->minor, p->ctx, p->va, k, ret);
	if (!hmmgpu_fault_fatal(ret))
		return;

	for (i = 0; i < k; i += m) {
		m = hmmgpu_fault_run(p + i, k - i);
		if (!hmmgpu_fault_fatal(hmmgpu_ctx_map(ctx, p[i].va, m,
						       p[i].write)))
			continue;
		for (j = i; j < i + m; j++)
			if (m == 1 ||
			    hmmgpu_fault_fatal(hmmgpu_ctx_map(ctx, p[j].va, 1,
							      p[j].write)))
				hmmgpu_fault_cancel(hdev, fb, &p[j]);
	}
	return;

cancel:
	for (i = 0; i < k; i++)
		hmmgpu_fault_cancel(hdev, fb, &p[i]);
}

/* Service the @n distinct pages of @fb. */
static void hmmgpu_fault_service(struct hmmgpu_device *hdev,
				 struct hmmgpu_fault_batch *fb, unsigned int n)
{
	const struct hmmgpu_fault_page *p = fb->pages;
	struct hmmgpu_ctx *ctx = NULL;
	unsigned int i, k;

	for (i = 0; i < n; i += k) {
		if (!ctx || ctx->index != p[i].ctx) {
			if (ctx)
				hmmgpu_ctx_put(ctx);
			ctx = hmmgpu_ctx_get(hdev, p[i].ctx);
		}
		k = hmmgpu_fault_region(p + i, n - i);
		hmmgpu_fault_map(hdev, ctx, fb, p + i, k);
	}
	if (ctx)
		hmmgpu_ctx_put(ctx);
}

/**
 * hmmgpu_fault_work() - the fault worker of a device
 * @work: &hmmgpu_device.fault_work
 */
void hmmgpu_fault_work(struct work_struct *work)
{
	struct hmmgpu_device *hdev = container_of(work, struct hmmgpu_device,
						  fault_work);
	struct hmmgpu_cmd replay = { .op = HMMGPU_CMD_FAULT_REPLAY };
	struct hmmgpu_fault_batch *fb;
	unsigned int n, m;
	bool dropped;

	/* The work item never runs concurrently with itself. */
	if (!hdev->fault_batch)
		hdev->fault_batch = kvmalloc(sizeof(*fb), GFP_KERNEL);
	fb = hdev->fault_batch;
	if (!fb)
		return;
	while (!hmmgpu_device_usable(hdev)) {
		dropped = false;
		n = hdev->ops->fault_fetch(hdev, fb->faults, HMMGPU_FAULT_BATCH,
					   &dropped);
		if (!n && !dropped)
			break;
		atomic64_add(n, &hdev->stats.faults);
		atomic64_inc(&hdev->stats.fault_batches);
		m = hmmgpu_fault_gather(fb, n);
		atomic64_add(n - m, &hdev->stats.fault_duplicates);
		hmmgpu_fault_service(hdev, fb, m);
		replay.flags = 0;
		if (hmmgpu_queue_exec(hmmgpu_queue_get(hdev, 0), &replay))
			break;
		atomic64_inc(&hdev->stats.fault_replays);
		cond_resched();
	}
}
