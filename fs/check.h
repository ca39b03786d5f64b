/*
 * check.h - thumbfs check CONFIG: the state of the mount running on
 * CONFIG in one line and an exit status, as the monitoring-plugins
 * conventions ask (Nagios, Icinga, Checkmk, Zabbix).
 */
#ifndef FS_CHECK_H
#define FS_CHECK_H

/* argv: CONFIG and the threshold flags. Prints "THUMBFS OK|WARNING|
 * CRITICAL|UNKNOWN - what | perfdata"; returns 0, 1, 2 or 3. */
int fs_check_command(int argc, char **argv);

#endif
