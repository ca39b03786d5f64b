/* worker.c - thumbnails in a worker process: spawning one per thread that
 * asks, a request and its answer over a socket pair (the file's descriptor
 * passed with SCM_RIGHTS), the deadline and what a dead worker means; and
 * the worker's own loop. Written here because no library we use has one:
 * libvips, sshfs and curl decode or transfer in-process. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "thumb/worker.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1 /* its shadow memory is not the decoder's */
#else
#define SANITIZED 0
#endif

#define MAGIC	  0x74686d62U
#define REPLY_MAX (256U << 20) /* a thumbnail is never near this */

struct request {
	uint32_t magic;
	struct thumb_opts opts;
};

struct reply {
	int32_t ret;
	int32_t format, thumb_format;
	int32_t width, height, thumb_width, thumb_height;
	int64_t frame_ms;
	uint64_t size; /* of the thumbnail that follows */
	char err[512];
};

static pthread_mutex_t setup_lock = PTHREAD_MUTEX_INITIALIZER;
static char exe_path[4096] = "/proc/self/exe";
static uint64_t mem_limit;
static int cpu_limit = 60;

struct worker {
	pid_t pid; /* 0: none */
	int sock;
	int jobs;
};

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

void thumb_worker_setup(const char *exe, uint64_t memory, int cpu_s)
{
	pthread_mutex_lock(&setup_lock);
	snprintf(exe_path, sizeof(exe_path), "%s", exe);
	mem_limit = memory;
	cpu_limit = cpu_s > 0 ? cpu_s : 60;
	pthread_mutex_unlock(&setup_lock);
}

