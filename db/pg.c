/* pg.c - upserts and deletes of catalog rows in the web app's PostgreSQL
 * tables, through libpq (see pg.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db/conn.h"
#include "db/pg.h"
#include "db/pgint.h"

struct db_pg *db_pg_new(const char *dsn)
{
	struct db_pg *pg = calloc(1, sizeof(*pg));
	if (pg && !(pg->dsn = strdup(dsn))) {
		free(pg);
		pg = NULL;
	}
	return pg;
}

void db_pg_disconnect(struct db_pg *pg)
{
	PQfinish(pg->conn);
	pg->conn = NULL;
	pg->listening = false;
	pg->tx_batch[0] = '\0';
}

void db_pg_free(struct db_pg *pg)
{
	if (!pg)
		return;
	db_pg_disconnect(pg);
	free(pg->dsn);
	free(pg);
}

/* libpq's message, on one line. */
void db_pg_one_line(const char *msg, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", msg && *msg ? msg : "unknown error");
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	size_t n = strlen(err);
	while (n && err[n - 1] == ' ')
		err[--n] = '\0';
}

int db_pg_connect(struct db_pg *pg, char *err, size_t errlen)
{
	/* connect_timeout comes before the dsn, so the dsn may override it */
	const char *const keys[] = {"connect_timeout", "dbname", NULL};
	const char *const vals[] = {"10", pg->dsn, NULL};
	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
		return 0;
	db_pg_disconnect(pg);
	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
		return 0;
	const char *msg = pg->conn ? PQerrorMessage(pg->conn) : "out of memory";
	db_pg_one_line(msg, err, errlen);
	int ret = strstr(msg, "authentication failed") ||
			  strstr(msg, "pg_hba.conf") ||
			  strstr(msg, "permission denied") ||
			  strstr(msg, "does not exist")
		      ? -EACCES
		      : -EAGAIN;
	db_pg_disconnect(pg);
	return ret;
}

/* The one place a PostgreSQL error becomes an errno. */
int db_pg_errno(struct db_pg *pg, const PGresult *res)
{
	const char *state =
	    res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK || !state)
		return -EAGAIN;
	if (!strcmp(state, "42P01") || !strcmp(state, "42703"))
		return -ENOENT; /* undefined table, column */
	if (!strncmp(state, "28", 2) || !strcmp(state, "42501"))
		return -EACCES;
	if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))
		return -EPROTO; /* data exception, integrity constraint */
	if (!strncmp(state, "08", 2) || !strncmp(state, "57", 2) ||
	    !strcmp(state, "40001") || !strcmp(state, "40P01"))
		return -EAGAIN; /* connection, shutdown, serialization */
	return -EIO;
}

int db_pg_run(struct db_pg *pg, const char *sql, int n,
	      const char *const *params, PGresult **out, char *err,
	      size_t errlen)
{
	PGresult *res =
	    PQexecParams(pg->conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int ret = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		ret = db_pg_errno(pg, res);
		db_pg_one_line(res ? PQresultErrorMessage(res)
				   : PQerrorMessage(pg->conn),
			       err, errlen);
		if (ret == -EAGAIN)
			db_pg_disconnect(pg);
	}
	if (out && !ret)
		*out = res;
	else
		PQclear(res);
	return ret;
}

int db_pg_begin(struct db_pg *pg, char *err, size_t errlen)
{
	int ret = db_pg_connect(pg, err, errlen);
	pg->tx_batch[0] = '\0';
	return ret ? ret : db_pg_run(pg, "BEGIN", 0, NULL, NULL, err, errlen);
}

int db_pg_commit(struct db_pg *pg, char *err, size_t errlen)
{
	if (!pg->conn) {
		snprintf(err, errlen, "not connected");
		return -EAGAIN;
	}
	return db_pg_run(pg, "COMMIT", 0, NULL, NULL, err, errlen);
}

void db_pg_rollback(struct db_pg *pg)
{
	char ignored[256];
	if (pg->conn)
		db_pg_run(pg, "ROLLBACK", 0, NULL, NULL, ignored,
			  sizeof(ignored));
}

