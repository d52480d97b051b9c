// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: memory advice per address range of a process, and its VRAM use
 */

/**
 * DOC: Advice
 *
 * HMMGPU_IOCTL_ADVISE attaches hints to a range of a process's address
 * space, as cudaMemAdvise() does: a preferred location (a device, or the
 * CPU) and the set of devices that access the range (accessed-by). They
 * steer the device fault service (hmmgpu_ctx_map()): a device migrates the
 * pages it faults on to its VRAM (the first-touch default, see the
 * fault_migrate parameter) unless the range prefers another location or
 * the device is an accessed-by device of it, in which case it maps them
 * where they lie. A range that prefers the device migrates even with
 * fault_migrate off. Explicit migrations (HMMGPU_IOCTL_MIGRATE) and CPU
 * faults are not affected.
 *
 * Read-mostly (duplicating pages read-only on several processors) cannot
 * be made correct here: mm has no way for a driver to write-protect the
 * CPU's mapping of a page and be told of the next CPU write, so a device
 * copy would go stale. HMMGPU_ADVISE_READ_MOSTLY fails with -EOPNOTSUPP.
 *
 * The advice of a process lives in one &struct hmmgpu_mm per mm (an
 * mmu_notifier obtained with mmu_notifier_get(), shared by every file and
 * context of the process): an interval tree of disjoint ranges, split and
 * merged as advice changes, so that adjacent ranges always differ. An
 * munmap drops the advice of the range (the notifier's
 * invalidate_range_start() for %MMU_NOTIFY_UNMAP).
 *
 * Locking: &hmmgpu_mm.lock (mutex) protects the tree. The notifier takes
 * it, so nothing allocates under it with reclaim: nodes are allocated
 * before it is taken (hmmgpu_advice_set()), or without reclaim in the
 * notifier, where a failed allocation drops the advice of the whole range
 * it would have split (advice is a hint).
 */

/**
 * DOC: VRAM use per process
 *
 * The same &struct hmmgpu_mm counts, per device, the VRAM pages that hold
 * pages of the process: a migration to a device charges each destination
 * page to the process it migrates for (hmmgpu_mm_charge(), the page points
 * to it through &page.zone_device_data), and the page's release uncharges
 * it, whichever way it goes (CPU fault, migration, eviction, munmap, exit).
 * Every open file holds its process's &struct hmmgpu_mm, and each charged
 * page a reference, so the counts outlive the files while pages remain
 * (a child that shares them after fork). /proc/PID/fdinfo shows the count
 * of the file's device (hmmgpu_device.c).
 */

#include <linux/interval_tree.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"

/* &hmmgpu_advice_attrs.preferred */
#define HMMGPU_PREF_NONE	0
#define HMMGPU_PREF_CPU		1
#define HMMGPU_PREF_DEVICE(m)	(2 + (m))

/**
 * struct hmmgpu_advice_range - a range with advice
 * @it: its place in &hmmgpu_mm.ranges, [start, last]
 * @attrs: its advice, never all default
 */
struct hmmgpu_advice_range {
	struct interval_tree_node it;
	struct hmmgpu_advice_attrs attrs;
};

/**
 * struct hmmgpu_mm - the advice and VRAM use of one process
 * @mn: its notifier, from mmu_notifier_get()
 * @mm: its address space, grabbed (mm_count) for as long as @ref is held:
 *	the notifier lets go of it when the last file closes, VRAM pages
 *	charged to the process may remain (hmmgpu_mm_pin())
 * @evict_lock: protects @evicting and @unmapping
 * @evicting: evictions that pinned the process (hmmgpu_mm_pin())
 * @unmapping: munmap()s in progress, between the notifier's
 *	invalidate_range_start() and invalidate_range_end()
 * @evict_wq: where a munmap() waits for @evicting to drop to 0
 * @lock: see DOC: Advice; protects @ranges
 * @ranges: disjoint ranges, adjacent ones with different advice
 * @ref: held by the notifier and by each VRAM page charged to the process
 * @vram_pages: per device minor, the VRAM pages charged to the process
 * @cpu: what the process's CPU faults on VRAM brought back
 *	(hmmgpu_fault_around())
 */
