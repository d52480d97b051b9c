// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: page tables of the emulated GPU's MMU
 */

/**
 * DOC: Device page tables
 *
 * A context of the emulated GPU translates 48-bit virtual addresses through
 * four levels of tables in guest memory (emu/SPEC.md section 4.5): the
 * root (level 3) and the directories (levels 2 and 1) point to the tables
 * below them, a leaf table (level 0) maps 512 pages of 4 KiB. Every table
 * is one zeroed 4 KiB page from dma_alloc_coherent(), so the device walks
 * it by its DMA address.
 *
 * Each table has a software shadow, &struct hmmgpu_emu_pt, with its kernel
 * address, its DMA address and, for the root and the directories, the
 * shadows of its children. The driver walks the shadows, never the
 * hardware's view, and writes every entry with one 64-bit store, the
 * granule the device reads (its walks run concurrently with these writes).
 * A new table is zeroed before the directory entry that names it is
 * written (dma_wmb()), so a walk never sees garbage below a valid entry.
 *
 * Tables are only ever added: hmmgpu_emu_mmu_unmap() clears leaves but
 * keeps empty tables, because freeing a directory's child would need a TLB
 * invalidation and a wait before the memory could be reused, which a
 * notifier in reclaim cannot afford. They are all freed with the context
 * (hmmgpu_emu_mmu_free()). A leaf table counts its valid entries, so an
 * unmap of a huge range (a whole address space at exit) visits only the
 * tables that exist and scans only the leaf tables that map something.
 *
 * Locking: none here. The core serialises hmmgpu_emu_mmu_map() and
 * hmmgpu_emu_mmu_unmap() of one table with the lock of its context, and
 * calls hmmgpu_emu_mmu_free() once no other call can run; that lock
 * protects the entries and the valid counts. MMU notifiers take it in
 * reclaim, so the tables are added beforehand, with reclaim, by
 * hmmgpu_emu_mmu_prepare(), which the core calls without that lock but
 * serialised with the maps of the table; a child pointer is published with
 * release semantics for the unmaps that may walk concurrently. A map that
 * still finds a table missing allocates it without reclaim (GFP_NOWAIT).
 * The device only reads the tables.
 */

#include <linux/bitfield.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/minmax.h>
#include <linux/slab.h>

#include "hmmgpu_drv.h"
#include "hmmgpu_emu.h"
#include "hmmgpu_regs.h"

#define HMMGPU_EMU_VA_LIMIT	BIT_ULL(HMMGPU_HW_VA_BITS)
#define HMMGPU_EMU_ROOT_LEVEL	(HMMGPU_PT_LEVELS - 1)
/* Tables added by a map: under the context's lock, which reclaim takes. */
#define HMMGPU_EMU_MAP_GFP	(GFP_NOWAIT | __GFP_NOWARN)

/**
 * struct hmmgpu_emu_pt - the shadow of one page table
 * @entries: the table, %HMMGPU_PT_ENTRIES little-endian entries
 * @dma: its DMA (guest physical) address, 4 KiB aligned
 * @child: for the root and the directories, the shadows of the tables
 *	their entries point to (NULL where the entry is not valid); NULL for
 *	a leaf table
 * @valid: for a leaf table, the number of its valid entries
 */
struct hmmgpu_emu_pt {
	__le64 *entries;
	dma_addr_t dma;
	struct hmmgpu_emu_pt **child;
	unsigned int valid;
};

/* The PCI function, which the core device hangs below. */
static struct device *hmmgpu_emu_mmu_dev(struct hmmgpu_device *hdev)
{
	return hdev->dev.parent;
}

/* Index of the entry of a table at @level that translates @va. */
static unsigned int hmmgpu_emu_pt_index(u64 va, unsigned int level)
{
	unsigned int shift = HMMGPU_PT_PAGE_SHIFT + HMMGPU_PT_LEVEL_SHIFT * level;

	return (va >> shift) & (HMMGPU_PT_ENTRIES - 1);
}

/* Start of the range of the entry after the one of @va, at @level. */
static u64 hmmgpu_emu_pt_next(u64 va, unsigned int level)
{
	unsigned int shift = HMMGPU_PT_PAGE_SHIFT + HMMGPU_PT_LEVEL_SHIFT * level;

	return (va | (BIT_ULL(shift) - 1)) + 1;
}

/**
 * hmmgpu_emu_pt_alloc() - allocate an empty table and its shadow
 * @dev: the DMA device
 * @level: the table's level, 0 for a leaf table
 * @gfp: allocation flags
 *
 * Context: process context; sleeps only if @gfp allows.
 * Return: the shadow, or NULL when out of memory.
 */
