/*
 * audit.h - the audit log: one JSON object per line for each change made
 * through the mount and each operation thumbfs refuses, appended to a file
 * of its own (mode 0600) and rotated by size. It holds names and hashes,
 * never credentials.
 */
#ifndef FS_AUDIT_H
#define FS_AUDIT_H

#include <stdint.h>
#include <sys/types.h>

struct audit;

struct audit_event {
	const char *op;	    /* "write", "rename", "unlink", "chmod", ... */
	const char *path;   /* as the mount shows it */
	const char *to;	    /* rename: the new path; NULL otherwise */
	const char *sha256; /* of the content, where known; NULL or "" */
	int64_t size;	    /* of the content, or -1 */
	int result;	    /* 0, or the -errno the caller was given */
	uid_t uid;
	pid_t pid;
};

/* Open (create, 0600) path for appending. When a line would take the file
 * past max_bytes, it is renamed to path.1 (path.1 to path.2, ..., keeping
 * keep old files) and a new one begun. NULL with err set on failure. */
struct audit *audit_open(const char *path, uint64_t max_bytes, int keep,
			 char *err, size_t errlen);
void audit_close(struct audit *a);

/* Append one line: time (UTC, ms), uid, user, pid, op, path, to, sha256,
 * size and result ("ok" or the errno's name). Thread-safe. Returns 0 or
 * -errno (the line is then lost, and the log says so once). */
int audit_log(struct audit *a, const struct audit_event *e);

#endif
