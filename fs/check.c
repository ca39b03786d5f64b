/* check.c - thumbfs check: reads a running mount's .thumbfs/status (as a
 * person would: nothing in the mount changes), measures it against the
 * warning and critical thresholds, and says so in the plugin format. */
#include "fs/check.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/config.h"
#include "fs/owner.h"

enum { OK, WARNING, CRITICAL, UNKNOWN };
static const char *const state_names[] = {"OK", "WARNING", "CRITICAL",
					  "UNKNOWN"};

/* A threshold pair on one number of the status file (the larger of two
 * when label2 is given): at or over warn is WARNING, at or over crit
 * CRITICAL. */
struct limit {
	const char *flag, *label, *label2, *perf, *unit;
	long long warn, crit;
	long long value;
};

/* The defaults page nobody for a night's rsync of thousands of photos
 * (its queue drains in minutes; a job waits an hour only when the store
 * or PostgreSQL is away), and wake someone when images stop reaching the
 * web app for hours. */
static struct limit limits[] = {
    {"--queue-age", "oldest job waiting (seconds)", NULL, "oldest_job_age", "s",
     3600, 4 * 3600, 0},
    {"--failed", "failed for good (thumbfs retry)", NULL, "failed_for_good", "",
     1, 50, 0},
    /* rows waiting for PostgreSQL (away, or refusing), or its changes
     * held back from this mount by a long transaction */
    {"--sync-lag", "postgres waiting (seconds)", "postgres held back (seconds)",
     "sync_lag", "s", 300, 1800, 0},
};
#define N_LIMITS (sizeof(limits) / sizeof(limits[0]))

static int usage(void)
{
	fprintf(stderr, "usage: thumbfs check CONFIG [--queue-age W,C] "
			"[--failed W,C] [--sync-lag W,C]\n");
	return UNKNOWN;
}

static int say(int state, const char *what, const char *perf)
{
	printf("THUMBFS %s - %s%s%s\n", state_names[state], what,
	       perf[0] ? " | " : "", perf);
	return state;
}

/* "W,C" into l: two whole numbers, W <= C. */
static int parse_limit(struct limit *l, const char *s)
{
	char *end;
	long long w = strtoll(s, &end, 10), c;
	if (end == s || *end != ',' || w < 0)
		return -1;
	const char *cs = end + 1;
	c = strtoll(cs, &end, 10);
	if (end == cs || *end || c < w)
		return -1;
	l->warn = w;
	l->crit = c;
	return 0;
}

/* The value of "label: VALUE" in text, or NULL. */
static const char *field(const char *text, const char *label, char *out,
			 size_t n)
{
	size_t len = strlen(label);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p += !!p) {
		if (!strncmp(p, label, len) && !strncmp(p + len, ": ", 2)) {
			const char *v = p + len + 2, *nl = strchr(v, '\n');
			snprintf(out, n, "%.*s",
				 (int)(nl ? (size_t)(nl - v) : strlen(v)), v);
			return out;
		}
	}
	return NULL;
}

/* A mount that hangs must not hang its check: the status file is read by
 * a child, killed past CHECK_TIMEOUT_S (only a fatal signal ends a wait
 * on a FUSE daemon that answers nothing). */
#define CHECK_TIMEOUT_S 20

/* The whole of the status file of the mount at mnt, malloc'd; NULL with
 * *late set when it took too long. */
