/*
 * users.h - who wrote a file, by name (users.c).
 */
#ifndef FS_USERS_H
#define FS_USERS_H

#include <stddef.h>
#include <sys/types.h>

struct cfg;

/* The name of user uid into out, or the number when it has none. */
void cfg_user_name(uid_t uid, char *out, size_t n);

/* [fs] uploaded_by for the writer uid into out: "%u" is the user's name
 * (the number when the uid has none), "%%" a percent sign. */
void cfg_uploaded_by(const struct cfg *cfg, uid_t uid, char *out, size_t n);

#endif
