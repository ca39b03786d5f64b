/*
 * deferred.h - the names whose rows from elsewhere (another mount, the
 * web app) wait for a writer here to close them.
 *
 * Applied while the name is open for writing, such a row would replace or
 * remove the spool file under the writer, whose close() would then return
 * 0 for bytes that go nowhere (#32, 4). The sync runner keeps the name
 * here instead; when its writer closes (handle.c), the name is due, and
 * the sync runner looks at it in PostgreSQL again. By then the writer's
 * own ingest, if it wrote, is pending and newer, and keeps its row.
 */
#ifndef FS_DEFERRED_H
#define FS_DEFERRED_H

#include <stdbool.h>

struct thumbfs;
struct fs_path;

#define FS_DEFERRED_MAX 256

struct fs_deferred {
	char patient[65];
	char date[11];
	char name[256];
	bool due; /* its writer closed: look again */
};

/* Keep the name (once): false when FS_DEFERRED_MAX names wait already. */
bool fs_deferred_add(const char *patient, const char *date, const char *name);

/* A writer of image p closed: its name, if kept, is due; the sync runner
 * is woken. */
void fs_deferred_closed(struct thumbfs *fs, const struct fs_path *p);

/* The first due name, taken off the list into d: true, or false. */
bool fs_deferred_next(struct fs_deferred *d);

/* Put d back, due (it could not be looked at now). */
void fs_deferred_again(const struct fs_deferred *d);

#endif
