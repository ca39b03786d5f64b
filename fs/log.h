/*
 * log.h - one line per event to stderr (foreground), a file ([log] file,
 * -o log=FILE) or syslog (daemon), and the last errors kept for
 * .thumbfs/status.
 */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LOG_KEEP 10 /* errors kept for the status file */

/* Log to syslog from now on (after daemonising), not stderr; a file set
 * with log_to_file() or log_keep_stderr() still wins. */
void log_use_syslog(bool on);

/* Whether a syslog daemon answers on /dev/log. */
bool log_syslog_reachable(void);

/* Lines go to the file at path (appended; created 0640) from now on, or
 * (path NULL) no longer to a file. 0 or -errno. */
int log_to_file(const char *path);

/* Lines go to what is stderr now, also after daemonising has pointed
 * stderr at /dev/null (when syslog cannot be reached). 0 or -errno. */
int log_keep_stderr(void);

/* The file opened again under its name (after logrotate moved it). */
int log_reopen(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error: also kept among the last LOG_KEEP for the status file. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether a line of this kind (op, a string, and kind, whose address
 * tells kinds apart: a rule's format) is said at time now: at most once a
 * minute for each kind. When it is, *more says how many of the kind were
 * not since the last that was. */
bool log_say_now(const char *op, const void *kind, time_t now, unsigned *more);

/* A size as people read it, in the powers of 1024 the config's K, M, G
 * and T are, three significant digits: "512 bytes", "1.21 MiB", "540 MiB",
 * "10.0 GiB". Returns out. */
const char *log_size(uint64_t bytes, char *out, size_t n);

/* Append the kept errors, newest last, one per line, to out (at most n
 * bytes, NUL-terminated). Returns the length written. */
size_t log_last_errors(char *out, size_t n);

#endif