static struct hmmgpu_emu_pt *hmmgpu_emu_pt_alloc(struct device *dev,
						 unsigned int level, gfp_t gfp)
{
	struct hmmgpu_emu_pt *pt;

	pt = kzalloc(sizeof(*pt), gfp);
	if (!pt)
		return NULL;
	/* Zeroed, and aligned to its size (a page). */
	pt->entries = dma_alloc_coherent(dev, HMMGPU_PT_SIZE, &pt->dma, gfp);
	if (!pt->entries)
		goto err_free;
	/* An entry holds address bits 51..12 only. */
	if (WARN_ON_ONCE(pt->dma & ~HMMGPU_HW_PTE_ADDR))
		goto err_table;
	if (level) {
		pt->child = kcalloc(HMMGPU_PT_ENTRIES, sizeof(*pt->child), gfp);
		if (!pt->child)
			goto err_table;
	}
	return pt;

err_table:
	dma_free_coherent(dev, HMMGPU_PT_SIZE, pt->entries, pt->dma);
err_free:
	kfree(pt);
	return NULL;
}

/**
 * hmmgpu_emu_pt_free() - free a table and every table below it
 * @dev: the DMA device
 * @pt: the table
 * @level: its level; the recursion is at most %HMMGPU_PT_LEVELS deep
 *
 * Context: process context.
 */
static void hmmgpu_emu_pt_free(struct device *dev, struct hmmgpu_emu_pt *pt,
			       unsigned int level)
{
	unsigned int i;

	if (level) {
		for (i = 0; i < HMMGPU_PT_ENTRIES; i++)
			if (pt->child[i])
				hmmgpu_emu_pt_free(dev, pt->child[i], level - 1);
		kfree(pt->child);
	}
	dma_free_coherent(dev, HMMGPU_PT_SIZE, pt->entries, pt->dma);
	kfree(pt);
}

/**
 * hmmgpu_emu_pt_leaf() - find the leaf table of a page, allocating the
 *	missing tables on the way
 * @dev: the DMA device
 * @root: the root table
 * @va: the page, below 2^48
 * @gfp: allocation flags for missing tables: %HMMGPU_EMU_MAP_GFP (no
 *	reclaim, no sleep) under the context's lock, GFP_KERNEL without it
 *
 * Context: process context.
 * Return: the leaf table, or NULL when out of memory (the tables added so
 * far stay, empty).
 */
static struct hmmgpu_emu_pt *hmmgpu_emu_pt_leaf(struct device *dev,
						struct hmmgpu_emu_pt *root,
						u64 va, gfp_t gfp)
{
	struct hmmgpu_emu_pt *pt = root, *child;
	unsigned int level, i;

	for (level = HMMGPU_EMU_ROOT_LEVEL; level > 0; level--) {
		i = hmmgpu_emu_pt_index(va, level);
		child = READ_ONCE(pt->child[i]);
		if (!child) {
			child = hmmgpu_emu_pt_alloc(dev, level - 1, gfp);
			if (!child)
				return NULL;
			dma_wmb();	/* the zeroed table before its entry */
			WRITE_ONCE(pt->entries[i],
				   cpu_to_le64(HMMGPU_HW_PDE_VALID | child->dma));
			/* Published to concurrent unmaps once initialised. */
			smp_store_release(&pt->child[i], child);
		}
		pt = child;
	}
	return pt;
}

/**
 * hmmgpu_emu_pte_encode() - the leaf entry of a mapping
 * @pte: the mapping
 *
 * Return: the entry (never 0: VALID is set), or 0 when @pte cannot be
 * expressed (an unknown aperture, an unaligned or too wide address, a peer
 * index that does not fit). @pte->peer counts only with %HMMGPU_PTE_PEER.
 */
static u64 hmmgpu_emu_pte_encode(const struct hmmgpu_pte *pte)
{
	u64 val = HMMGPU_HW_PTE_VALID;

	if (pte->addr & ~HMMGPU_HW_PTE_ADDR)
		return 0;
	val |= pte->addr;
	if (pte->write)
		val |= HMMGPU_HW_PTE_WRITE;

	switch (pte->aperture) {
	case HMMGPU_PTE_SYSMEM:
		val |= FIELD_PREP(HMMGPU_HW_PTE_APERTURE, HMMGPU_AP_SYSMEM);
		break;
	case HMMGPU_PTE_VRAM:
		val |= FIELD_PREP(HMMGPU_HW_PTE_APERTURE, HMMGPU_AP_VRAM);
		break;
	case HMMGPU_PTE_PEER:
		if (pte->peer > FIELD_MAX(HMMGPU_HW_PTE_PEER))
			return 0;
		val |= FIELD_PREP(HMMGPU_HW_PTE_APERTURE, HMMGPU_AP_PEER) |
		       FIELD_PREP(HMMGPU_HW_PTE_PEER, pte->peer);
		break;
	default:
		return 0;
	}
	return val;
}

