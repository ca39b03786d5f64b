/*
 * metrics_http.h - [metrics] listen: the address a Prometheus server
 * scrapes (GET /metrics), bound before the mount daemonises (so a taken
 * port or a bad address reaches the terminal) and served by libmicrohttpd
 * from one thread of its own.
 */
#ifndef FS_METRICS_HTTP_H
#define FS_METRICS_HTTP_H

#include <stddef.h>

struct thumbfs;

/* A listening socket on addr ("HOST:PORT", "[IPv6]:PORT"), or -errno
 * with err said. */
int fs_metrics_listen(const char *addr, char *err, size_t errlen);

/* Serve fs's metrics on socket fd (taken: closed by fs_metrics_stop). 0,
 * or -1 with err said. */
int fs_metrics_serve(struct thumbfs *fs, int fd, char *err, size_t errlen);

/* Stop serving (a scrape under way ends first); nothing if none runs. */
void fs_metrics_stop(void);

#endif
