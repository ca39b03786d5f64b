/*
 * json.h - a string as JSON writes it, for the status file and verify's
 * findings.
 */
#ifndef FS_JSON_H
#define FS_JSON_H

#include <stdio.h>

/* s quoted onto f: quotes, backslashes and control characters escaped,
 * the rest as it is (UTF-8, as the names are). */
void fs_json_str(FILE *f, const char *s);

#endif