/**
 * hmmgpu_emu_pt_fill() - write consecutive leaves of one leaf table
 * @leaf: the leaf table
 * @first: index of the first leaf
 * @ptes: the mappings
 * @n: leaves to write, at most %HMMGPU_PT_ENTRIES - @first
 *
 * A valid leaf may only gain WRITE: one that is to lose it keeps it (only
 * an unmap and an invalidation may take it away), and one that is to point
 * elsewhere is a bug of the caller, as the device may still use its old
 * translation.
 *
 * Return: 0, or -EINVAL for a mapping that cannot be written (the leaves
 * before it are written).
 */
static int hmmgpu_emu_pt_fill(struct hmmgpu_emu_pt *leaf, unsigned int first,
			      const struct hmmgpu_pte *ptes, unsigned int n)
{
	unsigned int i;
	u64 old, val;

	for (i = first; i < first + n; i++, ptes++) {
		val = hmmgpu_emu_pte_encode(ptes);
		if (WARN_ON_ONCE(!val))
			return -EINVAL;
		old = le64_to_cpu(leaf->entries[i]);
		if (old & HMMGPU_HW_PTE_VALID) {
			if (WARN_ON_ONCE((old ^ val) & ~HMMGPU_HW_PTE_WRITE))
				return -EINVAL;
			val |= old;
		} else {
			leaf->valid++;
		}
		WRITE_ONCE(leaf->entries[i], cpu_to_le64(val));
	}
	return 0;
}

/**
 * hmmgpu_emu_pt_clear() - clear the valid leaves of a range of one leaf table
 * @leaf: the leaf table
 * @start: first page
 * @end: end of the range, exclusive, inside @leaf's 2 MiB
 *
 * Return: true when a leaf was valid.
 */
static bool hmmgpu_emu_pt_clear(struct hmmgpu_emu_pt *leaf, u64 start,
				u64 end)
{
	unsigned int i = hmmgpu_emu_pt_index(start, 0);
	unsigned int last = hmmgpu_emu_pt_index(end - 1, 0);
	bool any = false;

	for (; i <= last && leaf->valid; i++) {
		if (!(le64_to_cpu(leaf->entries[i]) & HMMGPU_HW_PTE_VALID))
			continue;
		WRITE_ONCE(leaf->entries[i], 0);
		leaf->valid--;
		any = true;
	}
	return any;
}

/**
 * hmmgpu_emu_pt_unmap() - clear the valid leaves of a range below a table
 * @pt: the table
 * @level: its level; the recursion is at most %HMMGPU_PT_LEVELS deep
 * @start: first page
 * @end: end of the range, exclusive, inside the range @pt translates
 *
 * Visits only the tables that exist, at most %HMMGPU_PT_ENTRIES entries of
 * each.
 *
 * Context: any; does not allocate or sleep.
 * Return: true when a leaf was valid.
 */
static bool hmmgpu_emu_pt_unmap(struct hmmgpu_emu_pt *pt, unsigned int level,
				u64 start, u64 end)
{
	struct hmmgpu_emu_pt *child;
	bool any = false;
	u64 next;

	if (!level)
		return hmmgpu_emu_pt_clear(pt, start, end);
	for (; start < end; start = next) {
		next = min(hmmgpu_emu_pt_next(start, level), end);
		child = READ_ONCE(pt->child[hmmgpu_emu_pt_index(start, level)]);
		if (child && hmmgpu_emu_pt_unmap(child, level - 1, start, next))
			any = true;
	}
	return any;
}

/**
 * hmmgpu_emu_mmu_alloc() - allocate the empty page table of a context
 * @hdev: the device
 * @priv: out, the table's handle for the other hmmgpu_emu_mmu_*() calls
 * @root: out, the root's guest physical address, for OP_CTX_BIND (never 0)
 *
 * Implements &hmmgpu_backend_ops.mmu_alloc.
 *
 * Context: process context, may sleep.
 * Return: 0 or -ENOMEM.
 */
