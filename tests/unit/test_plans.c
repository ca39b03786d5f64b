/* test_plans.c - every statement the catalog prepares finds its rows by an
 * index (EXPLAIN QUERY PLAN against a catalog with rows), unless it says
 * why it reads a whole table (DB_SQL_WHOLE); and a statement used without
 * the catalog's lock stops the process (DB_ASSERT_LOCKED). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/internal.h"
#include "tests/unit/check.h"

/* Tables that stay small whatever the archive's size: a scan of them is
 * not a scan of the archive. */
static const char *const small[] = {"counts",	   "job_counts", "sync_state",
				    "mount_state", "moves",	 "writing",
				    NULL};

/* Rows enough that the planner's choices are those of a real catalog:
 * images in many patients and dates, jobs of every kind, tombstones. */
static const char FILL[] =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < 5000)"
    " INSERT INTO images (id, patient_id, batch_date, name, state, gen,"
    " s3_key, s3_thumbnail_key, thumbnail_name, thumb_claim, created_at,"
    " updated_at, error) SELECT printf('id%05d', i), printf('P%d', i % 97),"
    " printf('2025-11-%02d', i % 28 + 1), printf('img%d.jpg', i),"
    " CASE WHEN i % 10 = 0 THEN 'spooled' ELSE 'uploaded' END, 1,"
    " printf('k/%d.jpg', i), printf('k/%d_thumb.jpg', i),"
    " printf('img%d_thumb.jpg', i), printf('img%d_thumb.jpg', i),"
    " '2025-11-10T00:00:00Z', '2025-11-10T00:00:00Z',"
    " CASE WHEN i % 100 = 0 THEN 'broken' ELSE '' END FROM n;"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < 3000)"
    " INSERT INTO jobs (kind, image_id, gen, key, key2, name, parked)"
    " SELECT i % 6 + 1, printf('id%05d', i), 1, printf('k/%d.jpg', i),"
    " printf('k/%d_thumb.jpg', i), printf('P%d/2025-11-10/img%d.jpg',"
    " i % 97, i), i % 50 = 0 FROM n;"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < 2000)"
    " INSERT INTO tombstones SELECT printf('t%05d', i), printf('id%05d', i),"
    " 'P1', '2025-11-10', printf('gone%d.jpg', i), 'b',"
    " printf('k/gone%d.jpg', i), printf('k/gone%d_thumb.jpg', i), '', 0,"
    " 'me', '2025-11-10T00:00:00Z', 0, '2025-11-09T00:00:00Z' FROM n;";

/* The table a plan line scans ("SCAN images", "SCAN j USING INDEX x"),
 * into out; false if the line is no scan of a table. */
static bool scanned(const char *detail, char *out, size_t n)
{
	if (strncmp(detail, "SCAN ", 5) != 0)
		return false;
	const char *t = detail + 5;
	if (!strncmp(t, "CONSTANT ROW", 12) || t[0] == '(')
		return false; /* no table, or a subquery's rows */
	size_t len = strcspn(t, " ");
	snprintf(out, n, "%.*s", (int)len, t);
	return true;
}

/* Whether the plan line scans a partial index (one that holds only the
 * rows its WHERE names: errors, parked or runnable jobs), which does not
 * grow with the archive. */
static bool partial(sqlite3 *conn, const char *detail)
{
	const char *u = strstr(detail, "INDEX ");
	if (!u)
		return false;
	char name[64];
	snprintf(name, sizeof(name), "%.*s", (int)strcspn(u + 6, " "), u + 6);
	sqlite3_stmt *s = NULL;
	bool yes =
	    sqlite3_prepare_v2(conn,
			       "SELECT 1 FROM sqlite_master WHERE"
			       " type = 'index' AND name = ?1 AND"
			       " sql LIKE '% WHERE %'",
			       -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return yes;
}

static bool is_small(const char *table)
{
	for (int i = 0; small[i]; i++)
		if (!strcmp(small[i], table))
			return true;
	return false;
}

/* Check one statement's plan; print it when it scans the archive. */
static void check_plan(sqlite3 *conn, const struct db_sql *e)
{
	char sql[8192], table[64];
	sqlite3_stmt *s = NULL;
	snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", e->text);
	int rc = sqlite3_prepare_v2(conn, sql, -1, &s, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "%s does not prepare: %s\n", e->name,
			sqlite3_errmsg(conn));
		CHECK(rc == SQLITE_OK);
		return;
	}
	bool full = false;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(s, 3);
		if (getenv("SHOW_PLANS")) /* for a person reading them */
			printf("%-22s %s\n", e->name, d ? d : "");
		if (d && scanned(d, table, sizeof(table)) && !is_small(table) &&
		    !partial(conn, d)) {
			full = true;
			if (!e->whole)
				fprintf(stderr, "%s scans the archive: %s\n",
					e->name, d);
		}
	}
	sqlite3_finalize(s);
	check_count++;
	if (full && !e->whole)
		check_failures++;
	/* a statement listed as reading a whole table that no longer does
	 * should say so no more */
	if (!full && e->whole) {
		fprintf(stderr,
			"%s is listed as whole (%s) but scans nothing\n",
			e->name, e->whole);
		check_failures++;
	}
}

