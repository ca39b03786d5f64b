/* pgread.c - PostgreSQL read: the rows written by others (other mounts,
 * the web app), as changes since a bound or as a full scan; the bound,
 * who holds it back, the pruning of old changes; LISTEN (see pgread.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db/pgint.h"
#include "db/pgread.h"

/* The columns of an image as struct db_image wants them, times in the
 * catalog's own format so that they compare as strings (read_image). */
#define IMAGE_COLUMNS                                                          \
	"i.id, b.patient_id, to_char(b.batch_date, 'YYYY-MM-DD'),"             \
	" i.original_filename, i.file_size, i.s3_key,"                         \
	" coalesce(i.s3_thumbnail_key, ''), i.s3_bucket,"                      \
	" coalesce(i.thumbnail_size, 0), i.mime_type, coalesce(i.width, 0),"   \
	" coalesce(i.height, 0), i.sha256, i.uploaded_by,"                     \
	" to_char(i.created_at AT TIME ZONE 'UTC',"                            \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"                               \
	" to_char(i.updated_at AT TIME ZONE 'UTC',"                            \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), i.category,"                   \
	" coalesce(i.filemaker_id, '')"
#define SELECT_IMAGE                                                           \
	"SELECT " IMAGE_COLUMNS                                                \
	" FROM images_image i JOIN images_batch b ON b.id = i.batch_id"

static void copy_col(const PGresult *res, int row, int col, char *out, size_t n)
{
	snprintf(out, n, "%s", PQgetvalue(res, row, col));
}

/* The image whose IMAGE_COLUMNS begin at column c0 of row. */
static void read_image_at(const PGresult *res, int row, int c0,
			  struct db_image *o)
{
	memset(o, 0, sizeof(*o));
	copy_col(res, row, c0 + 0, o->id, sizeof(o->id));
	copy_col(res, row, c0 + 1, o->patient_id, sizeof(o->patient_id));
	copy_col(res, row, c0 + 2, o->batch_date, sizeof(o->batch_date));
	copy_col(res, row, c0 + 3, o->name, sizeof(o->name));
	o->file_size = strtoll(PQgetvalue(res, row, c0 + 4), NULL, 10);
	copy_col(res, row, c0 + 5, o->s3_key, sizeof(o->s3_key));
	copy_col(res, row, c0 + 6, o->s3_thumbnail_key,
		 sizeof(o->s3_thumbnail_key));
	copy_col(res, row, c0 + 7, o->s3_bucket, sizeof(o->s3_bucket));
	o->thumbnail_size = strtoll(PQgetvalue(res, row, c0 + 8), NULL, 10);
	copy_col(res, row, c0 + 9, o->mime_type, sizeof(o->mime_type));
	o->width = (int)strtol(PQgetvalue(res, row, c0 + 10), NULL, 10);
	o->height = (int)strtol(PQgetvalue(res, row, c0 + 11), NULL, 10);
	copy_col(res, row, c0 + 12, o->sha256, sizeof(o->sha256));
	copy_col(res, row, c0 + 13, o->uploaded_by, sizeof(o->uploaded_by));
	copy_col(res, row, c0 + 14, o->created_at, sizeof(o->created_at));
	copy_col(res, row, c0 + 15, o->updated_at, sizeof(o->updated_at));
	copy_col(res, row, c0 + 16, o->category, sizeof(o->category));
	copy_col(res, row, c0 + 17, o->filemaker_id, sizeof(o->filemaker_id));
	snprintf(o->state, sizeof(o->state), "uploaded");
}

static void read_image(const PGresult *res, int row, struct db_image *o)
{
	read_image_at(res, row, 0, o);
}

int db_pg_listen(struct db_pg *pg, char *err, size_t errlen)
{
	int ret = db_pg_connect(pg, err, errlen);
	if (ret || pg->listening)
		return ret;
	ret =
	    db_pg_run(pg, "LISTEN thumbfs_images", 0, NULL, NULL, err, errlen);
	pg->listening = ret == 0;
	return ret;
}

int db_pg_woken(struct db_pg *pg)
{
	PGnotify *n;
	int count = 0;
	if (!pg->conn || !pg->listening)
		return -EAGAIN;
	if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) != CONNECTION_OK) {
		db_pg_disconnect(pg);
		return -EAGAIN;
	}
	while ((n = PQnotifies(pg->conn))) {
		count++;
		PQfreemem(n);
	}
	return count;
}

/* One bigint of a one-row result; -1 for NULL. */
static int64_t int_at(const PGresult *res, int col)
{
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, col))
		return -1;
	return strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

int db_pg_bound(struct db_pg *pg, int64_t *bound, int64_t *horizon, char *err,
		size_t errlen)
{
	PGresult *res = NULL;
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	ret = db_pg_run(
	    pg,
	    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
	    " (SELECT max(xid) FROM thumbfs_change_horizon)",
	    0, NULL, &res, err, errlen);
	if (ret)
		return ret;
	*bound = int_at(res, 0);
	*horizon = int_at(res, 1);
	PQclear(res);
	return 0;
}

