/* deferred.c - the names whose rows from elsewhere wait for a writer here
 * to close them (see deferred.h). */
#include "fs/deferred.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fs/job.h"
#include "fs/path.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fs_deferred kept[FS_DEFERRED_MAX]; /* guarded by lock */
static int n_kept;				 /* guarded by lock */

static int find_locked(const char *patient, const char *date, const char *name)
{
	for (int i = 0; i < n_kept; i++)
		if (!strcmp(kept[i].name, name) &&
		    !strcmp(kept[i].date, date) &&
		    !strcmp(kept[i].patient, patient))
			return i;
	return -1;
}

static bool keep_name(const char *patient, const char *date, const char *name,
		      bool due)
{
	pthread_mutex_lock(&lock);
	int i = find_locked(patient, date, name);
	if (i < 0 && n_kept < FS_DEFERRED_MAX) {
		i = n_kept++;
		snprintf(kept[i].patient, sizeof(kept[i].patient), "%s",
			 patient);
		snprintf(kept[i].date, sizeof(kept[i].date), "%s", date);
		snprintf(kept[i].name, sizeof(kept[i].name), "%s", name);
		kept[i].due = false;
	}
	if (i >= 0 && due)
		kept[i].due = true;
	pthread_mutex_unlock(&lock);
	return i >= 0;
}

bool fs_deferred_add(const char *patient, const char *date, const char *name)
{
	return keep_name(patient, date, name, false);
}

void fs_deferred_again(const struct fs_deferred *d)
{
	keep_name(d->patient, d->date, d->name, true);
}

void fs_deferred_closed(struct thumbfs *fs, const struct fs_path *p)
{
	pthread_mutex_lock(&lock);
	int i = find_locked(p->patient, p->date, p->name);
	if (i >= 0)
		kept[i].due = true;
	pthread_mutex_unlock(&lock);
	if (i >= 0)
		fs_jobs_kick(fs);
}

bool fs_deferred_next(struct fs_deferred *d)
{
	bool got = false;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < n_kept && !got; i++) {
		if (!kept[i].due)
			continue;
		*d = kept[i];
		kept[i] = kept[--n_kept];
		got = true;
	}
	pthread_mutex_unlock(&lock);
	return got;
}