/* What the status file's counts are, by a scan of the catalog. */
static const char SCAN[] =
    "SELECT (SELECT count(*) FROM images WHERE state = 'spooled'),"
    " (SELECT count(*) FROM images WHERE state = 'uploaded' AND"
    " (mime_type LIKE 'image/%' OR mime_type LIKE 'video/%' OR"
    " mime_type IN ('application/pdf', 'application/dicom'))),"
    " (SELECT count(*) FROM images WHERE state = 'uploaded' AND NOT"
    " (mime_type LIKE 'image/%' OR mime_type LIKE 'video/%' OR"
    " mime_type IN ('application/pdf', 'application/dicom'))),"
    " (SELECT count(*) FROM images WHERE error != ''),"
    " sum(kind = 1 AND NOT parked), sum(kind = 2 AND NOT parked),"
    " sum(attempts > 0 AND NOT parked), sum(kind IN (3, 4)),"
    " sum(kind = 5 AND NOT parked), sum(kind = 6 AND NOT parked),"
    " sum(parked) FROM jobs";

/* db_counts() of db, into out, checked against SCAN. */
static void compare_counts(struct db *db, struct db_counts *out);

/* The counts the triggers keep (schema v8, v14) are what a scan of the
 * catalog finds, after jobs retried, parked, turned and removed and rows
 * of every kind of file. */
static void check_counts(struct db *db)
{
	static const char CHANGE[] =
	    "UPDATE jobs SET attempts = 2 WHERE id % 7 = 0;"
	    "UPDATE jobs SET parked = 1 WHERE id % 11 = 0;"
	    "UPDATE jobs SET parked = 0 WHERE id % 100 = 0;"
	    "UPDATE jobs SET kind = 4 WHERE id % 13 = 0;"
	    "DELETE FROM jobs WHERE id % 5 = 0;"
	    "UPDATE images SET mime_type = CASE rowid % 6 WHEN 0 THEN"
	    " 'application/pdf' WHEN 1 THEN 'video/mp4' WHEN 2 THEN"
	    " 'application/dicom' WHEN 3 THEN 'application/octet-stream'"
	    " WHEN 4 THEN 'text/plain' ELSE 'image/jpeg' END;"
	    "DELETE FROM images WHERE id LIKE '%7';";

	char *msg = NULL;
	CHECK_INT(sqlite3_exec(db->conn, CHANGE, NULL, NULL, &msg), SQLITE_OK);
	sqlite3_free(msg);
	struct db_counts c;
	compare_counts(db, &c);
	CHECK(c.uploaded > 0 && c.uploaded_other > 0 && c.jobs_parked > 0 &&
	      c.jobs_retrying > 0 && c.oldest_queued > 0 && c.oldest_sync > 0);
}

/* A catalog of version 13 (no job_counts, PDFs counted as other files,
 * the counts out of date as v8's triggers left them, no name keys)
 * opened again: v14's step counts what is there, v15's keys the names
 * that are not ASCII (one of them decomposed, "Ro\u0308ntgen.jpg"), v16's
 * keeps the largest rowid given. */