int db_pg_held(struct db_pg *pg, int64_t bound, char *err, size_t errlen)
{
	PGresult *res = NULL;
	char b[24];
	const char *const p[] = {b};
	snprintf(b, sizeof(b), "%lld", (long long)bound);
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	ret = db_pg_run(pg,
			"SELECT EXISTS (SELECT 1 FROM thumbfs_change WHERE"
			" xid >= $1::bigint)::int",
			1, p, &res, err, errlen);
	if (ret)
		return ret;
	ret = int_at(res, 0) == 1;
	PQclear(res);
	return ret;
}

int db_pg_holder(struct db_pg *pg, char *out, size_t n, char *err,
		 size_t errlen)
{
	PGresult *res = NULL;
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	/* another user's session shows little more than its pid to a role
	 * without pg_read_all_stats; a prepared transaction is in no
	 * session */
	ret = db_pg_run(
	    pg,
	    "SELECT * FROM (SELECT 'pid ' || pid || ' (user ' ||"
	    " coalesce(usename, '?') || ', application ''' ||"
	    " coalesce(application_name, '') || ''', client ' ||"
	    " coalesce(host(client_addr), 'local') || ', database ' ||"
	    " coalesce(datname, '?') || ', ' || coalesce(state, '?') ||"
	    " coalesce(', transaction open ' || extract(epoch FROM now()"
	    " - xact_start)::bigint || ' s', '') || ')' AS who,"
	    " xact_start AS since FROM pg_stat_activity WHERE"
	    " pid != pg_backend_pid() AND (backend_xid IS NOT NULL OR"
	    " backend_xmin IS NOT NULL) UNION ALL SELECT 'prepared"
	    " transaction ''' || gid || ''' (owner ' || owner || ','"
	    " || ' database ' || database || ', prepared ' ||"
	    " extract(epoch FROM now() - prepared)::bigint || ' s ago)',"
	    " prepared FROM pg_prepared_xacts) t ORDER BY since NULLS"
	    " LAST LIMIT 1",
	    0, NULL, &res, err, errlen);
	if (ret)
		return ret;
	snprintf(out, n, "%s",
		 PQntuples(res) ? PQgetvalue(res, 0, 0)
				: "a transaction this role cannot see");
	PQclear(res);
	return 0;
}

int db_pg_prune(struct db_pg *pg, int days, char *err, size_t errlen)
{
	PGresult *res = NULL;
	char d[16];
	const char *const p[] = {d};
	snprintf(d, sizeof(d), "%d", days);
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	/* the horizon moves first, in the same transaction: a mount never
	 * misses a change without knowing it */
	ret = db_pg_run(
	    pg,
	    "WITH gone AS (DELETE FROM thumbfs_change WHERE at < now() -"
	    " make_interval(days => $1::int) RETURNING xid),"
	    " top AS (SELECT max(xid) AS xid, count(*) AS n FROM gone)"
	    " , moved AS (INSERT INTO thumbfs_change_horizon (xid)"
	    " SELECT xid FROM top WHERE xid IS NOT NULL"
	    " ON CONFLICT (one) DO UPDATE SET xid ="
	    " greatest(thumbfs_change_horizon.xid, EXCLUDED.xid))"
	    " SELECT n FROM top",
	    1, p, &res, err, errlen);
	if (ret)
		return ret;
	ret = (int)int_at(res, 0);
	PQclear(res);
	return ret;
}

int db_pg_fetch_path(struct db_pg *pg, const char *patient, const char *date,
		     const char *name, struct db_image *out, char *err,
		     size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {patient, date, name};
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	ret =
	    db_pg_run(pg,
		      SELECT_IMAGE " WHERE b.patient_id = $1 AND b.batch_date ="
				   " $2::date AND i.original_filename = $3",
		      3, p, &res, err, errlen);
	if (ret)
		return ret;
	if (PQntuples(res) == 1)
		read_image(res, 0, out);
	else
		ret = -ENOENT;
	PQclear(res);
	return ret;
}

/* Ask the server to stop the query under way (PQcancel): the results
 * that follow end soon, with an error the caller has no use for. */
static void cancel(struct db_pg *pg)
{
	char buf[256];
	PGcancel *c = PQgetCancel(pg->conn);
	if (c) {
		PQcancel(c, buf, sizeof(buf));
		PQfreeCancel(c);
	}
}

/* Send sql (with n text params) and call row(res, arg) for each row as
 * it comes, one in memory at a time; a non-zero return from row stops
 * the query on the server and is returned. Returns how many rows. */
static int stream(struct db_pg *pg, const char *sql, int n,
		  const char *const *params,
		  int (*row)(const PGresult *res, void *arg), void *arg,
		  char *err, size_t errlen)
{
	PGresult *res;
	int ret = 0, count = 0;
	if (!PQsendQueryParams(pg->conn, sql, n, NULL, params, NULL, NULL, 0) ||
	    !PQsetSingleRowMode(pg->conn)) {
		db_pg_one_line(PQerrorMessage(pg->conn), err, errlen);
		db_pg_disconnect(pg);
		return -EAGAIN;
	}
	while ((res = PQgetResult(pg->conn))) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_SINGLE_TUPLE && ret == 0) {
			ret = row(res, arg);
			count++;
			if (ret)
				cancel(pg); /* the rest is not wanted */
		} else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK &&
			   ret == 0) {
			ret = db_pg_errno(pg, res);
			db_pg_one_line(PQresultErrorMessage(res), err, errlen);
		}
		PQclear(res);
	}
	if (ret == -EAGAIN)
		db_pg_disconnect(pg);
	return ret ? ret : count;
}

