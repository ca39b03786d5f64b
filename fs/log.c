/* log.c - timestamped log lines, and a ring of the last errors. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool to_syslog;		 /* guarded by lock */
static char kept[LOG_KEEP][512]; /* guarded by lock */
static int n_kept;		 /* guarded by lock: errors ever kept */

void log_use_syslog(bool on)
{
	pthread_mutex_lock(&lock);
	if (on && !to_syslog)
		openlog("thumbfs", LOG_PID, LOG_DAEMON);
	to_syslog = on;
	pthread_mutex_unlock(&lock);
}

static void emit(int prio, const char *tag, bool keep, const char *fmt,
		 va_list ap)
{
	char msg[1024], stamp[32];
	struct tm tm;
	time_t now = time(NULL);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	pthread_mutex_lock(&lock);
	if (to_syslog)
		syslog(prio, "%s%s", tag, msg);
	else
		fprintf(stderr, "%s thumbfs: %s%s\n", stamp, tag, msg);
	if (keep) {
		snprintf(kept[n_kept % LOG_KEEP], sizeof(kept[0]),
			 "%.20s %.470s", stamp, msg);
		n_kept++;
	}
	pthread_mutex_unlock(&lock);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_INFO, "", false, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_WARNING, "warning: ", false, fmt, ap);
	va_end(ap);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_ERR, "error: ", true, fmt, ap);
	va_end(ap);
}

size_t log_last_errors(char *out, size_t n)
{
	size_t len = 0;
	if (n == 0)
		return 0;
	out[0] = '\0';
	pthread_mutex_lock(&lock);
	int first = n_kept > LOG_KEEP ? n_kept - LOG_KEEP : 0;
	for (int i = first; i < n_kept && len + 1 < n; i++) {
		int w =
		    snprintf(out + len, n - len, "%s\n", kept[i % LOG_KEEP]);
		if (w < 0)
			break;
		len += (size_t)w < n - len ? (size_t)w : n - len - 1;
	}
	pthread_mutex_unlock(&lock);
	return len;
}
