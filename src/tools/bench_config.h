/*
 * bench_config.h - multibox-bench's small config vocabulary: the option
 * names of the semantics document mapped to the core's enums, used to parse
 * the benchmark's loss flags and to spell a full config out in the dumped
 * request.  No I/O beyond the FILE the caller passes; no allocation.
 */
#ifndef MBX_BENCH_CONFIG_H
#define MBX_BENCH_CONFIG_H

#include <stdio.h>

#include "multibox/multibox.h"

/*
 * Applies one "--key value" flag to cfg.  key is the semantics' config key
 * with dashes or underscores ("loc-loss", "neg_pos_ratio", ...).  Returns 1
 * when applied, 0 when key is not a config key, -1 (with a message in err)
 * when value is invalid for that key.  Ranges are checked later by
 * mbx_config_validate().
 */
int bench_config_apply(mbx_config *cfg, const char *key, const char *value, char *err,
                       size_t err_len);

/* The config keys bench_config_apply() knows, one per line, for --help. */
void bench_config_print_keys(FILE *out);

/* Writes cfg as a JSON object with every key of the semantics table spelled out. */
void bench_config_write_json(FILE *out, const mbx_config *cfg);

/* One-line summary of the options that matter for speed: "bipartite=... loc_loss=...". */
void bench_config_write_summary(FILE *out, const mbx_config *cfg);

#endif