int db_pg_check_schema(struct db_pg *pg, char *err, size_t errlen)
{
	static const char *const want[] = {
	    "images_batch.id",
	    "images_batch.patient_id",
	    "images_batch.batch_date",
	    "images_batch.name",
	    "images_batch.uploaded_by",
	    "images_batch.created_at",
	    "images_batch.updated_at",
	    "images_image.id",
	    "images_image.batch_id",
	    "images_image.s3_key",
	    "images_image.s3_thumbnail_key",
	    "images_image.s3_bucket",
	    "images_image.original_filename",
	    "images_image.file_size",
	    "images_image.thumbnail_size",
	    "images_image.mime_type",
	    "images_image.width",
	    "images_image.height",
	    "images_image.category",
	    "images_image.filemaker_id",
	    "images_image.uploaded_by",
	    "images_image.sha256",
	    "images_image.created_at",
	    "images_image.updated_at",
	    "thumbfs_tombstone.id",
	    "thumbfs_tombstone.image_id",
	    "thumbfs_tombstone.patient_id",
	    "thumbfs_tombstone.batch_date",
	    "thumbfs_tombstone.original_filename",
	    "thumbfs_tombstone.s3_bucket",
	    "thumbfs_tombstone.s3_key",
	    "thumbfs_tombstone.s3_thumbnail_key",
	    "thumbfs_tombstone.sha256",
	    "thumbfs_tombstone.file_size",
	    "thumbfs_tombstone.deleted_by",
	    "thumbfs_tombstone.deleted_at",
	    "thumbfs_tombstone.objects_kept",
	    "thumbfs_change.id",
	    "thumbfs_change.xid",
	    "thumbfs_change.image_id",
	    "thumbfs_change.patient_id",
	    "thumbfs_change.batch_date",
	    "thumbfs_change.original_filename",
	    "thumbfs_change.at",
	    "thumbfs_change_horizon.xid",
	    "thumbfs_key.key",
	    "thumbfs_key.owner",
	    "thumbfs_key.stamp",
	    "thumbfs_key.writer",
	};
	PGresult *res = NULL;
	char missing[1024] = "";
	size_t len = 0;
	int ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	ret =
	    db_pg_run(pg,
		      "SELECT table_name || '.' || column_name FROM"
		      " information_schema.columns WHERE table_schema ="
		      " current_schema() AND table_name IN ('images_batch',"
		      " 'images_image', 'thumbfs_tombstone', 'thumbfs_change',"
		      " 'thumbfs_change_horizon')",
		      0, NULL, &res, err, errlen);
	if (ret)
		return ret;
	/* a table with none of its columns is named as a table, so that
	 * the message stays short; and it never ends mid-name */
	const char *const tables[] = {"images_batch", "images_image",
				      "thumbfs_tombstone", "thumbfs_change",
				      "thumbfs_change_horizon"};
	int more = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		size_t tl = strlen(tables[t]), n = 0, lacking = 0;
		char cols[1024] = "";
		size_t cl = 0;
		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			if (strncmp(want[i], tables[t], tl) ||
			    want[i][tl] != '.')
				continue;
			n++;
			bool found = false;
			for (int r = 0; r < PQntuples(res) && !found; r++)
				found = !strcmp(PQgetvalue(res, r, 0), want[i]);
			if (found)
				continue;
			lacking++;
			if (cl + strlen(want[i]) + 3 < sizeof(cols))
				cl += (size_t)snprintf(
				    cols + cl, sizeof(cols) - cl, "%s%s",
				    cl ? ", " : "", want[i]);
			else
				more++;
		}
		char part[1100];
		if (!lacking)
			continue;
		if (lacking == n)
			snprintf(part, sizeof(part), "the table %s", tables[t]);
		else
			snprintf(part, sizeof(part), "%s", cols);
		if (len + strlen(part) + 3 < sizeof(missing))
			len += (size_t)snprintf(missing + len,
						sizeof(missing) - len, "%s%s",
						len ? ", " : "", part);
		else
			more++;
	}
	if (more && len + 24 < sizeof(missing))
		len += (size_t)snprintf(missing + len, sizeof(missing) - len,
					" and %d more", more);
	PQclear(res);
	if (len) {
		snprintf(err, errlen,
			 "PostgreSQL lacks %s (create the tables with: "
			 "thumbfs schema | psql DSN)",
			 missing);
		return -ENOENT;
	}
	return 0;
}