struct hmmgpu_mm {
	struct mmu_notifier mn;
	struct mm_struct *mm;
	spinlock_t evict_lock;		/* see above */
	unsigned int evicting;
	unsigned int unmapping;
	wait_queue_head_t evict_wq;
	struct mutex lock;		/* see above */
	struct rb_root_cached ranges;
	struct kref ref;
	atomic_long_t vram_pages[HMMGPU_MAX_DEVICES];
	struct hmmgpu_cpu_faults cpu;
};

/* A piece of the painting of hmmgpu_advice_paint(). */
struct hmmgpu_advice_seg {
	unsigned long start;
	unsigned long last;
	struct hmmgpu_advice_attrs attrs;
};

static bool hmmgpu_attrs_default(const struct hmmgpu_advice_attrs *a)
{
	return !a->preferred && !a->accessed_by;
}

static bool hmmgpu_attrs_equal(const struct hmmgpu_advice_attrs *a,
			       const struct hmmgpu_advice_attrs *b)
{
	return a->preferred == b->preferred && a->accessed_by == b->accessed_by;
}

/* Apply @advice of device @minor to @a (HMMGPU_ADVISE_CLEAR: forget it). */
static void hmmgpu_attrs_apply(struct hmmgpu_advice_attrs *a, u32 advice,
			       unsigned int minor)
{
	switch (advice) {
	case HMMGPU_ADVISE_PREFERRED_DEVICE:
		a->preferred = HMMGPU_PREF_DEVICE(minor);
		break;
	case HMMGPU_ADVISE_PREFERRED_CPU:
		a->preferred = HMMGPU_PREF_CPU;
		break;
	case HMMGPU_ADVISE_UNSET_PREFERRED:
		a->preferred = HMMGPU_PREF_NONE;
		break;
	case HMMGPU_ADVISE_ACCESSED_BY:
		a->accessed_by |= BIT_ULL(minor);
		break;
	case HMMGPU_ADVISE_UNSET_ACCESSED_BY:
		a->accessed_by &= ~BIT_ULL(minor);
		break;
	default:	/* munmap */
		memset(a, 0, sizeof(*a));
		break;
	}
}

/* Ranges in [@start - 1, @last + 1]: the ones a change may touch. */
static unsigned int hmmgpu_advice_count(struct hmmgpu_mm *hm,
					unsigned long start, unsigned long last)
{
	struct interval_tree_node *it;
	unsigned int n = 0;

	for (it = interval_tree_iter_first(&hm->ranges, start ? start - 1 : 0,
					   last + 1);
	     it; it = interval_tree_iter_next(it, start ? start - 1 : 0,
					      last + 1))
		n++;
	return n;
}

/*
 * Repaint [@start, @last]: take the @n ranges around it out of the tree,
 * cut them into segments, apply the advice to the part inside (gaps
 * included), merge equal neighbours, drop default ones, and put the result
 * back using the old nodes and the @nfree nodes of @spare. Under the lock.
 * Return: the spare nodes used, or -ENOMEM when @nfree is not enough.
 */
