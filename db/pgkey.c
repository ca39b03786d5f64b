/* pgkey.c - store keys claimed across mounts in PostgreSQL: locks, owners
 * and stamps (see pgkey.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/pgint.h"
#include "db/pgkey.h"

static int by_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The one query a lock or unlock is: its boolean answer, or -errno. */
static int lock_call(struct db_pg *pg, const char *fn, const char *key,
		     char *err, size_t errlen)
{
	char sql[128];
	PGresult *res = NULL;
	const char *const p[] = {key};
	snprintf(sql, sizeof(sql), "SELECT %s(hashtextextended($1, 0))", fn);
	int ret = db_pg_run(pg, sql, 1, p, &res, err, errlen);
	if (ret == 0) {
		ret =
		    PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
		PQclear(res);
	}
	return ret;
}

int db_pg_keys_lock(struct db_pg *pg, const char *const *keys, int n, char *err,
		    size_t errlen)
{
	const char *order[4];
	int m = 0, ret = db_pg_connect(pg, err, errlen);
	if (ret)
		return ret;
	for (int i = 0; i < n && m < 4; i++)
		if (keys[i] && keys[i][0])
			order[m++] = keys[i];
	qsort(order, (size_t)m, sizeof(order[0]), by_text);
	for (int i = 0; i < m; i++) {
		ret = lock_call(pg, "pg_try_advisory_lock", order[i], err,
				errlen);
		if (ret == 1)
			continue;
		if (ret == 0) {
			snprintf(err, errlen, "another mount is writing '%s'",
				 order[i]);
			ret = -EBUSY;
		}
		db_pg_keys_unlock(pg);
		return ret;
	}
	return 0;
}

void db_pg_keys_unlock(struct db_pg *pg)
{
	char err[256];
	if (pg->conn)
		db_pg_run(pg, "SELECT pg_advisory_unlock_all()", 0, NULL, NULL,
			  err, sizeof(err));
}

/* Who owns key, if not owner and not free: -EEXIST with who, else 0. */
static int other_owner(struct db_pg *pg, const char *key, const char *owner,
		       char *who, size_t n, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {key, owner};
	int ret = db_pg_run(pg,
			    "SELECT owner FROM thumbfs_key WHERE key = $1 AND"
			    " owner NOT IN ('', $2)",
			    2, p, &res, err, errlen);
	if (ret)
		return ret;
	if (PQntuples(res) == 1) {
		snprintf(who, n, "%s", PQgetvalue(res, 0, 0));
		ret = -EEXIST;
	}
	PQclear(res);
	return ret;
}

int db_pg_key_claim(struct db_pg *pg, const char *key, const char *owner,
		    char *who, size_t n, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {key, owner};
	int ret = db_pg_connect(pg, err, errlen);
	if (ret == 0)
		ret = db_pg_run(
		    pg,
		    "INSERT INTO thumbfs_key AS k (key, owner) VALUES ($1, $2)"
		    " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner"
		    " WHERE k.owner IN ('', EXCLUDED.owner) RETURNING 1",
		    2, p, &res, err, errlen);
	if (ret)
		return ret;
	int got = PQntuples(res);
	PQclear(res);
	if (got == 1)
		return 0;
	ret = other_owner(pg, key, owner, who, n, err, errlen);
	return ret ? ret : -EAGAIN; /* freed meanwhile: try again */
}

int db_pg_key_write(struct db_pg *pg, const char *key, const char *key2,
		    const char *owner, const char *writer, char stamp[32],
		    char *who, size_t n, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {key, key2, owner, stamp, writer};
	int want = 1 + (key2[0] != '\0');
	int ret = db_pg_run(pg, "BEGIN", 0, NULL, NULL, err, errlen);
	if (ret)
		return ret;
	/* one stamp for both: at least the version's, past every earlier */
	ret = db_pg_run(
	    pg,
	    "WITH s AS (SELECT greatest($4::timestamptz, (SELECT max(stamp) +"
	    " interval '1 microsecond' FROM thumbfs_key WHERE key IN ($1,"
	    " $2))) AS t) INSERT INTO thumbfs_key AS k (key, owner, stamp,"
	    " writer) SELECT v.key, $3, s.t, $5 FROM s, (VALUES ($1), ($2)) v"
	    " (key) WHERE v.key != '' ON CONFLICT (key) DO UPDATE SET owner ="
	    " EXCLUDED.owner, stamp = EXCLUDED.stamp, writer = EXCLUDED.writer"
	    " WHERE k.owner IN ('', EXCLUDED.owner) RETURNING " DB_PG_STAMP(
		"k.stamp"),
	    5, p, &res, err, errlen);
	if (ret == 0 && PQntuples(res) == want)
		snprintf(stamp, 32, "%s", PQgetvalue(res, 0, 0));
	else if (ret == 0) {
		ret = other_owner(pg, key, owner, who, n, err, errlen);
		if (ret == 0 && key2[0])
			ret = other_owner(pg, key2, owner, who, n, err, errlen);
		if (ret == 0) {
			snprintf(err, errlen, "the claim of '%s' changed", key);
			ret = -EAGAIN;
		}
	}
	PQclear(res);
	if (ret == 0)
		return db_pg_run(pg, "COMMIT", 0, NULL, NULL, err, errlen);
	char e[256];
	if (pg->conn)
		db_pg_run(pg, "ROLLBACK", 0, NULL, NULL, e, sizeof(e));
	return ret;
}

int db_pg_key_free(struct db_pg *pg, const char *key, const char *stamp,
		   const char *writer, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *const p[] = {key, stamp && stamp[0] ? stamp : NULL, writer};
	int ret = db_pg_run(pg,
			    "UPDATE thumbfs_key SET owner = '' WHERE key = $1"
			    " AND (stamp IS NULL OR stamp <= $2::timestamptz"
			    " OR writer = $3) RETURNING 1",
			    3, p, &res, err, errlen);
	if (ret)
		return ret;
	int freed = PQntuples(res);
	PQclear(res);
	if (freed)
		return 0;
	ret = db_pg_run(pg, "SELECT 1 FROM thumbfs_key WHERE key = $1", 1, p,
			&res, err, errlen);
	if (ret)
		return ret;
	int held = PQntuples(res);
	PQclear(res);
	return held ? 1 : 0; /* no claim: written before claims were kept */
}
