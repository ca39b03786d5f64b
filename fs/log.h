/*
 * log.h - one line per event to stderr (foreground) or syslog (daemon), and
 * the last errors kept for .thumbfs/status.
 */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_KEEP 10 /* errors kept for the status file */

/* Log to syslog from now on (after daemonising), not stderr. */
void log_use_syslog(bool on);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error: also kept among the last LOG_KEEP for the status file. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Append the kept errors, newest last, one per line, to out (at most n
 * bytes, NUL-terminated). Returns the length written. */
size_t log_last_errors(char *out, size_t n);

#endif
