/* inode.c - the kernel's node ids, each a name in its parent (inode.h):
 * an array of nodes reused through a free list, and a hash of
 * (parent, name) chained through the nodes, as libfuse's own table does
 * for its high-level API, with a node of 48 bytes and its name. A node
 * may stand for the node id of a catalog row (fs/rowino.h), an alias,
 * while a file is open on it or after its name moved: found by that id
 * through a second hash. */
#include "fs/inode.h"

#include "fs/rowino.h"

#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct fs_node {
	uint64_t nlookup;
	uint32_t parent; /* index + 1 of the parent; 0: no name */
	uint32_t next;	 /* hash chain, or free list: index + 1, 0 none */
	uint32_t open;
	uint32_t gen;
	char *name;
	uint64_t row;	/* the row's node id it stands for (an alias), or 0 */
	uint32_t anext; /* the aliases' hash chain: index + 1, 0 none */
	bool moved;	/* an alias whose name moved: kept till forgotten */
};

/* The nodes live in blocks of BLOCK, each allocated when a node is first
 * needed in it and freed when its last node is: so the memory a walk
 * took goes back when the kernel forgets (fs_inodes's comment). */
#define BLOCK_BITS 14
#define BLOCK	   (1u << BLOCK_BITS)
#define MAX_BLOCKS (1u << (32 - BLOCK_BITS))

struct fs_block {
	struct fs_node *v; /* NULL: not allocated */
	uint32_t live;	   /* nodes in use in it */
	uint32_t fresh;	   /* slots handed out at least once */
	uint32_t free;	   /* index + 1 of the first freed slot, 0 none */
};

/* the aliases' hash: as many as files open at once and moved names */
#define ALIAS_BUCKETS 4096

/* node id <-> index: the root is node id 1 (FUSE_ROOT_ID) at index 0 */
#define ID(i) ((uint64_t)(i) + 1)

static struct fs_node *NODE(struct fs_inodes *t, uint32_t i)
{
	return &t->b[(i - 1) >> BLOCK_BITS].v[(i - 1) & (BLOCK - 1)];
}

/* The node ino, or NULL if there is none. */
static struct fs_node *AT(struct fs_inodes *t, uint64_t ino)
{
	if (ino < 1 || ino > (uint64_t)t->nb * BLOCK)
		return NULL;
	struct fs_block *b = &t->b[(ino - 1) >> BLOCK_BITS];
	struct fs_node *n = b->v ? &b->v[(ino - 1) & (BLOCK - 1)] : NULL;
	return n && n->gen ? n : NULL; /* (gen 0: a free node) */
}

static uint32_t *alias_chain(struct fs_inodes *t, uint64_t row)
{
	return &t->abucket[(row ^ (row >> 29)) & (ALIAS_BUCKETS - 1)];
}

/* index + 1 of the alias of row, or 0 */
static uint32_t alias_of(struct fs_inodes *t, uint64_t row)
{
	uint32_t i = *alias_chain(t, row);
	while (i && NODE(t, i)->row != row)
		i = NODE(t, i)->anext;
	return i;
}

/* index + 1 of the node the kernel's id ino names, or 0 */
static uint32_t resolve(struct fs_inodes *t, uint64_t ino)
{
	if (ino & FS_ROWINO_BIT)
		return alias_of(t, ino);
	return AT(t, ino) ? (uint32_t)ino : 0;
}

static uint32_t hash(uint32_t parent, const char *name)
{
	uint32_t h = 2166136261u ^ parent;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 16777619u;
	return h;
}

/* index + 1 of a node taken from the lowest block with room, or 0 */
static uint32_t take(struct fs_inodes *t)
{
	uint32_t k = t->low;
	for (; k < t->nb; k++)
		if (t->b[k].live < BLOCK)
			break;
	if (k == t->nb) {
		if (t->nb == MAX_BLOCKS)
			return 0;
		uint32_t nb = t->nb ? t->nb * 2 : 4;
		nb = nb > MAX_BLOCKS ? MAX_BLOCKS : nb;
		struct fs_block *b = realloc(t->b, nb * sizeof(*b));
		if (!b)
			return 0;
		memset(b + t->nb, 0, (nb - t->nb) * sizeof(*b));
		t->b = b;
		t->nb = nb;
	}
	struct fs_block *b = &t->b[k];
	if (!b->v && !(b->v = calloc(BLOCK, sizeof(*b->v))))
		return 0;
	t->low = k;
	uint32_t i;
	if (b->free) {
		i = b->free;
		b->free = NODE(t, i)->next;
	} else {
		i = k * BLOCK + b->fresh++ + 1;
	}
	b->live++;
	return i;
}

