/*
 * bench_dump.c - renders a benchmark batch as a /v1/loss request body on a
 * FILE, streaming: the base64 of the tensors is produced in small blocks, so
 * a 30 MB request needs no 30 MB buffer.  It never modifies the batch.
 */
#include "bench_dump.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench_config.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the standard (padded) base64 of n bytes. */
static void write_base64(FILE *out, const unsigned char *p, size_t n)
{
    char block[4096];
    size_t used = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        block[used++] = b64_alphabet[v >> 18];
        block[used++] = b64_alphabet[(v >> 12) & 63];
        block[used++] = b64_alphabet[(v >> 6) & 63];
        block[used++] = b64_alphabet[v & 63];
        if (used == sizeof block) {
            fwrite(block, 1, used, out);
            used = 0;
        }
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        block[used++] = b64_alphabet[v >> 18];
        block[used++] = b64_alphabet[(v >> 12) & 63];
        block[used++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        block[used++] = '=';
    }
    fwrite(block, 1, used, out);
}

static void write_tensor(FILE *out, const float *data, const int64_t *shape, int rank)
{
    size_t count = 1;
    fprintf(out, "{\"shape\": [");
    for (int i = 0; i < rank; i++) {
        fprintf(out, "%s%lld", i ? ", " : "", (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    fprintf(out, "], \"dtype\": \"float32\", \"b64\": \"");
    write_base64(out, (const unsigned char *)data, count * sizeof(float));
    fprintf(out, "\"}");
}

int bench_dump_request(const char *path, const mbx_config *cfg, const mbx_batch *batch,
                       char *err, size_t err_len)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        snprintf(err, err_len, "--dump %s: %s", path, strerror(errno));
        return -1;
    }
    const int64_t B = batch->batch, A = batch->num_anchors, C = batch->num_classes;
    fprintf(out, "{\"anchors\": ");
    write_tensor(out, batch->anchors, (const int64_t[]){A, 4}, 2);
    fprintf(out, ",\n\"loc\": ");
    write_tensor(out, batch->loc, (const int64_t[]){B, A, 4}, 3);
    fprintf(out, ",\n\"conf\": ");
    write_tensor(out, batch->conf, (const int64_t[]){B, A, C}, 3);
    fprintf(out, ",\n\"targets\": [");
    for (int64_t i = 0; i < B; i++) {
        const mbx_image_targets *t = &batch->targets[i];
        fprintf(out, "%s\n {\"boxes\": [", i ? "," : "");
        for (int64_t g = 0; g < t->num_boxes; g++) {
            const float *b = t->boxes + 4 * g;
            fprintf(out, "%s[%.9g, %.9g, %.9g, %.9g]", g ? ", " : "", (double)b[0], (double)b[1],
                    (double)b[2], (double)b[3]);
        }
        fprintf(out, "], \"labels\": [");
        for (int64_t g = 0; g < t->num_boxes; g++)
            fprintf(out, "%s%lld", g ? ", " : "", (long long)t->labels[g]);
        fprintf(out, "]}");
    }
    fprintf(out, "],\n\"config\": ");
    bench_config_write_json(out, cfg);
    fprintf(out, ",\n\"outputs\": {\"gradients\": true, \"per_image\": false, \"matches\": true, "
                 "\"tensor_format\": \"b64\"}}\n");
    int failed = ferror(out);
    if (fclose(out) != 0 || failed) {
        snprintf(err, err_len, "--dump %s: write failed", path);
        return -1;
    }
    return 0;
}
