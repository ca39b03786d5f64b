/* confine.c - what a thumbnail worker may not do, as a seccomp filter
 * (libseccomp): start a program, reach the network, or make, change or
 * remove a file. A decoder needs none of these; a hostile file that
 * takes a decoder over gets EPERM for each. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include <seccomp.h>

#include "thumb/worker.h"

/* denied whatever their arguments */
static const char *const denied[] = {
    "execve",	 "execveat",	"socket",	"connect",	"bind",
    "listen",	 "accept",	"accept4",	"unlink",	"unlinkat",
    "rename",	 "renameat",	"renameat2",	"mkdir",	"mkdirat",
    "rmdir",	 "creat",	"truncate",	"ftruncate",	"link",
    "linkat",	 "symlink",	"symlinkat",	"chmod",	"fchmod",
    "fchmodat",	 "chown",	"fchown",	"fchownat",	"lchown",
    "mknod",	 "mknodat",	"utimensat",	"setxattr",	"fsetxattr",
    "lsetxattr", "removexattr", "fremovexattr", "lremovexattr",
};

/* open(2)'s flags are argument 1, openat(2)'s argument 2: denied when
 * they ask to write or to create */
static int deny_writes(scmp_filter_ctx ctx, const char *call, unsigned arg)
{
	int nr = seccomp_syscall_resolve_name(call);
	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	struct scmp_arg_cmp cmp[] = {
	    {arg, SCMP_CMP_MASKED_EQ, O_ACCMODE, O_WRONLY},
	    {arg, SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDWR},
	    {arg, SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT},
	};
	for (size_t i = 0; i < sizeof(cmp) / sizeof(cmp[0]); i++) {
		int r = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), nr,
					       1, &cmp[i]);
		if (r)
			return r;
	}
	return 0;
}

int thumb_worker_confine(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int r = 0;
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -ENOMEM;
	}
	for (size_t i = 0; !r && i < sizeof(denied) / sizeof(denied[0]); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	if (!r)
		r = deny_writes(ctx, "open", 1);
	if (!r)
		r = deny_writes(ctx, "openat", 2);
	if (!r)
		r = seccomp_load(ctx); /* sets no_new_privs first */
	seccomp_release(ctx);
	if (r)
		snprintf(err, errlen, "a seccomp filter could not be set: %s",
			 strerror(-r));
	return r;
}
