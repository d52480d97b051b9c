// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: device memory as MEMORY_DEVICE_PRIVATE struct pages
 */

/**
 * DOC: Overview
 *
 * The VRAM of a device with %HMMGPU_CAP_MIGRATE is represented by struct
 * pages of type MEMORY_DEVICE_PRIVATE, so that mm can map them into a
 * process as device-private swap entries and call us back
 * (&dev_pagemap_ops.migrate_to_ram) when the CPU touches one.
 *
 * The VRAM is cut into chunks of %HMMGPU_CHUNK_SIZE; chunk i covers the
 * VRAM bytes [i * %HMMGPU_CHUNK_SIZE, (i + 1) * %HMMGPU_CHUNK_SIZE). A chunk
 * is populated on demand, when the free list runs dry: a free physical
 * address range from request_free_mem_region() gets struct pages from
 * memremap_pages(), all of them go on the free list, and the backend may
 * provide the chunk's backing (&hmmgpu_backend_ops.chunk_alloc). A page
 * finds its chunk through its &dev_pagemap, and from there its device and
 * VRAM offset; &page.zone_device_data links the free pages, and points
 * an allocated page to the process it is charged to, if any
 * (hmmgpu_mm_charge()), until it is freed.
 *
 * Every device uses the same &dev_pagemap.owner, hmmgpu_pgmap_owner, so
 * that a migration selects the pages of every hmmgpu device and no other
 * driver's.
 *
 * A page is allocated by hmmgpu_vram_alloc_page() and goes back to the free
 * list when mm frees it (&dev_pagemap_ops.page_free). Chunks are only
 * released when the device goes away: hmmgpu_vram_evict() first moves every
 * page still in use back to system memory with migrate_device_range(), then
 * hmmgpu_vram_fini() unmaps the chunks.
 *
 * When every chunk is populated and in use, an allocation evicts: the least
 * recently used chunk's pages move back to system memory through the copy
 * engine (migrate_device_range(), the pages stay mapped where they were,
 * now as system pages), which frees up to a chunk of VRAM. Chunks are kept
 * in LRU order: allocating a page of a chunk and a device mapping a page
 * of it (hmmgpu_vram_touch()) make it the most recently used. Nothing is
 * pinned: the CPU can always take a page back.
 *
 * migrate_device_range() unmaps a chunk's pages one at a time, and the
 * device contexts mapping them are notified for each, a TLB invalidation
 * every time. So each page remembers where a context of its device last
 * mapped it (hmmgpu_vram_note_map()), and eviction first unmaps the chunk
 * from those contexts with one invalidation each
 * (hmmgpu_ctx_unmap_pages()); the notifiers then find nothing to do.
 */

/**
 * DOC: Locking
 *
 * &hmmgpu_vram.chunk_lock (mutex) serialises populating and releasing
 * chunks and protects the chunk table; it is taken with no spinlock held
 * and may be held across memremap_pages().
 *
 * &hmmgpu_vram.lock (spinlock) protects the free list, the counts of pages
 * in use, the LRU list and the dying flag. It is innermost: page_free()
 * takes it from wherever mm drops the last reference of a device page.
 *
 * Order: chunk_lock, then lock.
 */

#include <linux/delay.h>
#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>

#include "hmmgpu_drv.h"

/* How often eviction retries pages that were busy, in ms. */
#define HMMGPU_EVICT_RETRY_MS	10

/**
 * struct hmmgpu_vram_chunk - %HMMGPU_CHUNK_SIZE of VRAM with struct pages
 * @pgmap: the pages' &dev_pagemap
 * @vram: the allocator it belongs to
 * @index: chunk number; its VRAM starts at @index * %HMMGPU_CHUNK_SIZE
 * @lru: in &hmmgpu_vram.lru; protected by &hmmgpu_vram.lock
 * @used: its pages in use; protected by &hmmgpu_vram.lock
 * @evicting: an eviction of the chunk runs; protected by &hmmgpu_vram.lock
 * @hint: per page, where a context of the device last mapped it:
 *	hmmgpu_vram_note_map()'s packed (virtual page, context + 1), or 0;
 *	read and written with READ_ONCE()/WRITE_ONCE(), only a hint
 */
