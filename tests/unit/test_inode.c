/* test_inode.c - the inode table: names looked up, forgotten, renamed and
 * unlinked; paths built; blocks freed when their last node goes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs/inode.h"
#include "fs/rowino.h"
#include "tests/unit/check.h"

static const char *path_of(struct fs_inodes *t, uint64_t ino, const char *name)
{
	static char buf[4096];
	int ret = fs_inode_path(t, ino, name, buf, sizeof(buf));
	if (ret)
		snprintf(buf, sizeof(buf), "error %d", ret);
	return buf;
}

/* A catalog row's node ids (fs/rowino.h): nothing kept for them until a
 * file is open on one or its name moves (an alias), and the alias gone
 * at its last close (name unmoved) or when the kernel forgets the row. */
static void check_rows(struct fs_inodes *t, uint64_t d)
{
	const uint64_t row = FS_ROWINO_BIT | 42, row2 = FS_ROWINO_BIT | 43;
	uint32_t n = fs_inodes_count(t);
	char buf[64];
	uint64_t gen = 7;
	/* looked up: the row's id given, no node kept */
	CHECK(fs_inode_ref(t, d, "row.jpg", row, &gen) == row && gen == 0);
	CHECK_INT((int)fs_inodes_count(t), (int)n);
	CHECK_INT(fs_inode_path(t, row, NULL, buf, sizeof(buf)), 1);
	CHECK_INT((int)fs_inode_open(t, row, 1), 0); /* (no alias: no count) */
	fs_inode_forget(t, row, 1);
	/* opened: an alias, found by the row's id and by name */
	uint64_t a = fs_inode_alias(t, row, d, "row.jpg", false);
	CHECK(a != 0 && !(a & FS_ROWINO_BIT));
	CHECK_INT((int)fs_inodes_count(t), (int)n + 1);
	CHECK(fs_inode_alias(t, row, d, "row.jpg", false) == a);
	CHECK(fs_inode_alias(t, row2, d, "row.jpg", false) == 0);
	CHECK(fs_inode_find(t, d, "row.jpg") == row);
	CHECK(fs_inode_ref(t, d, "row.jpg", 0, NULL) == row);
	CHECK_INT((int)fs_inode_open(t, row, 1), 1);
	CHECK(fs_inode_parent(t, row) == d);
	CHECK(
	    !strcmp(path_of(t, row, NULL), "/patients/P2/2025-11-11/row.jpg"));
	CHECK_INT((int)fs_inode_opened(t, d, "row.jpg"), 1);
	/* its last close, the name unmoved: the alias goes */
	CHECK_INT((int)fs_inode_open(t, row, -1), 0);
	CHECK_INT((int)fs_inodes_count(t), (int)n);
	CHECK(fs_inode_find(t, d, "row.jpg") == 0);
	/* open, then renamed: kept past the last close until forgotten */
	CHECK(fs_inode_alias(t, row, d, "row.jpg", false) != 0);
	CHECK_INT((int)fs_inode_open(t, row, 1), 1);
	CHECK_INT(fs_inode_move(t, d, "row.jpg", d, "moved.jpg"), 0);
	CHECK_INT((int)fs_inode_open(t, row, -1), 0);
	CHECK(!strcmp(path_of(t, row, NULL),
		      "/patients/P2/2025-11-11/moved.jpg"));
	CHECK(fs_inode_ref(t, d, "moved.jpg", row2, NULL) == row);
	fs_inode_forget(t, row, 3);
	CHECK_INT((int)fs_inodes_count(t), (int)n);
	CHECK_INT(fs_inode_path(t, row, NULL, buf, sizeof(buf)), 1);
	CHECK(fs_inode_ref(t, d, "moved.jpg", row2, NULL) == row2);
	/* moved by a rename of a name with no node: kept till forgotten */
	CHECK(fs_inode_alias(t, row2, d, "new.jpg", true) != 0);
	CHECK_INT((int)fs_inode_open(t, row2, 1), 1);
	CHECK_INT((int)fs_inode_open(t, row2, -1), 0);
	CHECK(
	    !strcmp(path_of(t, row2, NULL), "/patients/P2/2025-11-11/new.jpg"));
	fs_inode_forget(t, row2, 1);
	CHECK_INT((int)fs_inodes_count(t), (int)n);
	/* a table node the kernel holds may stand for a row too */
	uint64_t own = fs_inode_ref(t, d, "own.jpg", 0, NULL);
	CHECK(fs_inode_alias(t, row, d, "own.jpg", false) == own);
	CHECK_INT((int)fs_inode_open(t, row, 1), 1);
	CHECK_INT((int)fs_inode_open(t, row, -1), 0);
	CHECK(fs_inode_find(t, d, "own.jpg") == own);
	fs_inode_forget(t, own, 1);
	CHECK_INT((int)fs_inodes_count(t), (int)n);
}