int hmmgpu_emu_mmu_alloc(struct hmmgpu_device *hdev, void **priv, u64 *root)
{
	struct device *dev = hmmgpu_emu_mmu_dev(hdev);
	struct hmmgpu_emu_pt *pt;

	pt = hmmgpu_emu_pt_alloc(dev, HMMGPU_EMU_ROOT_LEVEL, GFP_KERNEL);
	if (!pt)
		return -ENOMEM;
	/* OP_CTX_BIND takes root 0 as an unbind; x86 never hands page 0 out. */
	if (WARN_ON_ONCE(!pt->dma)) {
		hmmgpu_emu_pt_free(dev, pt, HMMGPU_EMU_ROOT_LEVEL);
		return -ENOMEM;
	}
	*priv = pt;
	*root = pt->dma;
	return 0;
}

/**
 * hmmgpu_emu_mmu_free() - free a context's page table
 * @hdev: the device
 * @priv: the table from hmmgpu_emu_mmu_alloc()
 *
 * Implements &hmmgpu_backend_ops.mmu_free. The caller guarantees that the
 * device no longer walks the table: its context is unbound, or the device
 * was reset.
 *
 * Context: process context.
 */
void hmmgpu_emu_mmu_free(struct hmmgpu_device *hdev, void *priv)
{
	hmmgpu_emu_pt_free(hmmgpu_emu_mmu_dev(hdev), priv,
			   HMMGPU_EMU_ROOT_LEVEL);
}

/**
 * hmmgpu_emu_mmu_map() - map pages in a context's page table
 * @hdev: the device
 * @priv: the table from hmmgpu_emu_mmu_alloc()
 * @va: the first page, 4 KiB aligned, below 2^48
 * @ptes: the mappings of the @npages pages from @va
 * @npages: pages; @va + @npages pages must not pass 2^48
 *
 * Implements &hmmgpu_backend_ops.mmu_map: allocates the missing tables
 * without reclaim (%HMMGPU_EMU_MAP_GFP: the context's lock is also taken
 * by MMU notifiers in reclaim) and writes each leaf with one 64-bit store.
 * A page may only go from unmapped to mapped or gain write permission,
 * changes that need no TLB invalidation (SPEC 4.6).
 *
 * Context: process context; does not sleep; the context's lock held (the
 * core serialises the calls on one table, this function takes no lock).
 * Return: 0; -ENOMEM when a table could not be allocated, -EINVAL for an
 * invalid @va range or mapping (a bug of the caller, warned about); the
 * pages mapped before the failure stay mapped.
 */
int hmmgpu_emu_mmu_map(struct hmmgpu_device *hdev, void *priv, u64 va,
		       const struct hmmgpu_pte *ptes, unsigned int npages)
{
	struct device *dev = hmmgpu_emu_mmu_dev(hdev);
	struct hmmgpu_emu_pt *leaf;
	unsigned int first, n;
	int ret;

	if (WARN_ON_ONCE(!IS_ALIGNED(va, HMMGPU_PT_SIZE) ||
			 va >= HMMGPU_EMU_VA_LIMIT ||
			 npages > (HMMGPU_EMU_VA_LIMIT - va) >> HMMGPU_PT_PAGE_SHIFT))
		return -EINVAL;

	while (npages) {
		leaf = hmmgpu_emu_pt_leaf(dev, priv, va, HMMGPU_EMU_MAP_GFP);
		if (!leaf)
			return -ENOMEM;
		first = hmmgpu_emu_pt_index(va, 0);
		n = min(npages, HMMGPU_PT_ENTRIES - first);
		ret = hmmgpu_emu_pt_fill(leaf, first, ptes, n);
		if (ret)
			return ret;
		va += (u64)n << HMMGPU_PT_PAGE_SHIFT;
		ptes += n;
		npages -= n;
	}
	return 0;
}

/**
 * hmmgpu_emu_mmu_prepare() - add the tables a range of pages needs
 * @hdev: the device
 * @priv: the table from hmmgpu_emu_mmu_alloc()
 * @va: the first page, 4 KiB aligned
 * @npages: pages; @va + @npages pages must not pass 2^48
 *
 * Implements &hmmgpu_backend_ops.mmu_prepare: allocates, with reclaim, the
 * directories and leaf tables that a later hmmgpu_emu_mmu_map() of the
 * range would otherwise have to allocate without. New tables are published
 * with release semantics, so a concurrent hmmgpu_emu_mmu_unmap() (which
 * only reads the shadows' child pointers) sees them initialised.
 *
 * Context: process context, sleeps; not under the context's lock, but
 * serialised by the core with hmmgpu_emu_mmu_map() of the same table.
 * Return: 0, -ENOMEM, or -EINVAL for an invalid range.
 */