/* The worker's end: closed, killed if it lives, reaped. */
static void stop(struct worker *w)
{
	if (w->sock >= 0)
		close(w->sock);
	w->sock = -1;
	if (w->pid > 0) {
		kill(w->pid, SIGKILL);
		while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	w->pid = 0;
	w->jobs = 0;
}

static void destroy(void *p)
{
	stop(p);
	free(p);
}

static void make_key(void)
{
	pthread_key_create(&key, destroy);
}

static struct worker *mine(void)
{
	pthread_once(&key_once, make_key);
	struct worker *w = pthread_getspecific(key);
	if (!w && (w = calloc(1, sizeof(*w)))) {
		w->sock = -1;
		if (pthread_setspecific(key, w)) {
			free(w);
			w = NULL;
		}
	}
	return w;
}

void thumb_worker_release(void)
{
	pthread_once(&key_once, make_key);
	struct worker *w = pthread_getspecific(key);
	if (w) {
		pthread_setspecific(key, NULL);
		destroy(w);
	}
}

static int spawn(struct worker *w, char *err, size_t errlen)
{
	int sv[2];
	char exe[4096], mem[32], cpu[32];
	pthread_mutex_lock(&setup_lock);
	snprintf(exe, sizeof(exe), "%s", exe_path);
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)mem_limit);
	snprintf(cpu, sizeof(cpu), "%d", cpu_limit);
	pthread_mutex_unlock(&setup_lock);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		snprintf(err, errlen, "cannot start a thumbnail worker: %s",
			 strerror(errno));
		return -ECHILD;
	}
	/* its end becomes fd 3, everything above is closed, terminal
	 * signals (Ctrl-C on a mount in the foreground) do not reach it */
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGXCPU);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	int child = sv[1] == 3 ? fcntl(sv[1], F_DUPFD_CLOEXEC, 10) : sv[1];
	posix_spawn_file_actions_adddup2(&fa, child, 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
					  POSIX_SPAWN_SETSIGDEF |
					  POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setpgroup(&at, 0);
	char arg[] = THUMB_WORKER_ARG;
	char *argv[] = {exe, arg, mem, cpu, NULL};
	extern char **environ;
	int e = child < 0 ? errno
			  : posix_spawn(&w->pid, exe, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (child >= 0 && child != sv[1])
		close(child);
	close(sv[1]);
	if (e) {
		close(sv[0]);
		w->pid = 0;
		snprintf(err, errlen,
			 "cannot start a thumbnail worker (%s): %s", exe,
			 strerror(e));
		return -ECHILD;
	}
	w->sock = sv[0];
	w->jobs = 0;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* n bytes from fd by the deadline: 0, -ETIMEDOUT, or -EPIPE at its end. */
static int read_full(int fd, void *buf, size_t n, long long deadline)
{
	size_t got = 0;
	while (got < n) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		ssize_t k = read(fd, (char *)buf + got, n - got);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			return -EPIPE;
		got += (size_t)k;
	}
	return 0;
}

static int send_request(int sock, int fd, const struct thumb_opts *opts)
{
	struct request rq = {MAGIC, *opts};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {&rq, sizeof(rq)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	ssize_t n;
	while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n == (ssize_t)sizeof(rq) ? 0 : -EPIPE;
}

/* What became of a worker that did not answer, into err. */
static void describe_end(struct worker *w, bool late, int cpu_s, char *err,
			 size_t errlen)
{
	int status = 0;
	if (late)
		kill(w->pid, SIGKILL);
	pid_t r;
	while ((r = waitpid(w->pid, &status, 0)) < 0 && errno == EINTR)
		;
	w->pid = 0;
	if (late)
		snprintf(err, errlen,
			 "the decoder did not finish this file in %d s: "
			 "stopped",
			 2 * cpu_s + 10);
	else if (r > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)
		snprintf(err, errlen,
			 "the decoder used over %d s of CPU on this file: "
			 "stopped",
			 cpu_s);
	else if (r > 0 && WIFSIGNALED(status))
		snprintf(err, errlen, "the decoder crashed on this file (%s)",
			 strsignal(WTERMSIG(status)));
	else
		snprintf(err, errlen,
			 "the decoder ended on this file (exit status %d)",
			 r > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	stop(w);
}

int thumb_worker_make(int fd, const struct thumb_opts *opts,
		      struct thumb_result *res, char *err, size_t errlen)
{
	unsigned char head[THUMB_HEAD];
	ssize_t hn = pread(fd, head, sizeof(head), 0);
	memset(res, 0, sizeof(*res));
	res->frame_ms = -1;
	res->format = thumb_detect(head, hn > 0 ? (size_t)hn : 0);
	res->mime_type = thumb_mime_type(res->format);
	struct worker *w = mine();
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ECHILD;
	}
	pthread_mutex_lock(&setup_lock);
	int cpu_s = cpu_limit;
	pthread_mutex_unlock(&setup_lock);
	/* one that ended while idle (killed from outside) is not this
	 * file's doing */
	if (w->pid > 0 && waitpid(w->pid, NULL, WNOHANG) == w->pid)
		w->pid = 0;
	if (w->pid <= 0 || w->jobs >= THUMB_WORKER_JOBS) {
		stop(w);
		int ret = spawn(w, err, errlen);
		if (ret)
			return ret;
	}
	w->jobs++;
	struct reply rp;
	long long deadline = now_ms() + (2LL * cpu_s + 10) * 1000;
	int ret = send_request(w->sock, fd, opts);
	if (ret == 0)
		ret = read_full(w->sock, &rp, sizeof(rp), deadline);
	if (ret == 0 && rp.size > REPLY_MAX)
		ret = -EPROTO;
	if (ret == 0 && rp.size) {
		res->data = malloc(rp.size);
		ret = !res->data
			  ? -ENOMEM
			  : read_full(w->sock, res->data, rp.size, deadline);
	}
	if (ret == -ENOMEM) {
		snprintf(err, errlen, "out of memory for a %llu-byte thumbnail",
			 (unsigned long long)rp.size);
		stop(w);
		return -ENOMEM;
	}
	if (ret) {
		free(res->data);
		res->data = NULL;
		describe_end(w, ret == -ETIMEDOUT, cpu_s, err, errlen);
		return -EIO;
	}
	if (rp.ret) {
		snprintf(err, errlen, "%.*s", (int)sizeof(rp.err) - 1, rp.err);
		free(res->data);
		res->data = NULL;
		return rp.ret < 0 ? rp.ret : -EIO;
	}
	res->format = (enum thumb_format)rp.format;
	res->mime_type = thumb_mime_type(res->format);
	res->thumb_format = (enum thumb_format)rp.thumb_format;
	res->thumb_ext = res->thumb_format == THUMB_FMT_PNG ? ".png" : ".jpg";
	res->width = rp.width;
	res->height = rp.height;
	res->thumb_width = rp.thumb_width;
	res->thumb_height = rp.thumb_height;
	res->frame_ms = rp.frame_ms;
	res->size = rp.size;
	return 0;
}

/* ---- the worker ---- */

static int recv_request(struct request *rq, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {rq, sizeof(*rq)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	*fd = -1;
	while ((n = recvmsg(3, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -1; /* the mount let it go */
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	if (n < (ssize_t)sizeof(*rq) &&
	    read_full(3, (char *)rq + n, sizeof(*rq) - (size_t)n,
		      now_ms() + 10000))
		return -1;
	return rq->magic == MAGIC && *fd >= 0 ? 0 : -1;
}

static int write_full(const void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t k =
		    send(3, (const char *)buf + done, n - done, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		done += (size_t)k;
	}
	return 0;
}

/* This request's CPU time: what the process has used, and cpu_s more. */
static void limit_cpu(int cpu_s)
{
	struct rusage ru;
	struct rlimit rl;
	if (getrusage(RUSAGE_SELF, &ru) || getrlimit(RLIMIT_CPU, &rl))
		return;
	/* the kernel counts whole seconds: round what was used up */
	long long us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
		       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
	rlim_t used = (rlim_t)((us + 999999) / 1000000);
	rl.rlim_cur = used + (rlim_t)cpu_s;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_CPU, &rl);
}

int thumb_worker_main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	unsigned long long mem = strtoull(argv[2], NULL, 10);
	int cpu_s = atoi(argv[3]);
	/* freed image buffers stay in the heap rather than being given back
	 * and faulted in again for the next file (as thumbfs-thumb) */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (mem && !SANITIZED) {
		struct rlimit rl = {(rlim_t)mem, (rlim_t)mem};
		setrlimit(RLIMIT_DATA, &rl);
	}
	/* without the filter the worker still decodes, bounded as above:
	 * said on stderr (the mount's log), once a worker */
	char why[256];
	if (thumb_worker_confine(why, sizeof(why)))
		fprintf(stderr,
			"thumbfs: warning: thumbnail worker not "
			"confined: %s\n",
			why);
	struct request rq;
	int fd;
	while (recv_request(&rq, &fd) == 0) {
		struct thumb_result res;
		struct reply rp = {0};
		if (cpu_s > 0)
			limit_cpu(cpu_s);
		rp.ret =
		    thumb_make_fd(fd, &rq.opts, &res, rp.err, sizeof(rp.err));
		close(fd);
		rp.format = res.format;
		rp.thumb_format = res.thumb_format;
		rp.width = res.width;
		rp.height = res.height;
		rp.thumb_width = res.thumb_width;
		rp.thumb_height = res.thumb_height;
		rp.frame_ms = res.frame_ms;
		rp.size = rp.ret ? 0 : res.size;
		int bad = write_full(&rp, sizeof(rp)) ||
			  (rp.size && write_full(res.data, res.size));
		thumb_result_release(&res);
		if (bad)
			return 1;
	}
	return 0;
}
