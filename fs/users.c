/* users.c - who wrote a file, by name: a uid's user name (looked up
 * through NSS, kept a minute), and [fs] uploaded_by made of it. */
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "fs/config.h"
#include "fs/users.h"

/* [fs] uploaded_by for the writer uid: "%u" is the user's name (the uid
 * itself when it has none), "%%" a percent sign. */
/* The names last looked up, for a minute: getpwuid_r() may ask NSS (LDAP,
 * sssd) over the network, and every close() of a written file wants one. */
#define NAMES_KEPT 16
static struct {
	uid_t uid;
	time_t at; /* 0: empty */
	char name[64];
} names[NAMES_KEPT];
static unsigned names_next;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

void cfg_user_name(uid_t uid, char *out, size_t n)
{
	char buf[1024], name[64];
	struct passwd pw, *res = NULL;
	time_t now = time(NULL);
	pthread_mutex_lock(&names_lock);
	for (int i = 0; i < NAMES_KEPT; i++)
		if (names[i].at && names[i].uid == uid &&
		    now - names[i].at < 60) {
			snprintf(out, n, "%s", names[i].name);
			pthread_mutex_unlock(&names_lock);
			return;
		}
	pthread_mutex_unlock(&names_lock);
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(name, sizeof(name), "%s", pw.pw_name);
	else
		snprintf(name, sizeof(name), "%u", (unsigned)uid);
	pthread_mutex_lock(&names_lock);
	unsigned i = names_next++ % NAMES_KEPT;
	names[i].uid = uid;
	names[i].at = now;
	snprintf(names[i].name, sizeof(names[i].name), "%s", name);
	pthread_mutex_unlock(&names_lock);
	snprintf(out, n, "%s", name);
}

void cfg_uploaded_by(const struct cfg *cfg, uid_t uid, char *out, size_t n)
{
	char name[64];
	size_t len = 0;
	cfg_user_name(uid, name, sizeof(name));
	for (const char *t = cfg->uploaded_by; *t && len + 1 < n; t++) {
		if (t[0] == '%' && (t[1] == 'u' || t[1] == '%')) {
			const char *s = t[1] == 'u' ? name : "%";
			len += (size_t)snprintf(out + len, n - len, "%s", s);
			if (len >= n)
				len = n - 1;
			t++;
		} else {
			out[len++] = *t;
		}
	}
	out[len] = '\0';
}