struct hmmgpu_vram_chunk {
	struct dev_pagemap pgmap;
	struct hmmgpu_vram *vram;
	unsigned int index;
	struct list_head lru;
	unsigned int used;
	bool evicting;
	u64 hint[HMMGPU_CHUNK_PAGES];
};

/* Bits of &hmmgpu_vram_chunk.hint below the virtual page number. */
#define HMMGPU_HINT_CTX_BITS	16

/**
 * struct hmmgpu_vram - the VRAM allocator of a device
 * @hdev: the device
 * @chunk_lock: see DOC: Locking; protects the two fields below
 * @nchunks: chunks populated, the first entries of @chunks
 * @chunks: @max_chunks slots
 * @max_chunks: chunks in the device's VRAM
 * @lock: see DOC: Locking; protects the four fields below
 * @free: first free page, the list goes on through zone_device_data
 * @used: pages allocated and not yet freed
 * @dying: set by hmmgpu_vram_evict(): allocations fail
 * @lru: the populated chunks, least recently used first
 */
struct hmmgpu_vram {
	struct hmmgpu_device *hdev;

	struct mutex chunk_lock;	/* see above */
	unsigned int nchunks;
	struct hmmgpu_vram_chunk **chunks;
	unsigned int max_chunks;

	spinlock_t lock;		/* see above */
	struct page *free;
	unsigned long used;
	bool dying;
	struct list_head lru;
};

static char hmmgpu_pgmap_owner_token;
/* The &dev_pagemap.owner of every hmmgpu page. */
void *hmmgpu_pgmap_owner = &hmmgpu_pgmap_owner_token;

static struct hmmgpu_vram_chunk *to_vram_chunk(const struct page *page)
{
	return container_of(page->pgmap, struct hmmgpu_vram_chunk, pgmap);
}

/* The index of @page in @chunk. */
static unsigned int hmmgpu_vram_page_index(const struct hmmgpu_vram_chunk *chunk,
					   const struct page *page)
{
	return page_to_pfn(page) - PHYS_PFN(chunk->pgmap.range.start);
}

/**
 * hmmgpu_is_vram_page() - whether a page is hmmgpu VRAM
 * @page: any page
 *
 * Return: true for a device-private page of an hmmgpu device.
 */
bool hmmgpu_is_vram_page(const struct page *page)
{
	return is_device_private_page(page) &&
	       page->pgmap->owner == hmmgpu_pgmap_owner;
}

/**
 * hmmgpu_vram_page_device() - the device of a VRAM page
 * @page: a page for which hmmgpu_is_vram_page() is true
 *
 * Return: its device.
 */
struct hmmgpu_device *hmmgpu_vram_page_device(const struct page *page)
{
	return to_vram_chunk(page)->vram->hdev;
}

/**
 * hmmgpu_vram_page_offset() - where in its device's VRAM a page lies
 * @page: a page for which hmmgpu_is_vram_page() is true
 *
 * Return: the page's byte offset in the VRAM.
 */
u64 hmmgpu_vram_page_offset(const struct page *page)
{
	struct hmmgpu_vram_chunk *chunk = to_vram_chunk(page);

	return (u64)chunk->index * HMMGPU_CHUNK_SIZE +
	       ((u64)hmmgpu_vram_page_index(chunk, page) << PAGE_SHIFT);
}

static void hmmgpu_vram_page_free(struct page *page)
{
	struct hmmgpu_vram_chunk *chunk = to_vram_chunk(page);
	struct hmmgpu_vram *vram = chunk->vram;
	struct hmmgpu_mm *owner = page->zone_device_data;

	WRITE_ONCE(chunk->hint[hmmgpu_vram_page_index(chunk, page)], 0);
	spin_lock(&vram->lock);
	page->zone_device_data = vram->free;
	vram->free = page;
	vram->used--;
	chunk->used--;
	spin_unlock(&vram->lock);
	if (owner)
		hmmgpu_mm_uncharge(owner, vram->hdev->minor);
}