/* node i back to its block; the block freed with its last node */
static void give_back(struct fs_inodes *t, uint32_t i)
{
	uint32_t k = (i - 1) >> BLOCK_BITS;
	struct fs_block *b = &t->b[k];
	NODE(t, i)->gen = 0;
	NODE(t, i)->next = b->free;
	b->free = i;
	if (--b->live == 0 && k > 0) {
		free(b->v);
		*b = (struct fs_block){0};
		/* a walk's forgets free blocks by the hundred: what they
		 * held goes back to the system a few blocks at a time */
		if (++t->freed_blocks >= 8) {
			t->freed_blocks = 0;
			malloc_trim(0);
		}
	}
	if (k < t->low)
		t->low = k;
}

int fs_inodes_init(struct fs_inodes *t)
{
	memset(t, 0, sizeof(*t));
	t->nbuckets = 1024;
	t->bucket = calloc(t->nbuckets, sizeof(*t->bucket));
	t->abucket = calloc(ALIAS_BUCKETS, sizeof(*t->abucket));
	if (!t->bucket || !t->abucket || take(t) != 1) {
		free(t->bucket);
		free(t->abucket);
		free(t->b ? t->b[0].v : NULL);
		free(t->b);
		return -ENOMEM;
	}
	t->live = 1;
	NODE(t, 1)->nlookup = 1; /* the root is never forgotten */
	NODE(t, 1)->gen = ++t->gen;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void fs_inodes_free(struct fs_inodes *t)
{
	for (uint32_t k = 0; k < t->nb; k++) {
		for (uint32_t j = 0; t->b[k].v && j < t->b[k].fresh; j++)
			free(t->b[k].v[j].name);
		free(t->b[k].v);
	}
	free(t->b);
	free(t->bucket);
	free(t->abucket);
	pthread_mutex_destroy(&t->lock);
}

static uint32_t *chain_of(struct fs_inodes *t, uint32_t parent,
			  const char *name)
{
	return &t->bucket[hash(parent, name) & (t->nbuckets - 1)];
}

/* index + 1 of name in parent (parent an index + 1), or 0 */
static uint32_t find(struct fs_inodes *t, uint32_t parent, const char *name)
{
	for (uint32_t i = *chain_of(t, parent, name); i; i = NODE(t, i)->next)
		if (NODE(t, i)->parent == parent &&
		    !strcmp(NODE(t, i)->name, name))
			return i;
	return 0;
}

/* find(), parent a node id that may be gone */
static uint32_t find_in(struct fs_inodes *t, uint64_t parent, const char *name)
{
	return AT(t, parent) ? find(t, (uint32_t)parent, name) : 0;
}

static void unhash(struct fs_inodes *t, uint32_t i)
{
	struct fs_node *n = NODE(t, i);
	uint32_t *p = chain_of(t, n->parent, n->name);
	while (*p && *p != i)
		p = &NODE(t, *p)->next;
	if (*p)
		*p = n->next;
	n->next = 0;
	n->parent = 0;
	free(n->name);
	n->name = NULL;
}

static void rehash(struct fs_inodes *t, uint32_t i)
{
	struct fs_node *n = NODE(t, i);
	uint32_t *p = chain_of(t, n->parent, n->name);
	n->next = *p;
	*p = i;
}

/* twice the buckets when the nodes outnumber them (best effort) */
static void grow_buckets(struct fs_inodes *t)
{
	if (t->live <= t->nbuckets || t->nbuckets >= (1u << 30))
		return;
	uint32_t *b = calloc((size_t)t->nbuckets * 2, sizeof(*b));
	if (!b)
		return;
	free(t->bucket);
	t->bucket = b;
	t->nbuckets *= 2;
	for (uint32_t k = 0; k < t->nb; k++)
		for (uint32_t j = 0; t->b[k].v && j < t->b[k].fresh; j++)
			if (t->b[k].v[j].parent)
				rehash(t, k * BLOCK + j + 1);
}

/* a node drops when the kernel has forgotten it and nothing is open */
static void maybe_drop(struct fs_inodes *t, uint32_t i)
{
	struct fs_node *n = NODE(t, i);
	if (i == 1 || n->nlookup || n->open || n->row)
		return;
	if (n->parent)
		unhash(t, i);
	t->live--;
	give_back(t, i);
}

/* index + 1 of a new node for name in parent (an index + 1), or 0 */
static uint32_t make_node(struct fs_inodes *t, uint32_t parent,
			  const char *name)
{
	uint32_t i;
	char *copy = strdup(name);
	if (!copy || !(i = take(t))) {
		free(copy);
		return 0;
	}
	*NODE(t, i) = (struct fs_node){.parent = parent,
				       .gen = ++t->gen ? t->gen : ++t->gen,
				       .name = copy};
	rehash(t, i);
	t->live++;
	grow_buckets(t);
	return i;
}

/* whether a node may be made below parent: it has a name still */
static bool usable_parent(struct fs_inodes *t, uint64_t parent)
{
	struct fs_node *p = AT(t, parent);
	return p && (parent == 1 || p->parent || p->nlookup);
}

uint64_t fs_inode_ref(struct fs_inodes *t, uint64_t parent, const char *name,
		      uint64_t row, uint64_t *gen)
{
	uint64_t ino = 0;
	pthread_mutex_lock(&t->lock);
	if (!usable_parent(t, parent))
		goto out;
	uint32_t i = find(t, (uint32_t)parent, name);
	if (i && NODE(t, i)->row) { /* an alias: its row's id */
		ino = NODE(t, i)->row;
		if (gen)
			*gen = 0;
		goto out;
	}
	if (!i && row) { /* a row's: nothing kept */
		ino = row;
		if (gen)
			*gen = 0;
		goto out;
	}
	if (!i && !(i = make_node(t, (uint32_t)parent, name)))
		goto out;
	NODE(t, i)->nlookup++;
	if (gen)
		*gen = NODE(t, i)->gen;
	ino = ID(i - 1);
out:
	pthread_mutex_unlock(&t->lock);
	return ino;
}

uint64_t fs_inode_find(struct fs_inodes *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	uint32_t i = find_in(t, parent, name);
	uint64_t ino = i && NODE(t, i)->row ? NODE(t, i)->row : i;
	pthread_mutex_unlock(&t->lock);
	return ino;
}

/* the alias of row, node i, goes */
static void unalias(struct fs_inodes *t, uint32_t i)
{
	struct fs_node *n = NODE(t, i);
	uint32_t *p = alias_chain(t, n->row);
	while (*p && *p != i)
		p = &NODE(t, *p)->anext;
	if (*p)
		*p = n->anext;
	n->anext = 0;
	n->row = 0;
	n->moved = false;
	maybe_drop(t, i);
}

void fs_inode_forget(struct fs_inodes *t, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	t->forgets++;
	if (ino & FS_ROWINO_BIT) {
		/* the kernel forgets a node once, when it drops it: no file
		 * is open on it then */
		uint32_t i = alias_of(t, ino);
		if (i && !NODE(t, i)->open)
			unalias(t, i);
		pthread_mutex_unlock(&t->lock);
		return;
	}
	struct fs_node *node = AT(t, ino);
	if (node && ino != 1) {
		node->nlookup = n < node->nlookup ? node->nlookup - n : 0;
		maybe_drop(t, (uint32_t)ino);
	}
	pthread_mutex_unlock(&t->lock);
}

int fs_inode_path(struct fs_inodes *t, uint64_t ino, const char *name,
		  char *buf, size_t size)
{
	/* built from the end of buf backwards, then moved to its start */
	size_t at = size;
	int ret = 0;
	if (size < 2)
		return -ENAMETOOLONG;
	buf[--at] = '\0';
	pthread_mutex_lock(&t->lock);
	const char *part = name;
	uint32_t i = resolve(t, ino);
	if (!i) {
		ret = (ino & FS_ROWINO_BIT) ? 1 : -ESTALE;
		goto out;
	}
	for (;;) {
		if (part) {
			size_t len = strlen(part);
			if (len + 1 > at) {
				ret = -ENAMETOOLONG;
				goto out;
			}
			at -= len;
			memcpy(buf + at, part, len);
			buf[--at] = '/';
		}
		if (i == 1)
			break;
		struct fs_node *n = NODE(t, i);
		if (!n->parent) {
			ret = -ESTALE;
			goto out;
		}
		part = n->name;
		i = n->parent;
	}
	if (at == size - 1) /* the root itself */
		buf[--at] = '/';
	memmove(buf, buf + at, size - at);
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

uint32_t fs_inode_open(struct fs_inodes *t, uint64_t ino, int delta)
{
	uint32_t open = 0;
	pthread_mutex_lock(&t->lock);
	uint32_t i = resolve(t, ino);
	struct fs_node *n = i ? NODE(t, i) : NULL;
	if (n) {
		if (delta > 0)
			n->open++;
		else if (delta < 0 && n->open)
			n->open--;
		open = n->open;
		/* an alias whose name stayed is not needed once closed: the
		 * row names the same file */
		if (!open && delta < 0 && n->row && !n->moved)
			unalias(t, i);
		else if (!open)
			maybe_drop(t, i);
	}
	pthread_mutex_unlock(&t->lock);
	return open;
}

uint64_t fs_inode_parent(struct fs_inodes *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	uint32_t i = resolve(t, ino);
	uint64_t parent = i ? NODE(t, i)->parent : 0;
	pthread_mutex_unlock(&t->lock);
	return parent;
}

uint32_t fs_inode_opened(struct fs_inodes *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	uint32_t i = find_in(t, parent, name);
	uint32_t open = i ? NODE(t, i)->open : 0;
	pthread_mutex_unlock(&t->lock);
	return open;
}

int fs_inode_move(struct fs_inodes *t, uint64_t parent, const char *name,
		  uint64_t newparent, const char *newname)
{
	int ret = 0;
	pthread_mutex_lock(&t->lock);
	if (!AT(t, parent) || !AT(t, newparent))
		goto out;
	uint32_t to = find(t, (uint32_t)newparent, newname);
	uint32_t from = find(t, (uint32_t)parent, name);
	if (to && to != from)
		unhash(t, to); /* replaced: kept, nameless, till forgotten */
	if (from && to != from) {
		char *copy = strdup(newname);
		if (!copy) {
			unhash(t, from); /* looked up anew */
			ret = -ENOMEM;
			goto out;
		}
		unhash(t, from);
		NODE(t, from)->parent = (uint32_t)newparent;
		NODE(t, from)->name = copy;
		NODE(t, from)->moved = NODE(t, from)->row != 0;
		rehash(t, from);
	}
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void fs_inode_unlink(struct fs_inodes *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	uint32_t i = find_in(t, parent, name);
	if (i)
		unhash(t, i);
	pthread_mutex_unlock(&t->lock);
}

uint32_t fs_inodes_count(struct fs_inodes *t)
{
	pthread_mutex_lock(&t->lock);
	uint32_t n = t->live;
	pthread_mutex_unlock(&t->lock);
	return n;
}

uint64_t fs_inode_alias(struct fs_inodes *t, uint64_t row, uint64_t parent,
			const char *name, bool moved)
{
	uint64_t ino = 0;
	pthread_mutex_lock(&t->lock);
	uint32_t i = alias_of(t, row);
	if (i) {
		ino = ID(i - 1);
		goto out;
	}
	if (!usable_parent(t, parent))
		goto out;
	i = find(t, (uint32_t)parent, name);
	if (i && NODE(t, i)->row)
		goto out; /* the name stands for another row still */
	if (!i && !(i = make_node(t, (uint32_t)parent, name)))
		goto out;
	struct fs_node *n = NODE(t, i);
	n->row = row;
	n->moved = moved;
	uint32_t *c = alias_chain(t, row);
	n->anext = *c;
	*c = i;
	ino = ID(i - 1);
out:
	pthread_mutex_unlock(&t->lock);
	return ino;
}

uint64_t fs_inodes_forgets(struct fs_inodes *t)
{
	pthread_mutex_lock(&t->lock);
	uint64_t n = t->forgets;
	pthread_mutex_unlock(&t->lock);
	return n;
}
