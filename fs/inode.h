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
	uint32_t nbuckets;     /* a power of two */
	uint32_t live;	       /* nodes in use, the root too */
	uint32_t freed_blocks; /* since memory was last given back */
	uint32_t gen;	       /* the last generation given */
};

int fs_inodes_init(struct fs_inodes *t);
void fs_inodes_free(struct fs_inodes *t);

/* The node of name in parent, made if it has none, its lookups counted
 * up by one; its generation in *gen. 0: out of memory, or parent gone. */
uint64_t fs_inode_ref(struct fs_inodes *t, uint64_t parent, const char *name,
		      uint64_t *gen);

/* The node of name in parent, or 0 (the kernel has none). */
uint64_t fs_inode_find(struct fs_inodes *t, uint64_t parent, const char *name);

/* The kernel forgets n lookups of ino. */
void fs_inode_forget(struct fs_inodes *t, uint64_t ino, uint64_t n);

/* ino's path from the mount's root ("/", "/patients/P1"), with "/name"
 * after it when name is not NULL: 0, -ESTALE (ino has no name: unlinked
 * or unknown) or -ENAMETOOLONG. */
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

/* Nodes kept, the root too. */
uint32_t fs_inodes_count(struct fs_inodes *t);

#endif
