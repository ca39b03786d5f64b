/*
 * worker.h - thumbnails made in a worker process: a decoder that crashes,
 * runs out of memory or loops on a hostile file loses that file's
 * thumbnail, never the process that asked. Each thread that asks keeps
 * one worker (spawned at its first request, again after one dies, and
 * after THUMB_WORKER_JOBS requests), a fresh exec of the program with
 * THUMB_WORKER_ARG, its memory bounded (RLIMIT_DATA) and each request's
 * CPU time too (RLIMIT_CPU), and every request given a wall-clock
 * deadline after which the worker is killed.
 */
#ifndef THUMB_WORKER_H
#define THUMB_WORKER_H

#include <stdint.h>

#include "thumb/thumb.h"

/* argv[1] of a worker: main() hands such a process to
 * thumb_worker_main() before anything else. */
#define THUMB_WORKER_ARG  "--thumb-worker"
#define THUMB_WORKER_JOBS 1000

/* Where workers come from (exe, normally "/proc/self/exe" read once) and
 * their limits: memory bytes (0: none), seconds of CPU per request (the
 * wall-clock deadline is twice that, plus 10 s). Call before the first
 * thumb_worker_make, or again to change them for workers spawned later. */
void thumb_worker_setup(const char *exe, uint64_t memory, int cpu_s);

/* thumb_make_fd() of fd in this thread's worker. The file's own failures
 * (and a worker that crashed, was killed or timed out on it: "the decoder
 * crashed on this file (Segmentation fault)") are -errno with err, as
 * thumb_make_fd's; -ECHILD when no worker could be started (not the
 * file's fault: try again later). */
int thumb_worker_make(int fd, const struct thumb_opts *opts,
		      struct thumb_result *res, char *err, size_t errlen);

/* This thread's worker ended (also done at the thread's exit). */
void thumb_worker_release(void);

/* A worker's life: argv as spawned (argv[1] THUMB_WORKER_ARG, argv[2]
 * the memory bound, argv[3] the CPU seconds); requests on fd 3 until it
 * closes. The process's exit status. */
int thumb_worker_main(int argc, char **argv);

/* The calling process confined (confine.c): starting a program, the
 * network, and making, changing or removing files are EPERM from then
 * on. 0, or -errno with err (no filter set). */
int thumb_worker_confine(char *err, size_t errlen);

#endif
