/* fuzz_config.c - libFuzzer harness over the two parsers of untrusted text
 * thumbfs has besides images: the config file (cfg_load) and the path model
 * (fs_path_parse), with the store key built from what the model accepts.
 * Input: a config file, then a NUL byte, then a path. A key that could
 * leave its prefix, or a name the model accepts that is not one, traps.
 * Run it with tests/fuzz/run SECONDS config. */
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fs/config.h"
#include "fs/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond)
{
	if (!cond)
		__builtin_trap();
}

static bool valid_utf8(const char *s)
{
	while (*s) {
		size_t n = fs_utf8_char(s);
		if (!n || (unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
		s += n;
	}
	return true;
}

static void config(const uint8_t *data, size_t size)
{
	struct cfg cfg;
	char path[64], err[1024];
	int fd = memfd_create("cfg", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		cfg_init(&cfg);
		if (cfg_load(&cfg, path, err, sizeof(err)) == 0) {
			/* what a loaded config promises */
			must(cfg.catalog_dir[0] == '/');
			must(strstr(cfg.key_template, "{name}") != NULL);
			must(!strstr(cfg.key_template, ".."));
			must(cfg.key_template[0] != '/');
			must(cfg.show_umask <= 0777);
		} else {
			must(err[0] != '\0');
		}
	}
	close(fd);
}

static void model(const uint8_t *data, size_t size)
{
	static struct fs_rules rules;
	static struct cfg cfg;
	static bool ready;
	struct fs_path p;
	char path[8192], key[2048];
	if (!ready) {
		cfg_init(&cfg);
		ready = fs_rules_init(&rules, cfg.patient_id_pattern,
				      cfg.ignore) == 0;
		must(ready);
	}
	if (size + 2 > sizeof(path))
		return;
	path[0] = '/';
	memcpy(path + 1, data, size);
	path[size + 1] = '\0';
	fs_path_parse(&rules, path, &p);
	if (p.kind != FS_FILE)
		return;
	must(strlen(p.name) <= 255 && strlen(p.name) > 0);
	must(!strchr(p.name, '/'));
	must(strcmp(p.name, ".") && strcmp(p.name, ".."));
	must(valid_utf8(p.name));
	must(regexec(&rules.patient_re, p.patient, 0, NULL, 0) == 0);
	must(!strchr(p.patient, '/') && strcmp(p.patient, ".."));
	must(fs_valid_date(p.date));
	if (p.local || p.thumb)
		return;
	if (cfg_key(&cfg, p.patient, p.date, p.name, key, sizeof(key)))
		return;
	const char *prefix = "patients/filemaker-import/images/";
	must(!strncmp(key, prefix, strlen(prefix)));
	must(!strstr(key, "//") && !strstr(key, "/../") && !strstr(key, "/./"));
	/* exactly the three parts below the prefix */
	int slashes = 0;
	for (const char *k = key + strlen(prefix); *k; k++)
		slashes += *k == '/';
	must(slashes == 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t n = nul ? (size_t)(nul - data) : size;
	config(data, n);
	if (nul)
		model(nul + 1, size - n - 1);
	else
		model(data, size);
	return 0;
}