const struct dev_pagemap_ops hmmgpu_vram_pagemap_ops = {
	.page_free = hmmgpu_vram_page_free,
	.migrate_to_ram = hmmgpu_migrate_to_ram,
};

/* Put every page of a new chunk on the free list. */
static void hmmgpu_vram_chunk_add_free(struct hmmgpu_vram_chunk *chunk)
{
	struct hmmgpu_vram *vram = chunk->vram;
	unsigned long pfn = PHYS_PFN(chunk->pgmap.range.start);
	unsigned long end = pfn + HMMGPU_CHUNK_PAGES;

	spin_lock(&vram->lock);
	for (; pfn < end; pfn++) {
		struct page *page = pfn_to_page(pfn);

		page->zone_device_data = vram->free;
		vram->free = page;
	}
	list_add_tail(&chunk->lru, &vram->lru);
	spin_unlock(&vram->lock);
}

static struct hmmgpu_vram_chunk *hmmgpu_vram_chunk_create(struct hmmgpu_vram *vram,
							  unsigned int index)
{
	struct hmmgpu_device *hdev = vram->hdev;
	struct hmmgpu_vram_chunk *chunk;
	struct resource *res;
	void *addr;
	int ret;

	chunk = kzalloc(sizeof(*chunk), GFP_KERNEL);
	if (!chunk)
		return ERR_PTR(-ENOMEM);
	chunk->vram = vram;
	chunk->index = index;

	res = request_free_mem_region(&iomem_resource, HMMGPU_CHUNK_SIZE,
				      dev_name(&hdev->dev));
	if (IS_ERR(res)) {
		ret = PTR_ERR(res);
		goto err_free_chunk;
	}
	chunk->pgmap.type = MEMORY_DEVICE_PRIVATE;
	chunk->pgmap.range.start = res->start;
	chunk->pgmap.range.end = res->end;
	chunk->pgmap.nr_range = 1;
	chunk->pgmap.ops = &hmmgpu_vram_pagemap_ops;
	chunk->pgmap.owner = hmmgpu_pgmap_owner;

	if (hdev->ops->chunk_alloc) {
		ret = hdev->ops->chunk_alloc(hdev, index);
		if (ret)
			goto err_release_region;
	}
	addr = memremap_pages(&chunk->pgmap, dev_to_node(hdev->dev.parent));
	if (IS_ERR(addr)) {
		ret = PTR_ERR(addr);
		goto err_chunk_free;
	}
	return chunk;

err_chunk_free:
	if (hdev->ops->chunk_free)
		hdev->ops->chunk_free(hdev, index);
err_release_region:
	release_mem_region(res->start, resource_size(res));
err_free_chunk:
	kfree(chunk);
	return ERR_PTR(ret);
}

static void hmmgpu_vram_chunk_destroy(struct hmmgpu_vram_chunk *chunk)
{
	struct hmmgpu_device *hdev = chunk->vram->hdev;

	memunmap_pages(&chunk->pgmap);
	release_mem_region(chunk->pgmap.range.start,
			   range_len(&chunk->pgmap.range));
	if (hdev->ops->chunk_free)
		hdev->ops->chunk_free(hdev, chunk->index);
	kfree(chunk);
}

static bool hmmgpu_vram_has_free(struct hmmgpu_vram *vram, bool *dying)
{
	bool ret;

	spin_lock(&vram->lock);
	ret = vram->free;
	*dying = vram->dying;
	spin_unlock(&vram->lock);
	return ret;
}

/*
 * Populate the next chunk, unless another thread refilled the free list
 * meanwhile. Return: 0, -ENOSPC when the VRAM is exhausted, -ENODEV when
 * the device is going away, or the error of the chunk's creation.
 */
