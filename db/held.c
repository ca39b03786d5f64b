/* held.c - the catalog's list of folders held for their names. */
#include "db/held.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "db/internal.h"

/* a path and what is below it: "/a/b", then "/a/b/..." ('/' + 1 is '0') */
#define HELD_UNDER                                                             \
	" (path = :path OR (path > :path || '/' AND path < :path || '0'))"

DB_SQL(SQL_HELD_ADD, "INSERT OR IGNORE INTO held (path, since) VALUES"
		     " (:path, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))");
DB_SQL(SQL_HELD_DROP, "DELETE FROM held WHERE" HELD_UNDER);
DB_SQL(SQL_HELD_MOVE, "UPDATE OR REPLACE held SET path = :to ||"
		      " substr(path, length(:path) + 1) WHERE" HELD_UNDER);
DB_SQL_WHOLE(SQL_HELD_LIST,
	     "the status file lists every held folder: a few, each a "
	     "problem a person is told to solve",
	     "SELECT path FROM held ORDER BY path");

static int held_run(struct db *db, const char *sql, const char *path,
		    const char *to)
{
	db_lock(db);
	sqlite3_stmt *s = db_use(db, sql);
	db_bind_text(s, ":path", path);
	if (to)
		db_bind_text(s, ":to", to);
	int ret = db_run(s);
	db_unlock(db);
	return ret;
}

int db_held_add(struct db *db, const char *path)
{
	return held_run(db, SQL_HELD_ADD, path, NULL);
}

int db_held_drop(struct db *db, const char *path)
{
	return held_run(db, SQL_HELD_DROP, path, NULL);
}

int db_held_move(struct db *db, const char *from, const char *to)
{
	return held_run(db, SQL_HELD_MOVE, from, to);
}

int db_held_list(struct db *db, char **v, int max)
{
	int n = 0, ret = 0, rc = SQLITE_DONE;
	db_lock(db);
	sqlite3_stmt *s = db_use(db, SQL_HELD_LIST);
	while (s && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n < max &&
		    !(v[n] = strdup((const char *)sqlite3_column_text(s, 0))))
			ret = -ENOMEM;
		n++;
	}
	if (!s || rc != SQLITE_DONE)
		ret = -EIO;
	if (s)
		sqlite3_reset(s);
	db_unlock(db);
	if (ret)
		for (int i = 0; i < n && i < max; i++)
			free(v[i]);
	return ret ? ret : n;
}