static int hmmgpu_advice_paint(struct hmmgpu_mm *hm, unsigned long start,
			       unsigned long last, u32 advice,
			       unsigned int minor,
			       struct hmmgpu_advice_seg *seg,
			       struct hmmgpu_advice_range **nodes,
			       unsigned int n,
			       struct hmmgpu_advice_range **spare,
			       unsigned int nfree)
{
	struct hmmgpu_advice_attrs none = {};
	unsigned long lo = start ? start - 1 : 0, pos = start;
	struct interval_tree_node *it;
	unsigned int i = 0, k = 0, m, used;

	for (it = interval_tree_iter_first(&hm->ranges, lo, last + 1); it;
	     it = interval_tree_iter_next(it, lo, last + 1))
		nodes[i++] = container_of(it, struct hmmgpu_advice_range, it);
	if (WARN_ON_ONCE(i != n))
		return -EINVAL;

	for (i = 0; i < n; i++) {
		struct hmmgpu_advice_range *r = nodes[i];
		unsigned long s = r->it.start, l = r->it.last;

		if (s < start) {	/* the part before */
			seg[k++] = (struct hmmgpu_advice_seg) {
				s, min(l, start - 1), r->attrs };
			s = start;
		}
		if (s > pos && s <= last + 1 && pos <= last) {	/* a gap */
			seg[k] = (struct hmmgpu_advice_seg) {
				pos, min(s - 1, last), none };
			hmmgpu_attrs_apply(&seg[k++].attrs, advice, minor);
		}
		if (s <= l && s <= last) {	/* the part inside */
			seg[k] = (struct hmmgpu_advice_seg) {
				s, min(l, last), r->attrs };
			hmmgpu_attrs_apply(&seg[k++].attrs, advice, minor);
			pos = min(l, last) + 1;
		}
		if (l > last) {		/* the part after */
			seg[k++] = (struct hmmgpu_advice_seg) {
				max(s, last + 1), l, r->attrs };
		}
		pos = max(pos, min(l, last) + 1);
	}
	if (pos <= last) {
		seg[k] = (struct hmmgpu_advice_seg) { pos, last, none };
		hmmgpu_attrs_apply(&seg[k++].attrs, advice, minor);
	}

	/* Merge, drop the default ones. */
	for (i = 0, m = 0; i < k; i++) {
		if (hmmgpu_attrs_default(&seg[i].attrs))
			continue;
		if (m && seg[m - 1].last + 1 == seg[i].start &&
		    hmmgpu_attrs_equal(&seg[m - 1].attrs, &seg[i].attrs)) {
			seg[m - 1].last = seg[i].last;
			continue;
		}
		seg[m++] = seg[i];
	}
	if (m > n + nfree)
		return -ENOMEM;

	for (i = 0; i < n; i++)
		interval_tree_remove(&nodes[i]->it, &hm->ranges);
	for (i = 0, used = 0; i < m; i++) {
		struct hmmgpu_advice_range *r = i < n ? nodes[i] : spare[used++];

		r->it.start = seg[i].start;
		r->it.last = seg[i].last;
		r->attrs = seg[i].attrs;
		interval_tree_insert(&r->it, &hm->ranges);
	}
	for (; i < n; i++)
		kfree(nodes[i]);
	return used;
}

/* Scratch space for a repaint touching @n ranges. */
struct hmmgpu_advice_scratch {
	struct hmmgpu_advice_seg *seg;
	struct hmmgpu_advice_range **nodes;
	struct hmmgpu_advice_range **spare;
	unsigned int n;
	unsigned int nfree;
};

static void hmmgpu_advice_scratch_free(struct hmmgpu_advice_scratch *sc)
{
	while (sc->nfree)
		kfree(sc->spare[--sc->nfree]);
	kfree(sc->seg);
	kfree(sc->nodes);
	kfree(sc->spare);
	memset(sc, 0, sizeof(*sc));
}

/* Room for a repaint of @n ranges: 2n + 3 segments and spare nodes. */
static int hmmgpu_advice_scratch_alloc(struct hmmgpu_advice_scratch *sc,
				       unsigned int n, gfp_t gfp)
{
	unsigned int segs = 2 * n + 3;

	sc->seg = kmalloc_array(segs, sizeof(*sc->seg), gfp);
	sc->nodes = kmalloc_array(n + 1, sizeof(*sc->nodes), gfp);
	sc->spare = kmalloc_array(segs, sizeof(*sc->spare), gfp);
	if (!sc->seg || !sc->nodes || !sc->spare)
		goto err;
	sc->n = n;
	for (sc->nfree = 0; sc->nfree < segs; sc->nfree++) {
		sc->spare[sc->nfree] = kzalloc(sizeof(**sc->spare), gfp);
		if (!sc->spare[sc->nfree])
			goto err;
	}
	return 0;
err:
	hmmgpu_advice_scratch_free(sc);
	return -ENOMEM;
}

/* Repaint with the scratch; keeps the unused spares in it. */
static int hmmgpu_advice_apply(struct hmmgpu_mm *hm,
			       struct hmmgpu_advice_scratch *sc,
			       unsigned long start, unsigned long last,
			       u32 advice, unsigned int minor)
{
	int used;

	used = hmmgpu_advice_paint(hm, start, last, advice, minor, sc->seg,
				   sc->nodes, sc->n, sc->spare, sc->nfree);
	if (used < 0)
		return used;
	memmove(sc->spare, sc->spare + used,
		(sc->nfree - used) * sizeof(*sc->spare));
	sc->nfree -= used;
	return 0;
}

/**
 * hmmgpu_advice_set() - change the advice of a range
 * @hm: the process's advice
 * @start: first address
 * @end: end address, exclusive
 * @advice: enum hmmgpu_advice
 * @minor: the device the advice names (N of /dev/hmmgpuN)
 *
 * Context: process context, sleeps.
 * Return: 0 or -ENOMEM.
 */