static int hmmgpu_vram_grow(struct hmmgpu_vram *vram)
{
	struct hmmgpu_vram_chunk *chunk;
	bool dying;
	int ret = 0;

	mutex_lock(&vram->chunk_lock);
	/* A dying allocator hands out no page, free ones included. */
	if (hmmgpu_vram_has_free(vram, &dying) && !dying)
		goto out_unlock;
	if (dying) {
		ret = -ENODEV;
		goto out_unlock;
	}
	if (vram->nchunks == vram->max_chunks) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	chunk = hmmgpu_vram_chunk_create(vram, vram->nchunks);
	if (IS_ERR(chunk)) {
		ret = PTR_ERR(chunk);
		goto out_unlock;
	}
	vram->chunks[vram->nchunks++] = chunk;
	hmmgpu_vram_chunk_add_free(chunk);
out_unlock:
	mutex_unlock(&vram->chunk_lock);
	return ret;
}

static struct page *hmmgpu_vram_take(struct hmmgpu_vram *vram)
{
	struct hmmgpu_vram_chunk *chunk;
	struct page *page = NULL;

	spin_lock(&vram->lock);
	if (!vram->dying && vram->free) {
		page = vram->free;
		vram->free = page->zone_device_data;
		vram->used++;
		chunk = to_vram_chunk(page);
		chunk->used++;
		list_move_tail(&chunk->lru, &vram->lru);
	}
	spin_unlock(&vram->lock);
	return page;
}

/**
 * hmmgpu_vram_touch() - note a use of a VRAM page
 * @page: a page for which hmmgpu_is_vram_page() is true
 *
 * Its chunk becomes the most recently used one, the last to be evicted.
 *
 * Context: any; takes a spinlock.
 */
void hmmgpu_vram_touch(struct page *page)
{
	struct hmmgpu_vram_chunk *chunk = to_vram_chunk(page);
	struct hmmgpu_vram *vram = chunk->vram;

	spin_lock(&vram->lock);
	list_move_tail(&chunk->lru, &vram->lru);
	spin_unlock(&vram->lock);
}

/* The least recently used chunk with pages in use, marked as evicting. */
static struct hmmgpu_vram_chunk *hmmgpu_vram_lru_victim(struct hmmgpu_vram *vram)
{
	struct hmmgpu_vram_chunk *chunk, *victim = NULL;

	spin_lock(&vram->lock);
	list_for_each_entry(chunk, &vram->lru, lru) {
		if (chunk->used && !chunk->evicting) {
			victim = chunk;
			break;
		}
	}
	if (victim && !vram->dying) {
		victim->evicting = true;
		/* Concurrent evictions pick other chunks. */
		list_move_tail(&victim->lru, &vram->lru);
	} else {
		victim = NULL;
	}
	spin_unlock(&vram->lock);
	return victim;
}

/**
 * hmmgpu_vram_note_map() - note where a device context maps a VRAM page
 * @page: a page of the VRAM of the device whose context maps it
 * @ctx: the context's index
 * @va: the virtual page
 *
 * Eviction unmaps the pages of a chunk from the contexts that last mapped
 * them with one TLB invalidation per context before mm unmaps them one by
 * one (hmmgpu_vram_unmap_chunk()). A stale hint only costs a fault.
 *
 * Context: any.
 */
void hmmgpu_vram_note_map(struct page *page, u32 ctx, u64 va)
{
	struct hmmgpu_vram_chunk *chunk = to_vram_chunk(page);

	WRITE_ONCE(chunk->hint[hmmgpu_vram_page_index(chunk, page)],
		   (va >> PAGE_SHIFT) << HMMGPU_HINT_CTX_BITS | (ctx + 1));
}

/* The context + 1 of a hint. */
static u32 hmmgpu_hint_ctx(u64 hint)
{
	return hint & GENMASK_ULL(HMMGPU_HINT_CTX_BITS - 1, 0);
}

