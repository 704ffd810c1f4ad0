/*
 * fuzz.h - what the fuzz targets share: libFuzzer's entry point, a check
 * that aborts with a message (so a broken invariant is a crash libFuzzer
 * records, in the fuzzer and in the gcc replay alike), and the two checks
 * every target applies to a failure (a known negative code whose detail is
 * NUL-terminated) and to rendered JSON (it parses back).  Targets are plain
 * C11: built with -fsanitize=fuzzer under clang, or with replay_main.c.
 */
#ifndef MBX_FUZZ_H
#define MBX_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "multibox/multibox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                      \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* Prints a line to stderr when MBX_FUZZ_VERBOSE is set (for replaying inputs by hand). */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static inline void fuzz_note(const char *fmt, ...)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("MBX_FUZZ_VERBOSE") != NULL;
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A failure must carry a code of the error list, and detail (if filled) that code and a NUL. */
static inline void fuzz_check_failure(int rc, const mbx_detail *d)
{
    FUZZ_CHECK(rc < 0 && rc >= -(int)MBX_ERROR_COUNT, "code %d outside the error list", rc);
    FUZZ_CHECK(memchr(d->message, '\0', sizeof d->message) != NULL, "detail not NUL-terminated");
    FUZZ_CHECK(d->code == 0 || d->code == rc, "detail code %d, returned %d", d->code, rc);
}

/* Rendered text must be valid JSON of len bytes, NUL-terminated. */
static inline void fuzz_check_json(const char *text, size_t len, const char *what)
{
    json_error_t err;
    FUZZ_CHECK(text != NULL, "%s: NULL text", what);
    FUZZ_CHECK(text[len] == '\0', "%s: not NUL-terminated", what);
    FUZZ_CHECK(strlen(text) == len, "%s: length %zu but strlen %zu", what, len, strlen(text));
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL, &err);
    FUZZ_CHECK(j != NULL, "%s: invalid JSON: %s at %d:%d", what, err.text, err.line, err.column);
    json_decref(j);
}

/*
 * The input format of the OIP targets: byte 0 holds flags, bytes 1-2 the
 * Inference-Header-Content-Length (little-endian), the rest is the body.
 *   flags bit 0: render every output as JSON (force_json)
 *   flags bit 1: no header length (SIZE_MAX), the whole body is JSON
 *   flags bits 4-7: body + header_len sits at this offset from a 16-byte
 *                   boundary (0: the aligned, in-place path)
 */
#define FUZZ_OIP_FORCE_JSON 0x01
#define FUZZ_OIP_NO_HEADER 0x02

typedef struct fuzz_oip_input {
    unsigned flags;
    size_t header_len;
    uint8_t *mem;        /* free() this */
    const uint8_t *body; /* len bytes, ending exactly at the end of the allocation */
    size_t len;
} fuzz_oip_input;

/* 0 and *in filled, or -1 when the input is too short to hold the prefix. */
static inline int fuzz_oip_split(const uint8_t *data, size_t size, fuzz_oip_input *in)
{
    if (size < 3)
        return -1;
    in->flags = data[0];
    in->header_len = (in->flags & FUZZ_OIP_NO_HEADER) ? SIZE_MAX : (size_t)(data[1] | data[2] << 8);
    in->len = size - 3;
    /* The body ends where the allocation ends, so ASan sees any read past it. */
    size_t misalign = in->flags >> 4;
    size_t hl = in->header_len == SIZE_MAX ? 0 : in->header_len;
    size_t off = (misalign - hl) & 15u; /* (off + hl) % 16 == misalign */
    void *mem = NULL;
    FUZZ_CHECK(posix_memalign(&mem, 16, off + in->len ? off + in->len : 1) == 0, "out of memory");
    in->mem = mem;
    memcpy(in->mem + off, data + 3, in->len);
    in->body = in->mem + off;
    return 0;
}

#endif