int main(void)
{
	struct fs_inodes t;
	uint64_t gen = 0, gen2 = 0;
	CHECK_INT(fs_inodes_init(&t), 0);
	CHECK(!strcmp(path_of(&t, 1, NULL), "/"));
	CHECK(!strcmp(path_of(&t, 1, "patients"), "/patients"));
	uint64_t pat = fs_inode_ref(&t, 1, "patients", 0, &gen);
	uint64_t p1 = fs_inode_ref(&t, pat, "P1", 0, NULL);
	uint64_t d = fs_inode_ref(&t, p1, "2025-11-10", 0, NULL);
	uint64_t f = fs_inode_ref(&t, d, "a.jpg", 0, &gen);
	CHECK(pat > 1 && p1 != pat && d != p1 && f != d && gen > 0);
	CHECK(!strcmp(path_of(&t, f, NULL), "/patients/P1/2025-11-10/a.jpg"));
	CHECK(
	    !strcmp(path_of(&t, d, "b.jpg"), "/patients/P1/2025-11-10/b.jpg"));
	/* looked up again: the same node, counted twice */
	CHECK_INT((int)fs_inode_ref(&t, d, "a.jpg", 0, NULL), (int)f);
	CHECK_INT((int)fs_inode_find(&t, d, "a.jpg"), (int)f);
	CHECK_INT((int)fs_inodes_count(&t), 5);
	fs_inode_forget(&t, f, 1);
	CHECK_INT((int)fs_inode_find(&t, d, "a.jpg"), (int)f);
	/* open: kept past the kernel's last forget until closed */
	CHECK_INT((int)fs_inode_open(&t, f, 1), 1);
	fs_inode_forget(&t, f, 1);
	CHECK_INT((int)fs_inode_find(&t, d, "a.jpg"), (int)f);
	CHECK_INT((int)fs_inode_open(&t, f, -1), 0);
	CHECK_INT((int)fs_inode_find(&t, d, "a.jpg"), 0);
	CHECK_INT((int)fs_inodes_count(&t), 4);
	CHECK_INT(fs_inode_path(&t, f, NULL, (char[64]){0}, 64), -ESTALE);
	/* a slot reused has a new generation */
	uint64_t g = fs_inode_ref(&t, d, "g.jpg", 0, &gen2);
	CHECK(g == f && gen2 != gen);
	/* a rename moves the node (its id stays); the name replaced is
	 * left nameless until forgotten */
	uint64_t r = fs_inode_ref(&t, d, "r.jpg", 0, NULL);
	CHECK_INT(fs_inode_move(&t, d, "g.jpg", d, "r.jpg"), 0);
	CHECK(!strcmp(path_of(&t, g, NULL), "/patients/P1/2025-11-10/r.jpg"));
	CHECK_INT(fs_inode_path(&t, r, NULL, (char[64]){0}, 64), -ESTALE);
	CHECK_INT((int)fs_inode_find(&t, d, "r.jpg"), (int)g);
	CHECK_INT((int)fs_inode_find(&t, d, "g.jpg"), 0);
	/* a folder renamed: what is below it follows */
	uint64_t p2 = fs_inode_ref(&t, pat, "P2", 0, NULL);
	CHECK_INT(fs_inode_move(&t, p1, "2025-11-10", p2, "2025-11-11"), 0);
	CHECK(!strcmp(path_of(&t, g, NULL), "/patients/P2/2025-11-11/r.jpg"));
	fs_inode_unlink(&t, d, "r.jpg");
	CHECK_INT((int)fs_inode_find(&t, d, "r.jpg"), 0);
	CHECK_INT(fs_inode_path(&t, g, NULL, (char[64]){0}, 64), -ESTALE);
	/* too long for the buffer */
	CHECK_INT(fs_inode_path(&t, d, "x", (char[8]){0}, 8), -ENAMETOOLONG);
	/* a walk of 100000 names, then forgotten: the table grows, its
	 * hash with it, and goes back to what it was */
	uint32_t before = fs_inodes_count(&t);
	static uint64_t ids[100000];
	char name[32];
	for (int i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "IMG_%d.jpg", i);
		ids[i] = fs_inode_ref(&t, d, name, 0, NULL);
		CHECK(ids[i] != 0);
	}
	CHECK_INT((int)fs_inodes_count(&t), (int)before + 100000);
	CHECK_INT((int)fs_inode_find(&t, d, "IMG_77777.jpg"), (int)ids[77777]);
	CHECK(!strcmp(path_of(&t, ids[5], NULL),
		      "/patients/P2/2025-11-11/IMG_5.jpg"));
	for (int i = 0; i < 100000; i++)
		fs_inode_forget(&t, ids[i], 1);
	CHECK_INT((int)fs_inodes_count(&t), (int)before);
	CHECK_INT((int)fs_inode_find(&t, d, "IMG_77777.jpg"), 0);
	/* the low ids are taken again first (the first block's) */
	uint64_t again = fs_inode_ref(&t, d, "again.jpg", 0, NULL);
	CHECK(again <= 16384);
	/* an id freed and forgotten again is ignored */
	fs_inode_forget(&t, ids[99999], 1);
	CHECK_INT((int)fs_inodes_count(&t), (int)before + 1);
	check_rows(&t, d);
	fs_inodes_free(&t);
	return check_report("test_inode");
}
