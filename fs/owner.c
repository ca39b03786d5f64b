/* owner.c - the lock that makes one process the owner of a catalog, and
 * the line in it that says who that is. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "fs/owner.h"

/* The holder's line: "PID what it does". */
static void read_holder(int fd, long *pid, char *what, size_t n)
{
	char buf[600];
	ssize_t len = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[len > 0 ? len : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	char *sp = strchr(buf, ' ');
	*pid = 0;
	snprintf(what, n, "%s", sp ? sp + 1 : "");
	if (sp)
		sscanf(buf, "%ld", pid);
}

int fs_owner_take(const char *dir, bool wait, const atomic_int *stop,
		  char *busy_state, size_t state_len, char *err, size_t errlen)
{
	char path[4096], what[512];
	long pid;
	snprintf(path, sizeof(path), "%s/owner", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open '%s': %s", path,
			 strerror(e));
		return -e;
	}
	bool said = false;
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK) {
			int e = errno;
			snprintf(err, errlen, "cannot lock '%s': %s", path,
				 strerror(e));
			close(fd);
			return -e;
		}
		read_holder(fd, &pid, what, sizeof(what));
		if (busy_state)
			snprintf(busy_state, state_len, "%s", what);
		if (!wait || strncmp(what, "finishing ", 10)) {
			snprintf(err, errlen,
				 "the catalog %s is in use: %s by pid %ld", dir,
				 what[0] ? what : "held", pid);
			close(fd);
			return -EBUSY;
		}
		if (!said)
			fprintf(stderr,
				"thumbfs: the catalog %s is held by pid %ld, "
				"which is %s; waiting for it\n",
				dir, pid, what);
		said = true;
		sleep(1); /* (a signal ends it early) */
		if (stop && *stop) {
			snprintf(err, errlen, "interrupted while waiting");
			close(fd);
			return -EINTR;
		}
	}
	if (said)
		fprintf(stderr, "thumbfs: pid %ld is done; going on\n", pid);
	return fd;
}

int fs_owner_peek(const char *dir, long *pid, char *what, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/owner", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	read_holder(fd, pid, what, n);
	close(fd);
	return 0;
}

void fs_owner_say(int fd, const char *fmt, ...)
{
	char line[600];
	int n = snprintf(line, sizeof(line), "%ld ", (long)getpid());
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len++] = '\n';
	if (ftruncate(fd, 0) == 0 && pwrite(fd, line, len, 0) == (ssize_t)len)
		fdatasync(fd);
}
