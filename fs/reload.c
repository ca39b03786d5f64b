/* reload.c - SIGHUP: the config read again; what can change while mounted
 * is applied, every other change is logged as waiting for a remount. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "db/catalog.h"
#include "db/queue.h"
#include "fs/cache.h"
#include "fs/log.h"
#include "fs/reload.h"
#include "fs/thumbfs.h"
#include "s3/s3.h"
#include "thumb/worker.h"

/* The keys applied while mounted; any other change waits for a remount. */
static const char *const live_keys[] = {"store.access_key_id",
					"store.secret_access_key",
					"thumbnail.max_width",
					"thumbnail.max_height",
					"thumbnail.jpeg_quality",
					"thumbnail.max_pixels",
					"thumbnail.max_bytes",
					"thumbnail.worker_memory",
					"thumbnail.worker_cpu_s",
					"fs.retry_max_s",
					"fs.unmount_drain_s",
					"cache.max_bytes",
					"log.file"};

struct changes {
	const char *path;
	int live, later;
	bool log_file;
};

static bool is_live(const char *section, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "%s.%s", section, name);
	for (size_t i = 0; i < sizeof(live_keys) / sizeof(live_keys[0]); i++)
		if (!strcmp(key, live_keys[i]))
			return true;
	return false;
}

static void on_change(const char *section, const char *name, void *arg)
{
	struct changes *c = arg;
	if (is_live(section, name)) {
		/* the value is not said: it may be a secret */
		log_info("'%s' in [%s] changed: applied", name, section);
		c->live++;
		if (!strcmp(section, "log"))
			c->log_file = true;
		return;
	}
	log_warn("'%s' in [%s] changed in %s: it takes effect at the next "
		 "mount",
		 name, section, c->path);
	c->later++;
}

struct fs_live fs_live(struct thumbfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_live live = {fs->thumb, fs->cfg.retry_max_s,
			       fs->cfg.unmount_drain_s};
	pthread_mutex_unlock(&fs->lock);
	return live;
}

static void reload(struct thumbfs *fs)
{
	struct cfg *now = malloc(sizeof(*now));
	char err[CFG_ERR_MAX];
	if (!now) {
		log_error("reload of %s: out of memory", fs->config_path);
		return;
	}
	cfg_init(now);
	int ret = cfg_load(now, fs->config_path, err, sizeof(err));
	if (ret == 0) {
		ret = s3_set_credentials(fs->store, now->access_key_id,
					 now->secret_access_key, NULL);
		snprintf(err, sizeof(err), "%s",
			 ret == -EINVAL ? "no credentials" : strerror(-ret));
	}
	if (ret == 0 && strcmp(now->log_file, fs->cfg.log_file)) {
		ret = log_to_file(now->log_file[0] ? now->log_file : NULL);
		snprintf(err, sizeof(err), "cannot open log file '%s': %s",
			 now->log_file, strerror(-ret));
	}
	if (ret) {
		OPENSSL_cleanse(now, sizeof(*now));
		free(now);
		log_error("reload of %s failed: %s; the old settings stay",
			  fs->config_path, err);
		return;
	}
	log_reopen(); /* after logrotate */
	struct changes c = {.path = fs->config_path};
	cfg_changes(&fs->cfg, now, on_change, &c);
	pthread_mutex_lock(&fs->lock);
	fs->thumb.max_width = now->max_width;
	fs->thumb.max_height = now->max_height;
	fs->thumb.jpeg_quality = now->jpeg_quality;
	fs->thumb.max_pixels = now->max_pixels;
	fs->thumb.max_bytes = now->max_bytes;
	fs->cfg.retry_max_s = now->retry_max_s;
	fs->cfg.unmount_drain_s = now->unmount_drain_s;
	/* only the runner that reloads reads these two, after this */
	memcpy(fs->cfg.access_key_id, now->access_key_id,
	       sizeof(now->access_key_id));
	memcpy(fs->cfg.secret_access_key, now->secret_access_key,
	       sizeof(now->secret_access_key));
	memcpy(fs->cfg.log_file, now->log_file, sizeof(now->log_file));
	fs->store_refused[0] = '\0';
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
	fs_cache_set_bound(fs->cache, now->cache_max_bytes);
	/* (for the workers spawned from now on) */
	thumb_worker_setup("/proc/self/exe", now->worker_memory,
			   now->worker_cpu_s);
	OPENSSL_cleanse(now, sizeof(*now));
	free(now);
	log_info("reloaded %s (%d change(s) applied, %d for the next mount); "
		 "the store's credentials are read again",
		 fs->config_path, c.live, c.later);
	int n = db_jobs_unpark(fs->db, NULL, NULL, NULL);
	if (n > 0)
		log_info("%d job(s) that had failed for good are tried again",
			 n);
}

void fs_reload(struct thumbfs *fs)
{
	static pthread_mutex_t one = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&one); /* two SIGHUPs, two runners: in turn */
	reload(fs);
	pthread_mutex_unlock(&one);
}