static int hmmgpu_advice_set(struct hmmgpu_mm *hm, unsigned long start,
			     unsigned long end, u32 advice, unsigned int minor)
{
	struct hmmgpu_advice_scratch sc = {};
	unsigned int n;
	int ret;

	for (;;) {
		mutex_lock(&hm->lock);
		n = hmmgpu_advice_count(hm, start, end - 1);
		if (sc.seg && n == sc.n)
			break;
		mutex_unlock(&hm->lock);
		hmmgpu_advice_scratch_free(&sc);
		if (hmmgpu_advice_scratch_alloc(&sc, n, GFP_KERNEL))
			return -ENOMEM;
	}
	ret = hmmgpu_advice_apply(hm, &sc, start, end - 1, advice, minor);
	mutex_unlock(&hm->lock);
	hmmgpu_advice_scratch_free(&sc);
	return ret;
}

/**
 * hmmgpu_advice_lookup() - the advice of an address
 * @hm: the process's advice, or NULL
 * @addr: the address
 * @attrs: out, its advice
 *
 * Return: the end of the range of @addr with that same advice.
 */
unsigned long hmmgpu_advice_lookup(struct hmmgpu_mm *hm, unsigned long addr,
				   struct hmmgpu_advice_attrs *attrs)
{
	struct interval_tree_node *it;
	unsigned long end = ULONG_MAX;

	memset(attrs, 0, sizeof(*attrs));
	if (!hm)
		return end;
	mutex_lock(&hm->lock);
	it = interval_tree_iter_first(&hm->ranges, addr, ULONG_MAX);
	if (it && it->start <= addr) {
		*attrs = container_of(it, struct hmmgpu_advice_range, it)->attrs;
		end = it->last + 1;
	} else if (it) {
		end = it->start;
	}
	mutex_unlock(&hm->lock);
	return end;
}

/**
 * hmmgpu_advice_migrate() - whether a device fault migrates
 * @attrs: the advice of the faulting page
 * @minor: the faulting device
 *
 * Return: true to move the page to the device's VRAM, false to map it
 * where it lies.
 */
bool hmmgpu_advice_migrate(const struct hmmgpu_advice_attrs *attrs,
			   unsigned int minor)
{
	if (attrs->preferred == HMMGPU_PREF_DEVICE(minor))
		return true;
	if (attrs->preferred || (attrs->accessed_by & BIT_ULL(minor)))
		return false;
	return READ_ONCE(hmmgpu_fault_migrate);
}

/*
 * Forget the ranges overlapping [@start, @last], or with @inside only those
 * lying wholly inside it. Under the lock (or with no user left).
 */
static void hmmgpu_advice_drop(struct hmmgpu_mm *hm, unsigned long start,
			       unsigned long last, bool inside)
{
	struct interval_tree_node *it, *next;

	for (it = interval_tree_iter_first(&hm->ranges, start, last); it;
	     it = next) {
		next = interval_tree_iter_next(it, start, last);
		if (inside && (it->start < start || it->last > last))
			continue;
		interval_tree_remove(it, &hm->ranges);
		kfree(container_of(it, struct hmmgpu_advice_range, it));
	}
}