static void check_migration(const char *dir, struct db **db)
{
	static const char BACK[] =
	    "DROP TABLE job_counts; DROP TRIGGER job_counts_insert;"
	    " DROP TRIGGER job_counts_delete; DROP TRIGGER job_counts_update;"
	    " DROP INDEX jobs_waiting; DROP INDEX jobs_sync_waiting;"
	    " UPDATE counts SET n = n + 5; DROP TABLE held;"
	    " DROP INDEX images_name_key; ALTER TABLE images DROP name_key;"
	    " UPDATE images SET name = 'Ro' || char(776) || 'ntgen.jpg'"
	    " WHERE rowid = (SELECT min(rowid) FROM images);"
	    " DROP TRIGGER rowid_seq_insert; DROP TABLE rowid_seq;"
	    " PRAGMA user_version = 13;";
	char *msg = NULL, err[512];
	CHECK_INT(sqlite3_exec((*db)->conn, BACK, NULL, NULL, &msg), SQLITE_OK);
	sqlite3_free(msg);
	db_free(*db);
	*db = db_open(dir, err, sizeof(err));
	CHECK(*db != NULL);
	if (!*db) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	struct db_counts c; /* (a mount's start frees parked jobs) */
	compare_counts(*db, &c);
	sqlite3_stmt *q = NULL;
	CHECK_INT(sqlite3_prepare_v2((*db)->conn,
				     "SELECT (SELECT n FROM rowid_seq) ="
				     " (SELECT max(rowid) FROM images)",
				     -1, &q, NULL),
		  SQLITE_OK);
	CHECK(sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 1);
	sqlite3_finalize(q);
	CHECK(c.uploaded > 0 && c.uploaded_other > 0 && c.oldest_sync > 0);
	sqlite3_stmt *s = NULL;
	char key[64] = "", patient[16] = "", date[16] = "", name[64] = "";
	CHECK_INT(sqlite3_prepare_v2((*db)->conn,
				     "SELECT name_key, patient_id, batch_date,"
				     " (SELECT count(*) FROM images WHERE"
				     " name_key != '') FROM images WHERE"
				     " name_key != ''",
				     -1, &s, NULL),
		  SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	snprintf(key, sizeof(key), "%s", sqlite3_column_text(s, 0));
	snprintf(patient, sizeof(patient), "%s", sqlite3_column_text(s, 1));
	snprintf(date, sizeof(date), "%s", sqlite3_column_text(s, 2));
	CHECK_INT(sqlite3_column_int(s, 3), 1);
	sqlite3_finalize(s);
	CHECK(!strcmp(key, "R\xc3\xb6ntgen.jpg"));
	CHECK_INT(db_name_spelling(*db, patient, date, key, name, sizeof(name)),
		  0);
	CHECK(!strcmp(name, "Ro\xcc\x88ntgen.jpg"));
}

static void compare_counts(struct db *db, struct db_counts *out)
{
	struct db_counts c;
	CHECK_INT(db_counts(db, &c), 0);
	int64_t kept[] = {c.spooled,	   c.uploaded,	  c.uploaded_other,
			  c.thumb_errors,  c.jobs_ingest, c.jobs_delete,
			  c.jobs_retrying, c.jobs_sync,	  c.jobs_backfill,
			  c.jobs_move,	   c.jobs_parked};
	sqlite3_stmt *s = NULL;
	CHECK_INT(sqlite3_prepare_v2(db->conn, SCAN, -1, &s, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(s), SQLITE_ROW);
	for (int i = 0; i < (int)(sizeof(kept) / sizeof(kept[0])); i++) {
		if (kept[i] != sqlite3_column_int64(s, i))
			fprintf(stderr, "count %d: kept %lld, scanned %lld\n",
				i, (long long)kept[i],
				(long long)sqlite3_column_int64(s, i));
		CHECK(kept[i] == sqlite3_column_int64(s, i));
	}
	sqlite3_finalize(s);
	*out = c;
}

int main(void)
{
	char dir[] = "/tmp/thumbfs-plans-XXXXXX", err[512];
	CHECK(mkdtemp(dir) != NULL);
	struct db *db = db_open(dir, err, sizeof(err));
	CHECK(db != NULL);
	if (!db) {
		fprintf(stderr, "%s\n", err);
		return check_report("test_plans");
	}
	char *msg = NULL;
	CHECK_INT(sqlite3_exec(db->conn, FILL, NULL, NULL, &msg), SQLITE_OK);
	if (msg)
		fprintf(stderr, "fill: %s\n", msg);
	sqlite3_free(msg);

	int n = 0;
	for (const struct db_sql *const *e = db_sql_first; e < db_sql_end;
	     e++, n++)
		check_plan(db->conn, *e);
	/* every file of db/ that prepares statements is in the list */
	CHECK(n >= 80);
	printf("%d statements\n", n);
	check_counts(db);
	check_migration(dir, &db);
	if (!db)
		return check_report("test_plans");

	/* the lock rule is checked: a statement used without db->lock
	 * aborts (DB_ASSERT_LOCKED), with it goes */
	pid_t child = fork();
	if (child == 0) {
		dup2(open("/dev/null", O_WRONLY), 2); /* the assert's line */
		db_use(db, (*db_sql_first)->text);
		_exit(0);
	}
	int status = 0;
	CHECK(child > 0 && waitpid(child, &status, 0) == child);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	db_lock(db);
	CHECK(db_use(db, (*db_sql_first)->text) != NULL);
	db_unlock(db);
	db_free(db);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	return check_report("test_plans");
}