static char *read_status(const char *mnt, bool *late)
{
	char path[4200], chunk[4096], *buf = NULL;
	size_t len = 0;
	int fds[2];
	*late = false;
	snprintf(path, sizeof(path), "%s/.thumbfs/status", mnt);
	if (pipe(fds))
		return NULL;
	pid_t child = fork();
	if (child == 0) {
		close(fds[0]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t got = 0;
		while (fd >= 0 && (got = read(fd, chunk, sizeof(chunk))) > 0)
			if (write(fds[1], chunk, (size_t)got) != got)
				_exit(1);
		_exit(fd < 0 || got < 0);
	}
	close(fds[1]);
	FILE *m = child > 0 ? open_memstream(&buf, &len) : NULL;
	struct pollfd p = {fds[0], POLLIN, 0};
	time_t end = time(NULL) + CHECK_TIMEOUT_S;
	ssize_t got = 1;
	while (m && got > 0) {
		int left = (int)(end - time(NULL));
		if (left <= 0 || poll(&p, 1, left * 1000) == 0) {
			*late = true;
			break;
		}
		if ((got = read(fds[0], chunk, sizeof(chunk))) > 0)
			fwrite(chunk, 1, (size_t)got, m);
	}
	close(fds[0]);
	int status = 1;
	if (child > 0) {
		if (*late)
			kill(child, SIGKILL);
		waitpid(child, &status, 0);
	}
	if (m && fclose(m) == 0 && !*late && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0)
		return buf;
	free(buf);
	return NULL;
}

int fs_check_command(int argc, char **argv)
{
	if (argc < 1 || argv[0][0] == '-')
		return usage();
	for (int i = 1; i < argc; i++) {
		size_t k = 0;
		while (k < N_LIMITS && strcmp(argv[i], limits[k].flag))
			k++;
		if (k == N_LIMITS || i + 1 >= argc ||
		    parse_limit(&limits[k], argv[++i])) {
			fprintf(stderr, "thumbfs check: bad argument '%s'\n",
				argv[i]);
			return usage();
		}
	}
	struct cfg cfg;
	char err[CFG_ERR_MAX], what[1200], perf[600] = "", v[600];
	cfg_init(&cfg);
	if (cfg_load(&cfg, argv[0], err, sizeof(err))) {
		snprintf(what, sizeof(what), "cannot read the config: %s", err);
		return say(UNKNOWN, what, "");
	}
	/* who owns the catalog, read without its lock: a check never holds
	 * up a mount that starts */
	char holder[600] = "";
	long pid = 0;
	int ret = fs_owner_peek(cfg.catalog_dir, &pid, holder, sizeof(holder));
	bool alive =
	    ret == 0 && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
	if (ret && ret != -ENOENT) {
		snprintf(what, sizeof(what), "cannot read %s/owner: %s",
			 cfg.catalog_dir, strerror(-ret));
		return say(UNKNOWN, what, "");
	}
	if (!alive) {
		snprintf(what, sizeof(what),
			 "no mount is running on %s: images written nowhere "
			 "reach the web app",
			 argv[0]);
		return say(CRITICAL, what, "");
	}
	if (strncmp(holder, "mounted on ", 11)) {
		snprintf(what, sizeof(what), "pid %ld is %s, not a mount", pid,
			 holder);
		return say(WARNING, what, "");
	}
	bool late;
	char *text = read_status(holder + 11, &late);
	if (!text) {
		snprintf(what, sizeof(what),
			 "pid %ld's mount at %s does not answer: %s", pid,
			 holder + 11,
			 late ? "its status file took over 20 s"
			      : "its .thumbfs/status cannot be read");
		return say(CRITICAL, what, "");
	}
	int state = OK;
	size_t wl = 0, pl = 0;
	what[0] = '\0';
#define ADD(buf, len, ...)                                                     \
	((len) += (size_t)snprintf(                                            \
	     (buf) + (len), (len) < sizeof(buf) ? sizeof(buf) - (len) : 0,     \
	     __VA_ARGS__),                                                     \
	 (len) = (len) < sizeof(buf) ? (len) : sizeof(buf) - 1)
	/* the store refusing, PostgreSQL away: nothing reaches the app */
	if (field(text, "store", v, sizeof(v)) && strstr(v, " refused: ")) {
		state = CRITICAL;
		ADD(what, wl, "store %s; ", v);
	}
	bool pg = field(text, "postgres", v, sizeof(v)) && strncmp(v, "off", 3);
	/* (not "reading every row of PostgreSQL": a first sync, working) */
	if (pg && !strncmp(v, "waiting", 7)) {
		state = CRITICAL;
		ADD(what, wl, "PostgreSQL %s; ", v);
	}
	for (size_t k = 0; k < N_LIMITS; k++) {
		struct limit *l = &limits[k];
		const char *lack =
		    !field(text, l->label, v, sizeof(v)) ? l->label : NULL;
		l->value = lack ? 0 : strtoll(v, NULL, 10);
		if (!lack && l->label2) {
			if (field(text, l->label2, v, sizeof(v))) {
				long long v2 = strtoll(v, NULL, 10);
				l->value = v2 > l->value ? v2 : l->value;
			} else {
				lack = l->label2;
			}
		}
		if (lack) {
			free(text);
			snprintf(what, sizeof(what),
				 "the status file has no '%s'", lack);
			return say(UNKNOWN, what, "");
		}
		int s = l->value >= l->crit   ? CRITICAL
			: l->value >= l->warn ? WARNING
					      : OK;
		if (s > OK)
			ADD(what, wl, "%s %lld%s (limit %lld); ", l->perf,
			    l->value, l->unit,
			    s == CRITICAL ? l->crit : l->warn);
		state = s > state ? s : state;
		ADD(perf, pl, "%s%s=%lld%s;%lld;%lld;0;", k ? " " : "", l->perf,
		    l->value, l->unit, l->warn, l->crit);
	}
	long long queue = 0;
	static const char *const queues[] = {"queue ingest", "queue delete",
					     "queue postgres", "queue move"};
	for (size_t k = 0; k < 4; k++)
		if (field(text, queues[k], v, sizeof(v)))
			queue += strtoll(v, NULL, 10);
	ADD(perf, pl, " queue=%lld;;;0;", queue);
	if (field(text, "images uploaded", v, sizeof(v)))
		ADD(perf, pl, " images=%s;;;0;", v);
	free(text);
	if (state == OK)
		ADD(what, wl, "images reach the store%s; %lld waiting",
		    pg ? " and PostgreSQL" : "", queue);
	else if (wl >= 2 && what[wl - 2] == ';')
		what[wl - 2] = '\0';
#undef ADD
	return say(state, what, perf);
}
