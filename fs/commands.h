/*
 * commands.h - the subcommands (commands.c): thumbfs schema, presign,
 * backfill, retry, verify and check (check.c).
 */
#ifndef FS_COMMANDS_H
#define FS_COMMANDS_H

/* If argv[1] names a subcommand, run it with the arguments after it and
 * return its exit status (2 for wrong arguments); else -1: a mount. */
int fs_command(int argc, char **argv);

#endif
