/* log.c - timestamped log lines to stderr, a file or syslog, and a ring of
 * the last errors. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool to_syslog;		 /* guarded by lock */
static int out_fd = -1;		 /* guarded by lock: the file, or kept stderr */
static char out_path[4096];	 /* guarded by lock: "" for kept stderr */
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

bool log_syslog_reachable(void)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int types[] = {SOCK_DGRAM, SOCK_STREAM};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", _PATH_LOG);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		close(fd);
		if (ok == 0)
			return true;
	}
	return false;
}

/* Lines go to fd from now on ("" path: not a file to open again). */
static void use_fd(int fd, const char *path)
{
	pthread_mutex_lock(&lock);
	if (out_fd >= 0)
		close(out_fd);
	out_fd = fd;
	snprintf(out_path, sizeof(out_path), "%s", path);
	pthread_mutex_unlock(&lock);
}

int log_to_file(const char *path)
{
	int fd = -1;
	if (path) {
		fd =
		    open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	use_fd(fd, path ? path : "");
	return 0;
}

int log_keep_stderr(void)
{
	int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	use_fd(fd, "");
	return 0;
}

int log_reopen(void)
{
	char path[sizeof(out_path)];
	pthread_mutex_lock(&lock);
	snprintf(path, sizeof(path), "%s", out_path);
	pthread_mutex_unlock(&lock);
	return path[0] ? log_to_file(path) : 0;
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
	if (out_fd >= 0)
		dprintf(out_fd, "%s thumbfs[%d]: %s%s\n", stamp, (int)getpid(),
			tag, msg);
	else if (to_syslog)
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

const char *log_size(uint64_t bytes, char *out, size_t n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (bytes < 1024) {
		snprintf(out, n, "%llu bytes", (unsigned long long)bytes);
		return out;
	}
	double v = (double)bytes / 1024;
	int u = 0;
	while (v >= 1023.95 && u < 3)
		v /= 1024, u++;
	snprintf(out, n,
		 v < 9.995   ? "%.2f %s"
		 : v < 99.95 ? "%.1f %s"
			     : "%.0f %s",
		 v, units[u]);
	return out;
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

/* The kinds said in the last minute, one slot each (the oldest goes when
 * all are taken). */
static struct said {
	const char *op;
	const void *kind;
	time_t at;
	unsigned more; /* of the kind since, not said */
} said[32];
static pthread_mutex_t said_lock = PTHREAD_MUTEX_INITIALIZER;

bool log_say_now(const char *op, const void *kind, time_t now, unsigned *more)
{
	struct said *slot = &said[0];
	bool found = false, say = true;
	*more = 0;
	pthread_mutex_lock(&said_lock);
	for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++) {
		struct said *s = &said[i];
		if (s->kind == kind && s->op && !strcmp(s->op, op)) {
			slot = s;
			found = true;
			break;
		}
		if (s->at < slot->at)
			slot = s;
	}
	if (found && now - slot->at < 60) {
		slot->more++;
		say = false;
	} else {
		*more = found ? slot->more : 0;
		*slot = (struct said){.op = op, .kind = kind, .at = now};
	}
	pthread_mutex_unlock(&said_lock);
	return say;
}
