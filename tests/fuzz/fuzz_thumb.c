/* fuzz_thumb.c - libFuzzer harness over thumb_make(), the decode entry
 * point every ingested file goes through. Run it with tests/fuzz/run. */
#include <stddef.h>
#include <stdint.h>

#include "thumb/thumb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct thumb_opts opts;
	struct thumb_result res;
	char err[256];
	thumb_opts_init(&opts);
	/* small limits, so a declared size cannot exhaust the fuzzer */
	opts.max_pixels = 1000000;
	/* a small box, so that small inputs take each format's shrink on
	 * load (scaled WebP, TIFF pages and bands, HEIF thumbnail items) */
	opts.max_width = opts.max_height = 24;
	if (thumb_make(data, size, &opts, &res, err, sizeof(err)) == 0)
		thumb_result_release(&res);
	return 0;
}
