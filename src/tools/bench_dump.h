/*
 * bench_dump.h - writes multibox-bench's generated inputs as a complete
 * /v1/loss request body (api-contract.md), so that multibox-loss, the
 * service and bench/torchvision_loss.py can all be run on exactly the bytes
 * the benchmark timed.  Tensors are {"shape", "dtype": "float32", "b64"}
 * (little-endian float32, as the contract says), GT boxes nested arrays
 * printed with 9 significant digits (exact for float32), the config with
 * every key spelled out.
 */
#ifndef MBX_BENCH_DUMP_H
#define MBX_BENCH_DUMP_H

#include <stddef.h>

#include "multibox/multibox.h"

/*
 * Writes the request for cfg and batch to path (created or truncated).  The
 * request asks for b64 dense gradients and the matches, no per-image output.
 * Returns 0, or -1 with a message in err on an I/O error (a partial file may
 * remain).  Assumes a little-endian host.
 */
int bench_dump_request(const char *path, const mbx_config *cfg, const mbx_batch *batch,
                       char *err, size_t err_len);

#endif
