/*
 * template.h - [store] key_template (and [postgres] batch_name) expanded,
 * checked and matched back (template.c).
 */
#ifndef FS_TEMPLATE_H
#define FS_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* Why template cannot be a key template (a sentence), or NULL. */
const char *cfg_template_error(const char *t);

/* Expand template into out: {patient}, {date} and {name} are replaced.
 * -ENAMETOOLONG if it does not fit in n bytes. */
int cfg_expand(const char *template, const char *patient, const char *date,
	       const char *name, char *out, size_t n);

/* Whether key has the shape template gives a key: its text where the
 * template has text, and one or more characters other than '/' for each
 * of {patient}, {date} and {name}. */
bool cfg_key_matches(const char *template, const char *key);

#endif
