/* rowino.c - node ids of catalog rows, and the path each names
 * (rowino.h). */
#include "fs/rowino.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "db/catalog.h"
#include "fs/thumbfs.h"

#define ROWID_BITS 40
#define CHECK_BITS 22
#define THUMB_BIT  (1ull << 62)

static uint64_t check_of(const char *id)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (const unsigned char *c = (const unsigned char *)id; *c; c++)
		h = (h ^ *c) * 1099511628211ull;
	return (h ^ (h >> 32)) & ((1ull << CHECK_BITS) - 1);
}

uint64_t fs_rowino(int64_t rowid, const char *id, bool thumb)
{
	if (rowid <= 0 || rowid >= (int64_t)(1ull << ROWID_BITS))
		return 0;
	return FS_ROWINO_BIT | (thumb ? THUMB_BIT : 0) |
	       check_of(id) << ROWID_BITS | (uint64_t)rowid;
}

int fs_rowino_path(struct thumbfs *fs, uint64_t ino, char *buf, size_t size,
		   char *patient, char *date, char *name)
{
	struct db_image img;
	bool thumb = (ino & THUMB_BIT) != 0;
	int64_t rowid = (int64_t)(ino & ((1ull << ROWID_BITS) - 1));
	int ret = db_image_get_by_rowid(fs->db, rowid, &img);
	if (ret)
		return ret == -ENOENT ? -ESTALE : ret;
	if (fs_rowino(img.rowid, img.id, thumb) != ino ||
	    (thumb && !img.thumbnail_name[0]))
		return -ESTALE;
	const char *n = thumb ? img.thumbnail_name : img.name;
	int len = snprintf(buf, size, "/patients/%s/%s/%s", img.patient_id,
			   img.batch_date, n);
	if (len < 0 || (size_t)len >= size)
		return -ENAMETOOLONG;
	if (patient)
		snprintf(patient, sizeof(img.patient_id), "%s", img.patient_id);
	if (date)
		snprintf(date, sizeof(img.batch_date), "%s", img.batch_date);
	if (name)
		snprintf(name, sizeof(img.thumbnail_name), "%s", n);
	return 0;
}

uint64_t fs_rowino_at(struct thumbfs *fs, const char *patient, const char *date,
		      const char *name, bool thumb)
{
	struct db_image img;
	if (thumb ? db_image_get_by_thumb(fs->db, patient, date, name, &img)
		  : db_image_get(fs->db, patient, date, name, &img))
		return 0;
	return fs_rowino(img.rowid, img.id, thumb);
}
