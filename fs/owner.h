/*
 * owner.h - one process owns a catalog at a time: the job claims live in
 * its memory (db_open() releases every claim it finds), so two owners
 * would run the same job twice. The owner holds an flock() on DIR/owner,
 * a file that says who it is and what it does ("mounted on /mnt",
 * "finishing the uploads of /mnt", "backfill"), so that the second is
 * told whom it met. The lock goes with the process, however it ends.
 */
#ifndef FS_OWNER_H
#define FS_OWNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Take the lock of catalog dir dir. Held by a process that is only
 * finishing the uploads of an unmount: with wait, say so on stderr and
 * wait for it, unless *stop becomes non-zero (a signal's handler sets it;
 * then -EINTR). Returns the lock's fd (close-on-exec; kept across a fork),
 * or -EBUSY with err "the catalog DIR is in use: mounted by pid N on
 * /mnt" (and *busy_state what the holder said: "mounted on /mnt"), or
 * another -errno. */
int fs_owner_take(const char *dir, bool wait, const atomic_int *stop,
		  char *busy_state, size_t state_len, char *err, size_t errlen);

/* What this process does now, for the next that finds the lock held. */
void fs_owner_say(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Who holds (or last held) the catalog of dir, read without taking its
 * lock (so that a mount starting meanwhile is never refused): *pid and
 * what it said; 0, or -errno (-ENOENT: never owned). The process may be
 * gone: see whether *pid lives. */
int fs_owner_peek(const char *dir, long *pid, char *what, size_t n);

#endif
