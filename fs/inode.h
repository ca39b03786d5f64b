/*
 * inode.h - the mount's inodes, as the kernel knows them (inode.c): each
 * node id a name in its parent folder, kept while the kernel holds it
 * (lookups it has not forgotten) or a file is open on it, and freed when
 * neither; a path is built from the names up to the root. Nothing else
 * is kept per node: what a name is, the catalog and the spool say.
 *
 * Thread-safe: one lock, held only inside these calls.
 */
#ifndef FS_INODE_H
#define FS_INODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fs_node;
struct fs_block;

struct fs_inodes {
	pthread_mutex_t lock;
	struct fs_block *b;    /* the nodes, by blocks; the root is node 1 */
	uint32_t nb;	       /* blocks there is room for */
	uint32_t low;	       /* no block below it has a free node */
	uint32_t *bucket;      /* by (parent, name): index + 1, 0: none */
	uint32_t *abucket;     /* aliases, by the row's id: index + 1 */
	uint32_t nbuckets;     /* a power of two */
	uint32_t live;	       /* nodes in use, the root too */
	uint32_t freed_blocks; /* since memory was last given back */
	uint32_t gen;	       /* the last generation given */
	uint64_t forgets;      /* nodes the kernel forgot, rows' too */
};

int fs_inodes_init(struct fs_inodes *t);
void fs_inodes_free(struct fs_inodes *t);

/* The node of name in parent, made if it has none, its lookups counted
 * up by one; its generation in *gen. 0: out of memory, or parent gone.
 * With row (the node id of the catalog row name is, fs/rowino.h; 0 when
 * it is none), a name with no node gets row, and nothing is kept; and a
 * name whose node stands for a row (fs_inode_alias) gets that row's id. */
uint64_t fs_inode_ref(struct fs_inodes *t, uint64_t parent, const char *name,
		      uint64_t row, uint64_t *gen);

/* The node name in parent stands for row while a file is open on it
 * (fs_inode_open counts on row) or after it moved (moved, or a later
 * fs_inode_move): kept till the kernel forgets row, or till its last
 * close if it did not move. Its own node id, or 0 (out of memory, parent
 * gone, or the name stands for another row still). */
uint64_t fs_inode_alias(struct fs_inodes *t, uint64_t row, uint64_t parent,
			const char *name, bool moved);

/* The node id of name in parent as the kernel knows it (a row's for an
 * alias), or 0 (the kernel has none). */
uint64_t fs_inode_find(struct fs_inodes *t, uint64_t parent, const char *name);

/* The kernel forgets n lookups of ino. */
void fs_inode_forget(struct fs_inodes *t, uint64_t ino, uint64_t n);

/* ino's path from the mount's root ("/", "/patients/P1"), with "/name"
 * after it when name is not NULL: 0, -ESTALE (ino has no name: unlinked
 * or unknown), -ENAMETOOLONG, or 1: a row's id with no alias (the
 * catalog has its path). */
int fs_inode_path(struct fs_inodes *t, uint64_t ino, const char *name,
		  char *buf, size_t size);

/* Files open on ino: counted up (delta 1) or down (-1), or not (0); the
 * count after. */
uint32_t fs_inode_open(struct fs_inodes *t, uint64_t ino, int delta);
/* ino's parent, 0 when it has no name. */
uint64_t fs_inode_parent(struct fs_inodes *t, uint64_t ino);
/* Files open on the node of name in parent (0 when it has none). */
uint32_t fs_inode_opened(struct fs_inodes *t, uint64_t parent,
			 const char *name);

/* name in parent is now newname in newparent: a node the new name had
 * loses it (it was replaced). 0 or -ENOMEM. */
int fs_inode_move(struct fs_inodes *t, uint64_t parent, const char *name,
		  uint64_t newparent, const char *newname);

/* name in parent is gone: its node, if any, has no name any more. */
void fs_inode_unlink(struct fs_inodes *t, uint64_t parent, const char *name);

/* Nodes kept, the root too; the kernel's forgets so far. */
uint32_t fs_inodes_count(struct fs_inodes *t);
uint64_t fs_inodes_forgets(struct fs_inodes *t);

#endif