int hmmgpu_emu_mmu_prepare(struct hmmgpu_device *hdev, void *priv, u64 va,
			   unsigned int npages)
{
	struct device *dev = hmmgpu_emu_mmu_dev(hdev);
	u64 end;

	if (WARN_ON_ONCE(!IS_ALIGNED(va, HMMGPU_PT_SIZE) ||
			 va >= HMMGPU_EMU_VA_LIMIT ||
			 npages > (HMMGPU_EMU_VA_LIMIT - va) >> HMMGPU_PT_PAGE_SHIFT))
		return -EINVAL;
	end = va + ((u64)npages << HMMGPU_PT_PAGE_SHIFT);
	for (; va < end; va = hmmgpu_emu_pt_next(va, 1))
		if (!hmmgpu_emu_pt_leaf(dev, priv, va, GFP_KERNEL))
			return -ENOMEM;
	return 0;
}

/**
 * hmmgpu_emu_mmu_query() - the mapping of one page in a context's table
 * @hdev: the device
 * @priv: the table from hmmgpu_emu_mmu_alloc()
 * @va: the page
 * @pte: out, its mapping, when it has one
 *
 * Implements &hmmgpu_backend_ops.mmu_query.
 *
 * Context: any; the context's lock held.
 * Return: true when @va is mapped.
 */
bool hmmgpu_emu_mmu_query(struct hmmgpu_device *hdev, void *priv, u64 va,
			  struct hmmgpu_pte *pte)
{
	struct hmmgpu_emu_pt *pt = priv;
	unsigned int level;
	u64 val;

	if (va >= HMMGPU_EMU_VA_LIMIT)
		return false;
	for (level = HMMGPU_EMU_ROOT_LEVEL; level > 0 && pt; level--)
		pt = READ_ONCE(pt->child[hmmgpu_emu_pt_index(va, level)]);
	if (!pt)
		return false;
	val = le64_to_cpu(READ_ONCE(pt->entries[hmmgpu_emu_pt_index(va, 0)]));
	if (!(val & HMMGPU_HW_PTE_VALID))
		return false;
	memset(pte, 0, sizeof(*pte));
	pte->write = val & HMMGPU_HW_PTE_WRITE;
	pte->addr = val & HMMGPU_HW_PTE_ADDR;
	switch (FIELD_GET(HMMGPU_HW_PTE_APERTURE, val)) {
	case HMMGPU_AP_VRAM:
		pte->aperture = HMMGPU_PTE_VRAM;
		break;
	case HMMGPU_AP_PEER:
		pte->aperture = HMMGPU_PTE_PEER;
		pte->peer = FIELD_GET(HMMGPU_HW_PTE_PEER, val);
		break;
	default:
		pte->aperture = HMMGPU_PTE_SYSMEM;
		break;
	}
	return true;
}

/**
 * hmmgpu_emu_mmu_unmap() - unmap a range in a context's page table
 * @hdev: the device
 * @priv: the table from hmmgpu_emu_mmu_alloc()
 * @start: start of the range
 * @end: end of the range, exclusive
 *
 * Implements &hmmgpu_backend_ops.mmu_unmap: clears every valid leaf of the
 * pages [@start, @end) touches with one 64-bit store of 0. The part of the
 * range at or above 2^48, which no context can map, is ignored, so the
 * whole of a process's address space may be passed. Tables are kept (see
 * DOC: Device page tables). Until a TLB invalidation of the range has
 * completed the device may still use the old translations.
 *
 * Context: any, also an MMU notifier in reclaim: neither allocates nor
 * sleeps, takes no lock; the context's lock held (the core serialises the
 * calls on one table).
 * Return: true when a page of the range was mapped.
 */
bool hmmgpu_emu_mmu_unmap(struct hmmgpu_device *hdev, void *priv, u64 start,
			  u64 end)
{
	end = min(end, HMMGPU_EMU_VA_LIMIT);
	if (start >= end)
		return false;
	start = ALIGN_DOWN(start, HMMGPU_PT_SIZE);
	end = ALIGN(end, HMMGPU_PT_SIZE);
	return hmmgpu_emu_pt_unmap(priv, HMMGPU_EMU_ROOT_LEVEL, start, end);
}