/* Hints in order of context, then address. */
static int hmmgpu_hint_cmp(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	if (hmmgpu_hint_ctx(x) != hmmgpu_hint_ctx(y))
		return hmmgpu_hint_ctx(x) < hmmgpu_hint_ctx(y) ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * Before mm unmaps the pages of @chunk from every mapping one by one (and
 * calls the device's notifier for each, a TLB invalidation every time),
 * unmap them from the contexts that last mapped them in one go per
 * context, so that those notifiers find nothing left to invalidate.
 * @buf has room for %HMMGPU_CHUNK_PAGES hints.
 */
static void hmmgpu_vram_unmap_chunk(struct hmmgpu_vram_chunk *chunk, u64 *buf)
{
	unsigned int i, n = 0, first;
	u32 ctx;

	for (i = 0; i < HMMGPU_CHUNK_PAGES; i++) {
		buf[n] = READ_ONCE(chunk->hint[i]);
		n += !!buf[n];
	}
	sort(buf, n, sizeof(*buf), hmmgpu_hint_cmp, NULL);
	for (first = 0; first < n; first = i) {
		ctx = hmmgpu_hint_ctx(buf[first]);
		/* The group's hints become its virtual addresses. */
		for (i = first; i < n && hmmgpu_hint_ctx(buf[i]) == ctx; i++)
			buf[i] = (buf[i] >> HMMGPU_HINT_CTX_BITS) << PAGE_SHIFT;
		hmmgpu_ctx_unmap_pages(chunk->vram->hdev, ctx - 1, buf + first,
				       i - first);
	}
}

/*
 * Make room by moving the pages of the least recently used chunk back to
 * system memory. Return: true when some page was freed.
 */
static bool hmmgpu_vram_evict_lru(struct hmmgpu_vram *vram)
{
	struct hmmgpu_device *hdev = vram->hdev;
	struct hmmgpu_vram_chunk *chunk;
	unsigned long moved;
	u64 *hints;

	chunk = hmmgpu_vram_lru_victim(vram);
	if (!chunk)
		return false;
	hints = kvmalloc_array(HMMGPU_CHUNK_PAGES, sizeof(*hints), GFP_KERNEL);
	if (hints) {
		hmmgpu_vram_unmap_chunk(chunk, hints);
		kvfree(hints);
	}
	moved = hmmgpu_migrate_evict(PHYS_PFN(chunk->pgmap.range.start),
				     HMMGPU_CHUNK_PAGES, false);
	spin_lock(&vram->lock);
	chunk->evicting = false;
	spin_unlock(&vram->lock);
	if (moved) {
		atomic64_inc(&hdev->stats.evicted_chunks);
		atomic64_add(moved, &hdev->stats.evicted_pages);
	}
	return moved;
}

/**
 * hmmgpu_vram_alloc_page() - allocate a page of VRAM
 * @hdev: a device with %HMMGPU_CAP_MIGRATE
 *
 * Populates a new chunk when every populated page is in use; once every
 * chunk is populated, evicts the least recently used chunk (its pages go
 * back to system memory, wherever they are mapped) to make room. Pages
 * that are busy, such as the ones of migrations in flight (the caller's
 * included), are not evicted.
 *
 * Context: process context, may sleep; may take page locks with trylock
 * only, so the caller may hold page locks and the mmap lock.
 * Return: the page, locked and with one reference (ready to be a
 * migration destination), or NULL when no page could be freed, the device
 * is going away or memory for a chunk's struct pages is short.
 */
struct page *hmmgpu_vram_alloc_page(struct hmmgpu_device *hdev)
{
	struct hmmgpu_vram *vram = hdev->vram;
	unsigned int evictions = 0;
	struct page *page;
	int ret;

	while (!(page = hmmgpu_vram_take(vram))) {
		ret = hmmgpu_vram_grow(vram);
		if (!ret)
			continue;
		if (ret == -ENOSPC && evictions++ < vram->max_chunks &&
		    hmmgpu_vram_evict_lru(vram))
			continue;
		atomic64_inc(&hdev->stats.vram_alloc_failures);
		return NULL;
	}
	page->zone_device_data = NULL;
	zone_device_page_init(page);
	return page;
}

/**
 * hmmgpu_vram_used() - bytes of VRAM in use
 * @hdev: the device
 *
 * Return: bytes of the pages allocated and not yet freed; 0 for a device
 * without VRAM allocator.
 */
u64 hmmgpu_vram_used(struct hmmgpu_device *hdev)
{
	struct hmmgpu_vram *vram = hdev->vram;
	unsigned long used;

	if (!vram)
		return 0;
	spin_lock(&vram->lock);
	used = vram->used;
	spin_unlock(&vram->lock);
	return (u64)used << PAGE_SHIFT;
}

/**
 * hmmgpu_vram_init() - set up the VRAM allocator of a device
 * @hdev: a device with %HMMGPU_CAP_MIGRATE, its VRAM size a multiple of
 *	%HMMGPU_CHUNK_SIZE
 *
 * No chunk is populated yet.
 *
 * Return: 0, -EINVAL for a VRAM size that is not a whole number of
 * chunks, or -ENOMEM.
 */
int hmmgpu_vram_init(struct hmmgpu_device *hdev)
{
	struct hmmgpu_vram *vram;
	u64 max = div_u64(hdev->vram_size, HMMGPU_CHUNK_SIZE);

	if (!max || !IS_ALIGNED(hdev->vram_size, HMMGPU_CHUNK_SIZE) ||
	    max > UINT_MAX)
		return -EINVAL;
	vram = kzalloc(sizeof(*vram), GFP_KERNEL);
	if (!vram)
		return -ENOMEM;
	vram->chunks = kvcalloc(max, sizeof(*vram->chunks), GFP_KERNEL);
	if (!vram->chunks) {
		kfree(vram);
		return -ENOMEM;
	}
	vram->hdev = hdev;
	vram->max_chunks = max;
	mutex_init(&vram->chunk_lock);
	spin_lock_init(&vram->lock);
	INIT_LIST_HEAD(&vram->lru);
	hdev->vram = vram;
	return 0;
}

static unsigned long hmmgpu_vram_pages_used(struct hmmgpu_vram *vram)
{
	return hmmgpu_vram_used(vram->hdev) >> PAGE_SHIFT;
}

/**
 * hmmgpu_vram_evict() - move every VRAM page of a device to system memory
 * @hdev: the device, still able to copy (not yet removed)
 *
 * Stops allocations, then migrates the pages in use back into the address
 * spaces that map them, through the device's copy engine, until none is
 * left; pages that are busy (locked by a concurrent migration or fault)
 * are retried. A page whose copy fails (a dead device) comes back
 * zero-filled: its data is lost, which is logged.
 *
 * Context: process context, sleeps; no lock of the device held.
 */
void hmmgpu_vram_evict(struct hmmgpu_device *hdev)
{
	struct hmmgpu_vram *vram = hdev->vram;
	unsigned int i, n;

	if (!vram)
		return;
	spin_lock(&vram->lock);
	vram->dying = true;
	spin_unlock(&vram->lock);

	mutex_lock(&vram->chunk_lock);
	n = vram->nchunks;
	mutex_unlock(&vram->chunk_lock);

	while (hmmgpu_vram_pages_used(vram)) {
		for (i = 0; i < n; i++) {
			struct hmmgpu_vram_chunk *chunk = vram->chunks[i];

			hmmgpu_migrate_evict(PHYS_PFN(chunk->pgmap.range.start),
					     HMMGPU_CHUNK_PAGES, true);
		}
		if (hmmgpu_vram_pages_used(vram))
			msleep(HMMGPU_EVICT_RETRY_MS);
	}
}

/**
 * hmmgpu_vram_fini() - release the chunks and the allocator of a device
 * @hdev: the device, evicted by hmmgpu_vram_evict()
 *
 * Context: process context, may sleep.
 */
void hmmgpu_vram_fini(struct hmmgpu_device *hdev)
{
	struct hmmgpu_vram *vram = hdev->vram;

	if (!vram)
		return;
	WARN_ON(hmmgpu_vram_pages_used(vram));
	mutex_lock(&vram->chunk_lock);
	while (vram->nchunks)
		hmmgpu_vram_chunk_destroy(vram->chunks[--vram->nchunks]);
	mutex_unlock(&vram->chunk_lock);

	hdev->vram = NULL;
	mutex_destroy(&vram->chunk_lock);
	kvfree(vram->chunks);
	kfree(vram);
}
