/* sync_drain.c - bench: queue N uploaded rows in a new catalog, then time
 * the sync runner's work (claim, read the row, upsert, mark, done) until
 * PostgreSQL has them all. Usage: sync_drain DIR DSN N */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/catalog.h"
#include "db/conn.h"
#include "db/queue.h"
#include "db/pg.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char err[1024], name[64];
	struct db_job job;
	struct db_image img;
	bool current;
	if (argc != 4) {
		fprintf(stderr, "usage: %s DIR DSN N\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[3]);
	struct db *db = db_open(argv[1], err, sizeof(err));
	struct db_pg *pg = db_pg_new(argv[2]);
	if (!db || !pg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	db_set_pg_sync(db, true);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "IMG_%05d.jpg", i);
		db_image_written(db, "P1", "2025-11-10", name, 2000000,
				 "bench");
	}
	while (db_job_claim(db, &job) == 0) {
		db_image_get_by_id(db, job.image_id, &img);
		snprintf(img.s3_key, sizeof(img.s3_key), "k/%s", img.name);
		snprintf(img.s3_thumbnail_key, sizeof(img.s3_thumbnail_key),
			 "k/t_%s", img.name);
		snprintf(img.thumbnail_name, sizeof(img.thumbnail_name), "t");
		snprintf(img.s3_bucket, sizeof(img.s3_bucket), "bench");
		snprintf(img.sha256, sizeof(img.sha256), "%064d", 0);
		snprintf(img.mime_type, sizeof(img.mime_type), "image/jpeg");
		img.width = 4032;
		img.height = 3024;
		img.thumbnail_size = 20000;
		db_ingest_done(db, &job, &img, NULL, &current);
	}
	/* as fs/worker.c's sync runner: up to 200 jobs a transaction */
	static struct db_job jobs[200];
	double t0 = now();
	int done = 0, got;
	while ((got = db_sync_claim(db, jobs, 200)) > 0) {
		if (db_pg_begin(pg, err, sizeof(err)))
			goto out_fail;
		for (int i = 0; i < got; i++)
			if (db_image_get_by_id(db, jobs[i].image_id, &img) ||
			    db_pg_upsert(pg, &img, "P1 2025-11-10", err,
					 sizeof(err)))
				goto out_fail;
		if (db_pg_commit(pg, err, sizeof(err)) ||
		    db_sync_done(db, jobs, got))
			goto out_fail;
		done += got;
	}
	double dt = now() - t0;
	printf("%d %.3f\n", done, dt);
	db_pg_free(pg);
	db_free(db);
	return done == n ? 0 : 1;
out_fail:
	fprintf(stderr, "sync failed: %s\n", err);
	return 1;
}
