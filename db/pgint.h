/*
 * pgint.h - what pg.c shares with the other files that speak to
 * PostgreSQL (pgkey.c): the connection and the one way to run a statement.
 */
#ifndef DB_PGINT_H
#define DB_PGINT_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

struct db_pg {
	char *dsn;
	PGconn *conn;	/* NULL when not connected */
	bool listening; /* LISTEN thumbfs_images on conn */
	/* the batch last upserted in the open transaction, and its id */
	char tx_batch[80];
	char tx_batch_id[37];
};

/* Run sql with n text params; *out gets the result when wanted (the
 * caller clears it). 0, or -errno as pg.h says with err one line; a
 * broken connection is closed (the next db_pg_connect opens it again). */
int db_pg_run(struct db_pg *pg, const char *sql, int n,
	      const char *const *params, PGresult **out, char *err,
	      size_t errlen);

/* Close the connection (the next db_pg_connect opens it again). */
void db_pg_disconnect(struct db_pg *pg);

/* libpq's message msg on one line, into err. */
void db_pg_one_line(const char *msg, char *err, size_t errlen);

/* The one place a PostgreSQL error (res, or the connection's state)
 * becomes an errno, as pg.h lists them. */
int db_pg_errno(struct db_pg *pg, const PGresult *res);

/* Times as the catalog writes them (db_now), so that they compare as
 * strings: the SQL expression for column c. */
#define DB_PG_STAMP(c)                                                         \
	"to_char(" c " AT TIME ZONE 'UTC', "                                   \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

#endif