static int hmmgpu_mm_invalidate_start(struct mmu_notifier *mn,
				      const struct mmu_notifier_range *range)
{
	struct hmmgpu_mm *hm = container_of(mn, struct hmmgpu_mm, mn);
	struct hmmgpu_advice_scratch sc = {};
	struct hmmgpu_advice_range *spare[3];
	struct hmmgpu_advice_seg seg[7];	/* 2 * 2 + 3 */
	struct hmmgpu_advice_range *nodes[2];
	unsigned long last = range->end - 1;
	unsigned int i;

	if (range->event != MMU_NOTIFY_UNMAP)
		return 0;
	/*
	 * No eviction may be restoring mappings of the memory that goes (see
	 * hmmgpu_mm_pin()): new ones keep off until invalidate_range_end(),
	 * the ones under way are waited for. The OOM reaper (not blockable)
	 * frees no VMA, so it need not wait; and since there is an
	 * invalidate_range_end(), this must not fail.
	 */
	spin_lock(&hm->evict_lock);
	hm->unmapping++;
	spin_unlock(&hm->evict_lock);
	if (mmu_notifier_range_blockable(range))
		wait_event(hm->evict_wq, !READ_ONCE(hm->evicting));
	/* Forget what CPU faults brought back of the memory that goes. */
	hmmgpu_fault_around_forget(&hm->cpu, range->start, range->end, false);
	if (mmu_notifier_range_blockable(range))
		mutex_lock(&hm->lock);
	else if (!mutex_trylock(&hm->lock))
		return 0;	/* the OOM reaper: the process dies, advice too */
	/* Ranges inside go; the (at most two) that stick out are cut. */
	hmmgpu_advice_drop(hm, range->start, last, true);
	sc.seg = seg;
	sc.nodes = nodes;
	sc.spare = spare;
	sc.n = hmmgpu_advice_count(hm, range->start, last);
	for (i = 0; i < ARRAY_SIZE(spare); i++) {
		spare[i] = kzalloc(sizeof(*spare[i]), GFP_NOWAIT | __GFP_NOWARN);
		if (spare[i])
			sc.nfree = i + 1;
		else
			break;
	}
	if (sc.n > ARRAY_SIZE(nodes) ||
	    hmmgpu_advice_apply(hm, &sc, range->start, last, 0, 0)) {
		/* No memory to cut: the advice of the ranges touched goes. */
		hmmgpu_advice_drop(hm, range->start, last, false);
	}
	while (sc.nfree)
		kfree(spare[--sc.nfree]);
	mutex_unlock(&hm->lock);
	return 0;
}

static void hmmgpu_mm_invalidate_end(struct mmu_notifier *mn,
				     const struct mmu_notifier_range *range)
{
	struct hmmgpu_mm *hm = container_of(mn, struct hmmgpu_mm, mn);

	if (range->event != MMU_NOTIFY_UNMAP)
		return;
	spin_lock(&hm->evict_lock);
	hm->unmapping--;
	spin_unlock(&hm->evict_lock);
}

static struct mmu_notifier *hmmgpu_mm_alloc(struct mm_struct *mm)
{
	struct hmmgpu_mm *hm = kzalloc(sizeof(*hm), GFP_KERNEL);

	if (!hm)
		return ERR_PTR(-ENOMEM);
	mmgrab(mm);
	hm->mm = mm;
	spin_lock_init(&hm->evict_lock);
	init_waitqueue_head(&hm->evict_wq);
	mutex_init(&hm->lock);
	hm->ranges = RB_ROOT_CACHED;
	hmmgpu_cpu_faults_init(&hm->cpu);
	kref_init(&hm->ref);
	return &hm->mn;
}

static void hmmgpu_mm_release(struct kref *ref)
{
	struct hmmgpu_mm *hm = container_of(ref, struct hmmgpu_mm, ref);

	mutex_destroy(&hm->lock);
	mmdrop(hm->mm);
	kfree(hm);
}

static void hmmgpu_mm_free(struct mmu_notifier *mn)
{
	struct hmmgpu_mm *hm = container_of(mn, struct hmmgpu_mm, mn);

	hmmgpu_advice_drop(hm, 0, ULONG_MAX, false);
	kref_put(&hm->ref, hmmgpu_mm_release);
}

static const struct mmu_notifier_ops hmmgpu_mm_ops = {
	.invalidate_range_start = hmmgpu_mm_invalidate_start,
	.invalidate_range_end = hmmgpu_mm_invalidate_end,
	.alloc_notifier = hmmgpu_mm_alloc,
	.free_notifier = hmmgpu_mm_free,
};

/**
 * hmmgpu_mm_get() - the advice of a process, created on first use
 * @mm: its address space, with a user reference
 *
 * Context: process context; takes the mmap lock for writing.
 * Return: the advice, to be released with hmmgpu_mm_put(), or an ERR_PTR.
 */
struct hmmgpu_mm *hmmgpu_mm_get(struct mm_struct *mm)
{
	struct mmu_notifier *mn = mmu_notifier_get(&hmmgpu_mm_ops, mm);

	if (IS_ERR(mn))
		return ERR_CAST(mn);
	return container_of(mn, struct hmmgpu_mm, mn);
}

/**
 * hmmgpu_mm_put() - release the advice of a process
 * @hm: from hmmgpu_mm_get(), or NULL
 */
void hmmgpu_mm_put(struct hmmgpu_mm *hm)
{
	if (hm)
		mmu_notifier_put(&hm->mn);
}

