/* test_log.c - a kind of line said at most once a minute (log_say_now),
 * with how many were not. */
#include <stdio.h>
#include <string.h>

#include "fs/log.h"
#include "tests/unit/check.h"

static const char RULE_A[] = "rule a", RULE_B[] = "rule b";

int main(void)
{
	unsigned more = 99;
	time_t t = 1000000;
	CHECK(log_say_now("create of", RULE_A, t, &more) && more == 0);
	/* the same kind within the minute: not said, counted */
	CHECK(!log_say_now("create of", RULE_A, t + 1, &more));
	CHECK(!log_say_now("create of", RULE_A, t + 59, &more));
	/* another rule, or another operation, is another kind */
	CHECK(log_say_now("create of", RULE_B, t + 2, &more) && more == 0);
	CHECK(log_say_now("mkdir of", RULE_A, t + 2, &more) && more == 0);
	/* a minute on: said, with the two not said */
	CHECK(log_say_now("create of", RULE_A, t + 60, &more) && more == 2);
	CHECK(!log_say_now("create of", RULE_A, t + 61, &more));
	CHECK(log_say_now("create of", RULE_A, t + 200, &more) && more == 1);
	/* more kinds than slots: the oldest goes, each new one is said */
	char ops[40][16];
	for (int i = 0; i < 40; i++) {
		snprintf(ops[i], sizeof(ops[i]), "op%d", i);
		CHECK(log_say_now(ops[i], RULE_A, t + 300 + i, &more) &&
		      more == 0);
	}
	CHECK(!log_say_now("op39", RULE_A, t + 345, &more));
	return check_report("test_log");
}
