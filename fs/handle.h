/*
 * handle.h - open files: create and open (an image's content made whole
 * first), read and write, and the points where the writer is told its
 * data is saved (close, fsync), at which the ingest is queued.
 */
#ifndef FS_HANDLE_H
#define FS_HANDLE_H

#include "fs/request.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "db/catalog.h"
#include "fs/path.h"
#include "fs/remote.h"

/* An open file: the status file's text, or a spool file (fd), or an
 * image in the store only (remote). Fields other than dirty, path and
 * image, and the window are set at open and only read after. */
struct handle {
	int fd; /* -1: none (status, or remote without a spool file) */
	/* guards path and image, which follow the file's name: a rename
	 * (or an unlink, which libfuse makes a rename to a hidden name
	 * while the file is open) moves the handle with it */
	pthread_mutex_t lock;
	/* written, truncated or created through this handle since the writer
	 * was last told it is saved (close, fsync); for an image, the catalog
	 * knows it is being written. Atomic: a handle's write, truncate and
	 * flush may come at once on different FUSE threads; marking twice,
	 * or queueing twice, is harmless (both are idempotent). */
	atomic_bool dirty;
	bool image;    /* a visible image: ingested when it is saved */
	bool copy;     /* a thumbnail's name opened to write (a folder copied
			* back in): its bytes kept aside, and compared with
			* the thumbnail's when it is saved */
	bool writable; /* opened to write: rows from elsewhere for its name
			* wait until it is closed (sync.c) */
	struct fs_path path;
	char *status;
	size_t status_len;
	uid_t uid; /* who opened it: the writer uploaded_by names */
	pid_t pid;
	ino_t ino; /* its spool file, held in the cache; 0: none */
	/* an image whose content is in the store only (evicted, or written
	 * by another mount), opened to read: read by ranged GETs of a
	 * window around the offset asked for (remote.c) */
	bool remote;
	struct fs_window win;
	struct handle *prev, *next; /* the open ones (handle.c's lock) */
};

/* The handle of fi (NULL: none). */
struct handle *fs_handle(struct fuse_file_info *fi);

/* Whether a handle open to write has the image (patient, date, name). */
bool fs_handle_writer_open(const char *patient, const char *date,
			   const char *name);

/* At the end of the FUSE loop: the handles whose release never came (a
 * close the kernel had not sent on when the mount went) freed. */
void fs_handles_release_all(struct thumbfs *fs);

/* Queue the ingest of image p, written by uid to size bytes. 0 or -errno
 * (logged). */
/* Image p is about to change, its writer not yet told it is saved: the
 * catalog is told first, so that a daemon that dies before leaves it whole
 * or absent. 0, -ENOSPC or -EIO. */
int fs_mark_writing(struct thumbfs *fs, const struct fs_path *p);

int fs_queue_ingest(struct thumbfs *fs, const struct fs_path *p, int64_t size,
		    uid_t uid);

/* truncate() through an open handle, whose name is now path (NULL: not
 * given). */
int fs_handle_truncate(struct thumbfs *fs, struct handle *h, const char *path,
		       off_t size);

int fs_op_create(const char *path, mode_t mode, struct fuse_file_info *fi);
int fs_op_open(const char *path, struct fuse_file_info *fi);
int fs_op_read(const char *path, char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi);
int fs_op_write(const char *path, const char *buf, size_t size, off_t off,
		struct fuse_file_info *fi);
int fs_op_flush(const char *path, struct fuse_file_info *fi);
int fs_op_fsync(const char *path, int datasync, struct fuse_file_info *fi);
int fs_op_release(const char *path, struct fuse_file_info *fi);

/* The handle of a spool file a request came with, or NULL (none, the
 * status file's, or one with no file). */
struct handle *fs_file_handle(struct fuse_file_info *fi);

/* Whether the file fd holds the bytes of the thumbnail p (a folder copied
 * back in): 0 if it does, else -EPERM (refused, said with op) or -errno. */
int fs_thumb_copy_check(struct thumbfs *fs, int fd, const struct fs_path *p,
			const char *op);

#endif
