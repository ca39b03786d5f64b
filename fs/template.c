/* template.c - [store] key_template (and [postgres] batch_name) expanded
 * for an image, checked, and matched back against a key. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "fs/template.h"

/* The template's placeholders are {patient}, {date} and {name}; it must
 * name the file, and must not climb out of its prefix. */
const char *cfg_template_error(const char *t)
{
	const char *name = strstr(t, "{name}");
	/* the thumbnail's key is the image's folder with its own name */
	if (!name || strcmp(name, "{name}") || (name != t && name[-1] != '/'))
		return "must end with /{name} (and name it once)";
	if (*t == '/' || strstr(t, "..") || strstr(t, "//"))
		return "must be a relative key without '..' or '//'";
	for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
		if (strncmp(p, "{patient}", 9) && strncmp(p, "{date}", 6) &&
		    strncmp(p, "{name}", 6))
			return "knows only {patient}, {date} and {name}";
	}
	/* two images of one name in two dates or patients would share
	 * a key, and one's upload would replace the other's picture */
	if (!strstr(t, "{patient}") || !strstr(t, "{date}"))
		return "must name {patient} and {date}, so that each image "
		       "has a key of its own";
	return NULL;
}

/* The placeholder template starts with: its length, or 0. */
static size_t placeholder(const char *t)
{
	static const char *const names[] = {"{patient}", "{date}", "{name}"};
	for (int i = 0; i < 3; i++)
		if (!strncmp(t, names[i], strlen(names[i])))
			return strlen(names[i]);
	return 0;
}

bool cfg_key_matches(const char *template, const char *key)
{
	size_t p = placeholder(template);
	if (!*template)
		return !*key;
	if (!p)
		return *template == *key &&
		       cfg_key_matches(template + 1, key + 1);
	/* a placeholder takes one or more characters of one segment */
	for (size_t n = 1; key[n - 1] && key[n - 1] != '/'; n++)
		if (cfg_key_matches(template + p, key + n))
			return true;
	return false;
}

int cfg_expand(const char *template, const char *patient, const char *date,
	       const char *name, char *out, size_t n)
{
	size_t len = 0;
	for (const char *t = template; *t;) {
		const char *part = NULL;
		size_t skip = 1, plen = 1;
		if (!strncmp(t, "{patient}", 9))
			part = patient, skip = 9;
		else if (!strncmp(t, "{date}", 6))
			part = date, skip = 6;
		else if (!strncmp(t, "{name}", 6))
			part = name, skip = 6;
		if (part)
			plen = strlen(part);
		else
			part = t;
		if (len + plen >= n)
			return -ENAMETOOLONG;
		memcpy(out + len, part, plen);
		len += plen;
		t += skip;
	}
	out[len] = '\0';
	return 0;
}
