/* test_path.c - the tree's rules: ids, dates, hidden and reserved names. */
#include <errno.h>
#include <string.h>

#include "fs/path.h"
#include "tests/unit/check.h"

static struct fs_rules rules;

static struct fs_path parse(const char *path)
{
	struct fs_path p;
	fs_path_parse(&rules, path, &p);
	return p;
}

int main(void)
{
	char name[300];
	CHECK_INT(fs_rules_init(&rules, "^[A-Za-z0-9_-]{1,64}$",
				".DS_Store,Thumbs.db,desktop.ini,~$*"),
		  0);
	/* a part of the tree on a command line (retry, verify) */
	struct fs_scope sc;
	char err[512];
	CHECK_INT(fs_scope_parse("/mnt/a/patients/P1/2025-11-10/x y.jpg", &sc,
				 err, sizeof(err)),
		  0);
	CHECK(sc.parts == 3 && !strcmp(sc.patient, "P1") &&
	      !strcmp(sc.date, "2025-11-10") && !strcmp(sc.name, "x y.jpg"));
	CHECK_INT(fs_scope_parse("patients/P1/", &sc, err, sizeof(err)), 0);
	CHECK(sc.parts == 1 && !strcmp(sc.patient, "P1") && !sc.date[0]);
	/* a long id was cut to 64 bytes by sscanf, and named another's */
	char longid[200];
	snprintf(longid, sizeof(longid), "patients/%0100d/2025-11-10", 7);
	CHECK_INT(fs_scope_parse(longid, &sc, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "patient id is too long"));
	CHECK_INT(fs_scope_parse("patients//2025-11-10", &sc, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(
	    fs_scope_parse("patients/P1/2025-11-10x", &sc, err, sizeof(err)),
	    -EINVAL);
	CHECK_INT(
	    fs_scope_parse("patients/P1/2025-11-10/a/b", &sc, err, sizeof(err)),
	    -EINVAL);
	CHECK_INT(fs_scope_parse("mypatients/P1", &sc, err, sizeof(err)),
		  -EINVAL);
	CHECK_INT(fs_scope_parse("patients", &sc, err, sizeof(err)), -EINVAL);
	CHECK(fs_valid_date("2025-11-10"));
	CHECK(fs_valid_date("2024-02-29"));
	CHECK(!fs_valid_date("2023-02-29"));
	CHECK(!fs_valid_date("2025-13-01"));
	CHECK(!fs_valid_date("2025-04-31"));
	CHECK(!fs_valid_date("2025-1-10"));
	CHECK(!fs_valid_date("2025-11-10x"));
	CHECK(!fs_valid_date("0000-01-01"));

	CHECK(parse("/").kind == FS_ROOT);
	CHECK(parse("/patients").kind == FS_PATIENTS);
	CHECK(parse("/patients/P-1_a").kind == FS_PATIENT);
	CHECK(parse("/patients/P1/2025-11-10").kind == FS_BATCH);
	struct fs_path p = parse("/patients/P1/2025-11-10/IMG 1.jpg");
	CHECK(p.kind == FS_FILE && !p.local && !p.thumb);
	CHECK(!strcmp(p.patient, "P1") && !strcmp(p.date, "2025-11-10") &&
	      !strcmp(p.name, "IMG 1.jpg"));
	CHECK(parse("/.thumbfs/status").kind == FS_STATUS);

	/* folders named as neither, and what is in them: held */
	p = parse("/patients/bad!id");
	CHECK(p.kind == FS_HELD && p.held && p.held_at == 2 &&
	      strstr(p.why, "patient id 'bad!id'"));
	p = parse("/patients/bad!id/2025-11-10/x.jpg");
	CHECK(p.kind == FS_FILE && p.held && p.local && p.held_at == 2 &&
	      !strcmp(p.name, "x.jpg"));
	p = parse("/patients/P1/2025-02-30");
	CHECK(p.kind == FS_HELD && p.held_at == 3 && strstr(p.why, "date"));
	p = parse("/patients/P1/10.11.2025/a/b/c.jpg");
	CHECK(p.kind == FS_FILE && p.held && p.held_at == 3 &&
	      !strcmp(p.name, "c.jpg"));
	p = parse("/patients/P1/2025-11-10/sub/x.jpg");
	CHECK(p.kind == FS_FILE && p.held && p.held_at == 4 && p.local &&
	      !p.thumb);
	p = parse("/patients/P1/2025-11-10/sub/\xff.jpg");
	CHECK(p.kind == FS_INVALID && p.err == -EILSEQ);
	p = parse("/photo.jpg");
	CHECK(p.kind == FS_INVALID && p.err == -EPERM);
	p = parse("/patients/../etc");
	CHECK(p.kind == FS_INVALID && p.err == -EINVAL);
	memcpy(name, "/patients/", 10);
	memset(name + 10, 'a', 256);
	name[266] = '\0';
	CHECK(parse(name).err == -ENAMETOOLONG);

	/* names become keys and PostgreSQL text: UTF-8, no control bytes */
	CHECK(parse("/patients/P1/2025-11-10/R\xc3\xb6ntgen \xe2\x82\xac "
		    "\xf0\x9f\x93\xb7.jpg")
		  .kind == FS_FILE);
	static const char *const bad_utf8[] = {
	    "\xff.jpg",		    /* not a lead byte */
	    "\xc3.jpg",		    /* cut short */
	    "\xc0\xaf.jpg",	    /* overlong '/' */
	    "\xe0\x80\xaf.jpg",	    /* overlong, three bytes */
	    "\xed\xa0\x80.jpg",	    /* a UTF-16 surrogate */
	    "\xf4\x90\x80\x80.jpg", /* above U+10FFFF */
	};
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(*bad_utf8); i++) {
		snprintf(name, sizeof(name), "/patients/P1/2025-11-10/%s",
			 bad_utf8[i]);
		p = parse(name);
		CHECK(p.kind == FS_INVALID && p.err == -EILSEQ);
	}
	p = parse("/patients/P1/2025-11-10/a\nb.jpg");
	CHECK(p.kind == FS_INVALID && p.err == -EINVAL);
	p = parse("/patients/P1/2025-11-10/a\x7f.jpg");
	CHECK(p.kind == FS_INVALID && p.err == -EINVAL);

	CHECK(parse("/patients/P1/2025-11-10/.IMG.jpg.Ab12Cd").local);
	CHECK(parse("/patients/P1/2025-11-10/.DS_Store").local);
	CHECK(parse("/patients/P1/2025-11-10/Thumbs.db").local);
	CHECK(parse("/patients/P1/2025-11-10/~$report.doc").local);
	CHECK(parse("/patients/P1/2025-11-10/a_thumb.jpg").thumb);
	CHECK(parse("/patients/P1/2025-11-10/a_thumb").thumb);
	CHECK(!parse("/patients/P1/2025-11-10/a_thumbs.jpg").thumb);
	CHECK(!parse("/patients/P1/2025-11-10/thumb.jpg").thumb);

	fs_thumb_name("IMG_1.JPG", ".jpg", name, sizeof(name));
	CHECK(!strcmp(name, "IMG_1_thumb.jpg"));
	fs_thumb_name("scan.v2.png", ".png", name, sizeof(name));
	CHECK(!strcmp(name, "scan.v2_thumb.png"));
	fs_thumb_name("noext", ".jpg", name, sizeof(name));
	CHECK(!strcmp(name, "noext_thumb.jpg"));
	fs_rules_release(&rules);
	return check_report("test_path");
}