int db_pg_upsert(struct db_pg *pg, const struct db_image *img,
		 const char *batch_name, char *err, size_t errlen)
{
	char batch_id[37], file_size[24], thumb_size[24], width[16], height[16];
	PGresult *res = NULL;
	int ret;
	if (!pg->conn) {
		snprintf(err, errlen, "not connected");
		return -EAGAIN;
	}
	char key[80];
	snprintf(key, sizeof(key), "%s/%s", img->patient_id, img->batch_date);
	if (!strcmp(key, pg->tx_batch)) { /* upserted in this transaction */
		snprintf(batch_id, sizeof(batch_id), "%s", pg->tx_batch_id);
		ret = 0;
		goto out_image;
	}
	db_uuid(batch_id);
	const char *const bp[] = {batch_id, img->patient_id, img->batch_date,
				  batch_name, img->uploaded_by};
	ret = db_pg_run(
	    pg,
	    "INSERT INTO images_batch (id, patient_id, batch_date, name,"
	    " uploaded_by, created_at, updated_at) VALUES ($1, $2, $3,"
	    " $4, $5, now(), now()) ON CONFLICT (patient_id, batch_date)"
	    " DO UPDATE SET updated_at = now() RETURNING id",
	    5, bp, &res, err, errlen);
	if (ret == 0) {
		snprintf(batch_id, sizeof(batch_id), "%s",
			 PQgetvalue(res, 0, 0));
		PQclear(res);
		snprintf(pg->tx_batch, sizeof(pg->tx_batch), "%s", key);
		snprintf(pg->tx_batch_id, sizeof(pg->tx_batch_id), "%s",
			 batch_id);
	}
out_image:
	if (ret == 0) {
		snprintf(file_size, sizeof(file_size), "%lld",
			 (long long)img->file_size);
		snprintf(thumb_size, sizeof(thumb_size), "%lld",
			 (long long)img->thumbnail_size);
		snprintf(width, sizeof(width), "%d", img->width);
		snprintf(height, sizeof(height), "%d", img->height);
		const char *const ip[] = {
		    img->id,
		    batch_id,
		    img->s3_key,
		    img->s3_thumbnail_key,
		    img->s3_bucket,
		    img->name,
		    file_size,
		    thumb_size,
		    img->mime_type,
		    width,
		    height,
		    img->uploaded_by,
		    img->sha256,
		    img->created_at,
		    img->updated_at,
		    img->category,
		    img->filemaker_id,
		};
		/* By (batch, filename): another mount's row for the same name
		 * keeps its id; the later write wins. */
		ret = db_pg_run(
		    pg,
		    "INSERT INTO images_image (id, batch_id, s3_key,"
		    " s3_thumbnail_key, s3_bucket, original_filename,"
		    " file_size, thumbnail_size, mime_type, width, height,"
		    " uploaded_by, sha256, created_at, updated_at, category,"
		    " filemaker_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
		    " $9, $10, $11, $12, $13, $14, $15, $16, NULLIF($17,"
		    " '')) ON CONFLICT (batch_id,"
		    " original_filename) DO UPDATE SET s3_key ="
		    " EXCLUDED.s3_key, s3_thumbnail_key ="
		    " EXCLUDED.s3_thumbnail_key, s3_bucket ="
		    " EXCLUDED.s3_bucket, file_size = EXCLUDED.file_size,"
		    " thumbnail_size = EXCLUDED.thumbnail_size, mime_type"
		    " = EXCLUDED.mime_type, width = EXCLUDED.width, height"
		    " = EXCLUDED.height, uploaded_by ="
		    " EXCLUDED.uploaded_by, sha256 = EXCLUDED.sha256,"
		    " category = EXCLUDED.category, filemaker_id ="
		    " EXCLUDED.filemaker_id,"
		    " updated_at = EXCLUDED.updated_at WHERE"
		    " images_image.updated_at <= EXCLUDED.updated_at",
		    17, ip, NULL, err, errlen);
	}
	return ret;
}

int db_pg_delete(struct db_pg *pg, const char *patient, const char *date,
		 const char *name, char *err, size_t errlen)
{
	int ret;
	if (!pg->conn) {
		snprintf(err, errlen, "not connected");
		return -EAGAIN;
	}
	pg->tx_batch[0] = '\0'; /* the batch may go with its last image */
	const char *const p[] = {patient, date, name};
	ret = db_pg_run(
	    pg,
	    "DELETE FROM images_image i USING images_batch b WHERE"
	    " i.batch_id = b.id AND b.patient_id = $1 AND b.batch_date"
	    " = $2 AND i.original_filename = $3",
	    3, p, NULL, err, errlen);
	/* The batch goes with its last image, looked for only once the
	 * batch is locked: a transaction adding an image to it (which holds
	 * the batch's key share) has ended by then, and the next statement's
	 * snapshot sees its image. In one statement, READ COMMITTED would
	 * wait for the lock and then judge NOT EXISTS by the snapshot taken
	 * before, and ON DELETE CASCADE would take the new image along. */
	if (ret == 0)
		ret =
		    db_pg_run(pg,
			      "SELECT 1 FROM images_batch WHERE patient_id = $1"
			      " AND batch_date = $2 FOR UPDATE",
			      2, p, NULL, err, errlen);
	if (ret == 0)
		ret = db_pg_run(
		    pg,
		    "DELETE FROM images_batch b WHERE b.patient_id = $1"
		    " AND b.batch_date = $2 AND NOT EXISTS (SELECT 1 FROM"
		    " images_image i WHERE i.batch_id = b.id)",
		    2, p, NULL, err, errlen);
	return ret;
}

int db_pg_tombstone(struct db_pg *pg, const struct db_tombstone *t, char *err,
		    size_t errlen)
{
	char size[24];
	if (!pg->conn) {
		snprintf(err, errlen, "not connected");
		return -EAGAIN;
	}
	snprintf(size, sizeof(size), "%lld", (long long)t->file_size);
	const char *const p[] = {t->id,
				 t->image_id,
				 t->patient_id,
				 t->batch_date,
				 t->name,
				 t->s3_bucket,
				 t->s3_key,
				 t->s3_thumbnail_key,
				 t->sha256,
				 size,
				 t->deleted_by,
				 t->deleted_at,
				 t->objects_kept ? "true" : "false"};
	/* a job done again after a crash finds its row there already */
	return db_pg_run(
	    pg,
	    "INSERT INTO thumbfs_tombstone (id, image_id, patient_id,"
	    " batch_date, original_filename, s3_bucket, s3_key,"
	    " s3_thumbnail_key, sha256, file_size, deleted_by,"
	    " deleted_at, objects_kept) VALUES ($1, $2, $3, $4, $5, $6,"
	    " $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO"
	    " NOTHING",
	    13, p, NULL, err, errlen);
}