/**
 * hmmgpu_mm_cpu_faults() - the fault-around state of a process
 * @hm: the process
 *
 * Return: &hmmgpu_mm.cpu.
 */
struct hmmgpu_cpu_faults *hmmgpu_mm_cpu_faults(struct hmmgpu_mm *hm)
{
	return &hm->cpu;
}

/**
 * hmmgpu_page_cpu_faults() - the fault-around state of a VRAM page's process
 * @page: a VRAM page, locked (a CPU fault on it is being handled)
 *
 * The page keeps its &struct hmmgpu_mm while it is charged to it.
 *
 * Return: &hmmgpu_mm.cpu of the process the page was charged to, or NULL
 * when it was charged to none.
 */
struct hmmgpu_cpu_faults *hmmgpu_page_cpu_faults(struct page *page)
{
	struct hmmgpu_mm *hm = page->zone_device_data;

	return hm ? &hm->cpu : NULL;
}

/**
 * hmmgpu_mm_charge() - charge a VRAM page to a process
 * @hm: the process
 * @page: a VRAM page just allocated to hold a page of the process
 * @minor: the page's device
 *
 * The page keeps @hm until it is freed (hmmgpu_mm_uncharge()), also past
 * the end of the process when another one shares it after fork.
 *
 * Context: any.
 */
void hmmgpu_mm_charge(struct hmmgpu_mm *hm, struct page *page,
		      unsigned int minor)
{
	kref_get(&hm->ref);
	atomic_long_inc(&hm->vram_pages[minor]);
	page->zone_device_data = hm;
}

/**
 * hmmgpu_mm_uncharge() - a VRAM page charged to a process was freed
 * @hm: the process, from &page.zone_device_data of the page
 * @minor: the page's device
 *
 * Context: any, also atomic (mm frees device pages under spinlocks).
 */
void hmmgpu_mm_uncharge(struct hmmgpu_mm *hm, unsigned int minor)
{
	atomic_long_dec(&hm->vram_pages[minor]);
	kref_put(&hm->ref, hmmgpu_mm_release);
}

/**
 * hmmgpu_mm_pin() - keep a process's mappings of its VRAM pages in place
 *	for an eviction
 * @hm: the process, from &page.zone_device_data of a VRAM page that holds
 *	a reference to it (the page is locked or referenced)
 *
 * Eviction unmaps VRAM pages without the mmap lock (migrate_device_range())
 * and walks their reverse map again when it restores the mappings, through
 * each page's anon_vma, which mm does not pin in between (migrate_device.c,
 * unlike migrate_folio_unmap()). So the VMAs that keep that anon_vma alive
 * must stay: a user reference of the address space keeps exit_mmap() away,
 * and a munmap() waits in the notifier until hmmgpu_mm_unpin(); while one
 * is under way the process is not pinned at all. A process whose files are
 * all closed has no notifier, and a forked child that shares the pages
 * none of its own: their munmap() is not held off.
 *
 * Context: any; takes &hmmgpu_mm.evict_lock.
 * Return: true when pinned; false when the process is exiting or
 * unmapping memory.
 */
bool hmmgpu_mm_pin(struct hmmgpu_mm *hm)
{
	bool pinned = false;

	spin_lock(&hm->evict_lock);
	if (!hm->unmapping && mmget_not_zero(hm->mm)) {
		hm->evicting++;
		kref_get(&hm->ref);
		pinned = true;
	}
	spin_unlock(&hm->evict_lock);
	return pinned;
}

/**
 * hmmgpu_mm_unpin() - release a process pinned by hmmgpu_mm_pin()
 * @hm: the process
 *
 * A munmap() waiting for the eviction goes on. The last user of the address
 * space may be released here; its teardown goes to a worker, so the caller
 * may hold page locks and another process's mmap lock.
 *
 * Context: process context.
 */
void hmmgpu_mm_unpin(struct hmmgpu_mm *hm)
{
	bool idle;

	spin_lock(&hm->evict_lock);
	idle = !--hm->evicting;
	spin_unlock(&hm->evict_lock);
	if (idle)
		wake_up_all(&hm->evict_wq);
	mmput_async(hm->mm);
	kref_put(&hm->ref, hmmgpu_mm_release);
}