struct scan {
	int (*fn)(const struct db_image *img, void *arg);
	void *arg;
};

static int scan_row(const PGresult *res, void *arg)
{
	struct scan *sc = arg;
	struct db_image img;
	read_image(res, 0, &img);
	return sc->fn(&img, sc->arg);
}

int db_pg_scan(struct db_pg *pg,
	       int (*fn)(const struct db_image *img, void *arg), void *arg,
	       int64_t *bound, char *err, size_t errlen)
{
	PGresult *res = NULL;
	struct scan sc = {.fn = fn, .arg = arg};
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	/* one snapshot for the whole read, and the bound it gives: every
	 * transaction below it is in what is read */
	ret = db_pg_run(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
			0, NULL, NULL, err, errlen);
	if (ret == 0)
		ret = db_pg_run(pg,
				"SELECT pg_snapshot_xmin(pg_current_snapshot())"
				"::text::bigint",
				0, NULL, &res, err, errlen);
	if (ret == 0) {
		*bound = int_at(res, 0);
		PQclear(res);
		ret = stream(pg, SELECT_IMAGE, 0, NULL, scan_row, &sc, err,
			     errlen);
	}
	if (ret >= 0) {
		int n = ret;
		ret = db_pg_run(pg, "COMMIT", 0, NULL, NULL, err, errlen);
		return ret ? ret : n;
	}
	db_pg_rollback(pg);
	return ret;
}

static void read_change(const PGresult *res, int row, struct db_pg_change *c)
{
	memset(c, 0, sizeof(*c));
	c->xid = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	c->seq = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	copy_col(res, row, 2, c->id, sizeof(c->id));
	copy_col(res, row, 3, c->old_patient, sizeof(c->old_patient));
	copy_col(res, row, 4, c->old_date, sizeof(c->old_date));
	copy_col(res, row, 5, c->old_name, sizeof(c->old_name));
	c->present = !PQgetisnull(res, row, 6);
	if (c->present)
		read_image_at(res, row, 6, &c->now);
}

/* Changes read a page at a time: fn may use the connection meanwhile. */
#define CHANGES_PAGE 1000

int db_pg_changes(struct db_pg *pg, int64_t from, int64_t to,
		  int (*fn)(const struct db_pg_change *c, void *arg), void *arg,
		  char *err, size_t errlen)
{
	char a[24], b[24], c[24], lim[16];
	const char *const p[] = {a, c, b, lim};
	struct db_pg_change ch;
	int64_t xid = from, seq = 0;
	int count = 0, ret = 0, rows;
	snprintf(b, sizeof(b), "%lld", (long long)to);
	snprintf(lim, sizeof(lim), "%d", CHANGES_PAGE);
	do {
		PGresult *res = NULL;
		if ((ret = db_pg_connect(pg, err, errlen)))
			return ret;
		snprintf(a, sizeof(a), "%lld", (long long)xid);
		snprintf(c, sizeof(c), "%lld", (long long)seq);
		/* each change with the image as it is now (none: gone) */
		ret = db_pg_run(
		    pg,
		    "SELECT c.xid, c.id, c.image_id,"
		    " coalesce(c.patient_id, ''),"
		    " coalesce(to_char(c.batch_date, 'YYYY-MM-DD'), ''),"
		    " coalesce(c.original_filename, ''), " IMAGE_COLUMNS
		    " FROM thumbfs_change c LEFT JOIN (images_image i"
		    " JOIN images_batch b ON b.id = i.batch_id) ON i.id ="
		    " c.image_id WHERE (c.xid, c.id) > ($1::bigint,"
		    " $2::bigint) AND c.xid < $3::bigint"
		    " ORDER BY c.xid, c.id LIMIT $4::int",
		    4, p, &res, err, errlen);
		if (ret)
			return ret;
		rows = PQntuples(res);
		for (int r = 0; ret == 0 && r < rows; r++) {
			read_change(res, r, &ch);
			xid = ch.xid;
			seq = ch.seq;
			ret = fn(&ch, arg);
			count++;
		}
		PQclear(res);
	} while (ret == 0 && rows == CHANGES_PAGE);
	return ret ? ret : count;
}

int db_pg_has_image(struct db_pg *pg, const char *id, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {id};
	int ret = db_pg_connect(pg, err, errlen);
	if (ret == 0)
		ret = db_pg_run(pg, "SELECT 1 FROM images_image WHERE id = $1",
				1, p, &res, err, errlen);
	if (ret)
		return ret;
	ret = PQntuples(res) > 0;
	PQclear(res);
	return ret;
}
