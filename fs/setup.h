/*
 * setup.h - what a mount and the subcommands that work on the archive make
 * from the config first (setup.c), and release.
 */
#ifndef FS_SETUP_H
#define FS_SETUP_H

/* Said at every start with [store] insecure_skip_verify. */
#define INSECURE_WARNING                                                       \
	"warning: [store] insecure_skip_verify = true: the store's TLS "       \
	"certificate and host name are NOT checked"

struct thumbfs;
struct cfg;
struct s3_config;
struct s3_store;

/* The config loaded into fs->cfg and what follows from it checked and
 * made: the thumbnail options and path rules, the private directories,
 * PostgreSQL's tables (a server away only warns), the cache. -1 when
 * something is wrong (said on stderr); fs_setup_release() frees what was
 * made either way. */
int fs_prepare(struct thumbfs *fs, const char *config);

/* The store's settings from [store] (the strings stay cfg's). */
struct s3_config fs_store_config(const struct cfg *cfg);

/* The store opened and checked (one that is away now only warns), or
 * NULL with the reason on stderr. */
struct s3_store *fs_open_store(const struct cfg *cfg);

/* What fs_prepare and the command made released, and the catalog's lock
 * (owner, -1: none) given back. */
void fs_setup_release(struct thumbfs *fs, int owner);

#endif
