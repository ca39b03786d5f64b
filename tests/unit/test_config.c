/* test_config.c - a good file, and every kind of mistake named with its
 * line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/config.h"
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
	CHECK_INT(cfg_key(&cfg, "P1", "2025-11-10", "a.jpg", key, sizeof(key)),
		  0);
	CHECK(!strcmp(key, "patients/filemaker-import/images/P1/2025-11-10/"
			   "a.jpg"));
	CHECK_INT(cfg_key(&cfg, "P1", "2025-11-10", "a.jpg", key, 10),
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
	CHECK_INT(load("[store]\nurl = file:///x\nkey_template = {name}\n"
		       "[catalog]\ndir = /x\n",
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
	unlink(path);
	CHECK(cfg_load(&cfg, path, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, path) != NULL);
	return check_report("test_config");
}
