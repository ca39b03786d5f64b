/* test_config.c - a good file, and every kind of mistake named with its
 * line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/config.h"
#include "fs/users.h"
#include "fs/template.h"
#include "tests/unit/check.h"

static char path[64];

static int load(const char *text, struct cfg *cfg, char *err, size_t n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -EIO;
	fputs(text, f);
	fclose(f);
	cfg_init(cfg);
	return cfg_load(cfg, path, err, n);
}

int main(void)
{
	struct cfg cfg;
	char err[1024], key[256];
	int fd;
	snprintf(path, sizeof(path), "/tmp/thumbfs-cfg-XXXXXX");
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);

	CHECK_INT(load("[store]\nurl = s3://photos\nendpoint = "
		       "http://127.0.0.1:9000\npath_style = false\n"
		       "[catalog]\ndir = /var/lib/thumbfs\n"
		       "[thumbnail]\njpeg_quality = 90\n[fs]\nworkers = 4\n",
		       &cfg, err, sizeof(err)),
		  0);
	CHECK(!strcmp(cfg.store_url, "s3://photos"));
	CHECK(!cfg.path_style);
	CHECK_INT(cfg.jpeg_quality, 90);
	CHECK_INT(cfg.workers, 4);
	CHECK_INT(cfg.max_width, 300);
	CHECK_INT(cfg_expand(cfg.key_template, "P1", "2025-11-10", "a.jpg", key,
			     sizeof(key)),
		  0);
	CHECK(!strcmp(key, "patients/filemaker-import/images/P1/2025-11-10/"
			   "a.jpg"));
	CHECK_INT(
	    cfg_expand(cfg.key_template, "P1", "2025-11-10", "a.jpg", key, 10),
	    -ENAMETOOLONG);
	/* uploaded_by: %u is the writer's user name, or its uid */
	snprintf(cfg.uploaded_by, sizeof(cfg.uploaded_by), "%%u via thumbfs");
	cfg_uploaded_by(&cfg, 0, key, sizeof(key));
	CHECK(!strcmp(key, "root via thumbfs"));
	cfg_uploaded_by(&cfg, 4242424, key, sizeof(key));
	CHECK(!strcmp(key, "4242424 via thumbfs"));
	snprintf(cfg.uploaded_by, sizeof(cfg.uploaded_by), "100%%%% %%u");
	cfg_uploaded_by(&cfg, 0, key, 8);
	CHECK(!strcmp(key, "100% ro")); /* cut to fit, NUL-terminated */

	/* an unknown key: its name, its section and its line */
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n"
		       "colour = blue\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, ":5:") && strstr(err, "'colour'") &&
	      strstr(err, "[catalog]"));
	/* a bad number */
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n"
		       "[thumbnail]\njpeg_quality = 101\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, ":6:") && strstr(err, "jpeg_quality"));
	CHECK_INT(load("[store]\nurl = file:///x\npath_style = maybe\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, ":3:") && strstr(err, "path_style"));
	/* a missing required key */
	CHECK_INT(load("[store]\nurl = file:///x\n", &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "missing") && strstr(err, "'dir'") &&
	      strstr(err, "[catalog]"));
	/* bad values checked after parsing */
	CHECK_INT(load("[store]\nurl = http://x\n[catalog]\ndir = /x\n", &cfg,
		       err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "'url'"));
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = a/{name}/{x}\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "key_template"));
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = a/{name}.x\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "must end with /{name}"));
	CHECK_INT(
	    load("[store]\nurl = file:///x\nkey_template = {name}/{name}\n"
		 "[catalog]\ndir = /x\n",
		 &cfg, err, sizeof(err)),
	    -EINVAL);
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = a{name}\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	/* the shape of a key the template gives (verify's key-not-path) */
	CHECK(cfg_key_matches("patients/{patient}/{date}/{name}",
			      "patients/P1/2025-11-10/a.jpg"));
	CHECK(cfg_key_matches("{date}/p-{patient}/{name}",
			      "2025-11-10/p-P1/a_thumb.jpg"));
	CHECK(
	    !cfg_key_matches("patients/{patient}/{date}/{name}", "web/a.jpg"));
	CHECK(!cfg_key_matches("patients/{patient}/{date}/{name}",
			       "patients/P1/a.jpg"));
	CHECK(!cfg_key_matches("patients/{patient}/{date}/{name}",
			       "patients/P1/2025-11-10/x/a.jpg"));
	CHECK(!cfg_key_matches("{date}/p-{patient}/{name}", "2025/q-P1/a.jpg"));
	/* a template that gives two images one key (#32) */
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = {name}\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "must name {patient} and {date}"));
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = "
		       "x/{date}/{name}\n[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = "
		       "{date}/p-{patient}/{name}\n[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  0);
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = ../{name}\n"
		       "[catalog]\ndir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n[fs]\n"
		       "patient_id_pattern = ([\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "patient_id_pattern"));
	/* [fs] uid, gid, umask: names or numbers, octal */
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n[fs]\n"
		       "uid = root\ngid = 42\numask = 027\nallow_other = yes\n",
		       &cfg, err, sizeof(err)),
		  0);
	CHECK(cfg.show_uid == 0 && cfg.show_gid == 42);
	CHECK_INT((int)cfg.show_umask, 027);
	CHECK(cfg.allow_other);
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n", &cfg,
		       err, sizeof(err)),
		  0);
	CHECK(cfg.show_uid == -1 && cfg.show_gid == -1 && !cfg.allow_other);
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n[fs]\n"
		       "uid = no-such-user-thumbfs\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "'uid'") && strstr(err, "no-such-user-thumbfs"));
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n[fs]\n"
		       "gid = no-such-group-thumbfs\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "'gid'"));
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n[fs]\n"
		       "umask = 0999\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "'umask'") && strstr(err, "0999"));
	CHECK_INT(load("[store]\nurl = file:///x\ndelete = maybe\n[catalog]\n"
		       "dir = /x\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, "'delete'") && strstr(err, "keep"));
	CHECK_INT(load("[store]\nurl = file:///x\ndelete = keep\n[catalog]\n"
		       "dir = /x\n",
		       &cfg, err, sizeof(err)),
		  0);
	CHECK(!strcmp(cfg.delete_policy, "keep"));
	CHECK_INT(load("this is not ini\n", &cfg, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, ":1:"));

	/* every mistake at once, each with its line, in the file's order */
	char all[CFG_ERR_MAX];
	CHECK_INT(load("[stroe]\nurl = file:///x\nregion = eu\n"
		       "[store]\nurl = http://x\nendpoit = http://y\n"
		       "dsn = host=db\n[catalog]\ndir = relative\n"
		       "[fs]\nuid = no-such-user-thumbfs\nworkers = lots\n"
		       "just words\n[cache\n[thumbnail]\nmax_bytes = 10Q\n"
		       "[cache]\nmax_bytes = -1\n[audit]\nmax_bytes = 1\n",
		       &cfg, all, sizeof(all)),
		  -EINVAL);
	printf("%s\n", all);
	const char *want[] = {
	    ":1: unknown section [stroe]; did you mean [store]?",
	    ":5: 'url' in [store] must be file:///DIR or s3://BUCKET",
	    ":6: unknown key 'endpoit' in [store]; did you mean 'endpoint'?",
	    ":7: 'dsn' is not a key of [store]; it belongs in [postgres]",
	    ":9: 'dir' in [catalog] must be an absolute path, not 'relative'",
	    ":11: 'uid' in [fs] must be a user name or number",
	    ":12: 'workers' in [fs] must be a whole number from 1 to 64, not "
	    "'lots'",
	    ":13: not an INI line",
	    ":14: a section header needs its ']'",
	    ":16: 'max_bytes' in [thumbnail] must be a size from 1 to 1024T",
	    ":18: 'max_bytes' in [cache] must be a size from 0 to 1024T",
	    ":20: 'max_bytes' in [audit] must be a size from 4K to 1T"};
	const char *at = all;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *hit = strstr(all, want[i]);
		if (!hit)
			fprintf(stderr, "missing: %s\n", want[i]);
		CHECK(hit != NULL && hit >= at); /* in order */
		if (hit)
			at = hit;
	}
	/* one unknown section is said once, not for each of its keys */
	CHECK(strstr(strstr(all, "[stroe]") + 1, "[stroe]") == NULL);
	CHECK(!strstr(all, "'region'")); /* a key of the unknown section */
	/* sizes with units */
	CHECK_INT(load("[store]\nurl = file:///x\nmultipart_threshold = 64M\n"
		       "part_size = 8MiB\n[catalog]\ndir = /x\n[cache]\n"
		       "max_bytes = 10G\n[audit]\nmax_bytes = 512k\n"
		       "[thumbnail]\nmax_bytes = 1048576\n",
		       &cfg, err, sizeof(err)),
		  0);
	CHECK(cfg.multipart_threshold == 64ULL << 20);
	CHECK(cfg.part_size == 8ULL << 20);
	CHECK(cfg.cache_max_bytes == 10ULL << 30);
	CHECK(cfg.audit_max_bytes == 512ULL << 10);
	CHECK(cfg.max_bytes == 1048576);
	/* a part larger than the threshold, and a line inih cannot hold */
	char longline[400];
	snprintf(longline, sizeof(longline),
		 "[store]\nurl = file:///x\npart_size = 1G\n[catalog]\n"
		 "dir = /x%0300d\n",
		 0);
	CHECK_INT(load(longline, &cfg, all, sizeof(all)), -EINVAL);
	CHECK(strstr(all, ":3: 'part_size' in [store] (1073741824) must not "
			  "be over 'multipart_threshold'") != NULL);
	CHECK(strstr(all, ":5: line is longer than") != NULL);
	CHECK(strstr(all, "missing required key 'dir' in [catalog]") != NULL);
	/* [log] file */
	CHECK_INT(load("[store]\nurl = file:///x\n[catalog]\ndir = /x\n"
		       "[log]\nfile = thumbfs.log\n",
		       &cfg, err, sizeof(err)),
		  -EINVAL);
	CHECK(strstr(err, ":6: 'file' in [log] must be an absolute path"));
	unlink(path);
	CHECK(cfg_load(&cfg, path, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, path) != NULL);
	return check_report("test_config");
}