/**
 * hmmgpu_mm_vram_pages() - VRAM pages a process has on a device
 * @hm: the process
 * @minor: the device
 *
 * Return: the pages charged to @hm by hmmgpu_mm_charge() and not yet freed.
 */
unsigned long hmmgpu_mm_vram_pages(struct hmmgpu_mm *hm, unsigned int minor)
{
	return atomic_long_read(&hm->vram_pages[minor]);
}

/* Every page of [@start, @end) is mapped. */
static bool hmmgpu_advice_mapped(struct mm_struct *mm, unsigned long start,
				 unsigned long end)
{
	struct vm_area_struct *vma;
	bool ret = true;

	mmap_read_lock(mm);
	while (start < end) {
		vma = vma_lookup(mm, start);
		if (!vma) {
			ret = false;
			break;
		}
		start = vma->vm_end;
	}
	mmap_read_unlock(mm);
	return ret;
}

/* A page-aligned, non-empty, non-wrapping range of user addresses. */
static bool hmmgpu_advice_range_valid(u64 addr, u64 length)
{
	return PAGE_ALIGNED(addr) && PAGE_ALIGNED(length) && length &&
	       addr + length > addr && addr + length <= TASK_SIZE;
}

/*
 * The advice of the file's process, for a call of that process on a range
 * that is mapped.
 */
static struct hmmgpu_mm *hmmgpu_file_advice(struct hmmgpu_file *hfile,
					    u64 addr, u64 length)
{
	if (current->mm != hfile->mm)
		return ERR_PTR(-EPERM);
	if (!hmmgpu_advice_mapped(hfile->mm, addr, addr + length))
		return ERR_PTR(-EFAULT);
	return hfile->advice;
}

/**
 * hmmgpu_ioctl_advise() - HMMGPU_IOCTL_ADVISE
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_advise
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_advise(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_advise args;
	struct hmmgpu_mm *hm;
	int ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags || memchr_inv(args.reserved, 0, sizeof(args.reserved)) ||
	    !hmmgpu_advice_range_valid(args.addr, args.length) ||
	    args.advice < HMMGPU_ADVISE_PREFERRED_DEVICE ||
	    args.advice > HMMGPU_ADVISE_UNSET_READ_MOSTLY)
		return -EINVAL;
	if (args.advice >= HMMGPU_ADVISE_READ_MOSTLY)
		return -EOPNOTSUPP;
	hm = hmmgpu_file_advice(hfile, args.addr, args.length);
	if (IS_ERR(hm))
		return PTR_ERR(hm);
	ret = hmmgpu_advice_set(hm, args.addr, args.addr + args.length,
				args.advice, hfile->hdev->minor);
	return ret;
}

/* Fill the output of @args from the advice of its range. */
static void hmmgpu_advice_report(struct hmmgpu_mm *hm,
				 struct hmmgpu_range_advice *args)
{
	unsigned long addr = args->addr, end = args->addr + args->length;
	struct hmmgpu_advice_attrs a, all;
	bool mixed = false;

	addr = hmmgpu_advice_lookup(hm, addr, &all);
	while (addr < end) {
		addr = hmmgpu_advice_lookup(hm, addr, &a);
		mixed |= a.preferred != all.preferred;
		all.accessed_by &= a.accessed_by;
	}
	args->accessed_by = all.accessed_by;
	if (mixed || all.preferred == HMMGPU_PREF_NONE)
		return;
	if (all.preferred == HMMGPU_PREF_CPU) {
		args->preferred = HMMGPU_PREFERRED_CPU;
		return;
	}
	args->preferred = HMMGPU_PREFERRED_DEVICE;
	args->preferred_device = all.preferred - HMMGPU_PREF_DEVICE(0);
}

/**
 * hmmgpu_ioctl_get_advice() - HMMGPU_IOCTL_GET_ADVICE
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_range_advice
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_get_advice(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_range_advice args;
	struct hmmgpu_mm *hm;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags || memchr_inv(args.reserved, 0, sizeof(args.reserved)) ||
	    !hmmgpu_advice_range_valid(args.addr, args.length))
		return -EINVAL;
	hm = hmmgpu_file_advice(hfile, args.addr, args.length);
	if (IS_ERR(hm))
		return PTR_ERR(hm);

	args.preferred = HMMGPU_PREFERRED_NONE;
	args.preferred_device = 0;
	args.pad = 0;
	hmmgpu_advice_report(hm, &args);
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return 0;
}
