/*
 * reload.h - SIGHUP. The config file is read again whole: the store's
 * credentials, [thumbnail], [fs] retry_max_s and unmount_drain_s, [cache]
 * max_bytes and [log] file are applied at once (and the log file is
 * opened again, for logrotate); a change to any other key is logged as
 * taking effect at the next mount. A file with errors changes nothing.
 * Held uploads (a refusal) and parked jobs are tried again.
 */
#ifndef FS_RELOAD_H
#define FS_RELOAD_H

#include "thumb/thumb.h"

struct thumbfs;

/* What SIGHUP may change while mounted, as it is now. */
struct fs_live {
	struct thumb_opts thumb;
	int retry_max_s;
	int unmount_drain_s;
};

struct fs_live fs_live(struct thumbfs *fs);

/* Run by a job runner once SIGHUP has come. */
void fs_reload(struct thumbfs *fs);

#endif
