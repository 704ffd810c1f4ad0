/*
 * test_defer.c - the codec's pieces that let several workers share one
 * /v1 request's base64 (src/codec/base64_range.c, the deferred inputs of
 * request.c, the split render of render.c), each checked against the whole
 * operation it stands for:
 *   - mbx_base64_decode_range on every slice of texts of every length up to
 *     40 bytes equals the whole decode, and fails exactly when a bad
 *     character or a misplaced '=' lies in a group the slice reads;
 *   - the bytes of a mostly zero array and their base64 text, written from
 *     its non-zero rows (mbx_dense_rows_raw_read, _b64_read) in windows of
 *     any size, are exactly the dense array's bytes and mbx_base64_encode's
 *     text of them;
 *   - every golden case with b64 float32 inputs: each image widened by
 *     mbx_request_load_input (whole, and at some rows only) equals what the
 *     plain parse decodes, bit for bit;
 *   - faults (bad characters, misplaced padding, NaN, infinity, in loc and
 *     conf, in several images at once, with a bad target box too) give
 *     exactly the plain parse's code and message;
 *   - the scan for long strings fed in random steps (one byte at a time on
 *     small bodies) finds exactly what the one-pass scan finds, on golden
 *     bodies and on strings with escapes, keys and an unterminated end, and
 *     a parse that finishes a partly fed scan answers as a plain one;
 *   - an answer rendered around holes, with the gradients' texts written
 *     from their non-zero rows, equals the whole render of the dense arrays
 *     byte for byte, and a non-finite gradient gives the same error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "helpers.h"

static uint32_t rng = 12345u;
static uint32_t next_rand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* --------------------------------------------------------- base64 slices */

static void test_decode_range(void **state)
{
    (void)state;
    for (size_t len = 1; len <= 40; len++) {
        unsigned char plain[40], got[40];
        for (size_t i = 0; i < len; i++)
            plain[i] = (unsigned char)next_rand();
        const size_t tlen = mbx_base64_encoded_size(len);
        char text[64], bad[64];
        mbx_base64_encode(plain, len, text);
        for (size_t from = 0; from < len; from++)
            for (size_t n = 1; from + n <= len; n++) {
                memset(got, 0xee, sizeof got);
                assert_int_equal(mbx_base64_decode_range(text, tlen, from, n, got), 0);
                assert_memory_equal(got, plain + from, n);
            }
        /* A bad character in group g fails exactly the slices that read group g. */
        const size_t data_chars = tlen - (len % 3 ? 3 - len % 3 : 0);
        for (size_t at = 0; at < data_chars; at++) {
            memcpy(bad, text, tlen);
            /* '=' ends a group as padding would; in the last group it may be padding */
            bad[at] = (at % 4 == 3 && at / 4 != tlen / 4 - 1) ? '=' : '!';
            const size_t g = at / 4;
            for (size_t from = 0; from < len; from++)
                for (size_t n = 1; from + n <= len; n++) {
                    const int reads = from / 3 <= g && g <= (from + n - 1) / 3;
                    const int rc = mbx_base64_decode_range(bad, tlen, from, n, got);
                    if (reads != (rc != 0))
                        fail_msg("len %zu, '%c' at %zu, bytes [%zu, %zu): rc %d", len, bad[at],
                                 at, from, from + n, rc);
                }
        }
    }
    /* Bytes beyond the text. */
    unsigned char out[8];
    assert_int_equal(mbx_base64_decode_range("Zm9v", 4, 2, 2, out), MBX_E_BAD_BASE64);
    assert_int_equal(mbx_base64_decode_range("Zm8=", 4, 0, 3, out), MBX_E_BAD_BASE64);
}

/*
 * A dense [rows][w] array, zero but at some rows (each kept with chance
 * 1/every, runs of neighbours included), and its sparse form.
 */
typedef struct sparse_case {
    float *dense;
    int32_t *rows;
    float *values;
    int64_t num;
} sparse_case;

static sparse_case make_sparse(int64_t total_rows, int64_t w, unsigned every)
{
    sparse_case c = {calloc((size_t)(total_rows * w) + 1, sizeof(float)),
                     malloc((size_t)total_rows * sizeof(int32_t) + 1),
                     malloc((size_t)(total_rows * w) * sizeof(float) + 1), 0};
    for (int64_t r = 0; r < total_rows; r++) {
        if (next_rand() % every != 0)
            continue;
        c.rows[c.num] = (int32_t)r;
        for (int64_t k = 0; k < w; k++) {
            /* Some zeros inside kept rows too, and all bit patterns of sign and size. */
            const float v = next_rand() % 5 == 0 ? 0.0f
                                                 : (float)((int)(next_rand() % 20001) - 10000) /
                                                       (float)(1 + next_rand() % 999);
            c.dense[r * w + k] = v;
            c.values[c.num * w + k] = v;
        }
        c.num++;
    }
    return c;
}

static void free_sparse(sparse_case *c)
{
    free(c->dense);
    free(c->rows);
    free(c->values);
}

/*
 * Writes out[0..len) with read (a dense_rows reader) in windows of random
 * sizes up to max, one byte at times, as libmicrohttpd may ask.
 */
typedef void (*rows_reader)(const mbx_dense_rows *s, size_t off, char *out, size_t n);
static void read_in_windows(const mbx_dense_rows *s, rows_reader read, size_t len, size_t max,
                            char *out)
{
    for (size_t off = 0; off < len;) {
        size_t n = next_rand() % 3 == 0 ? 1 : 1 + next_rand() % max;
        if (n > len - off)
            n = len - off;
        read(s, off, out + off, n);
        off += n;
    }
}

/*
 * mbx_dense_rows_b64_read, over any window, writes exactly mbx_base64_encode's
 * text of the dense array: widths on and off 3-byte groups (4 bytes a
 * value: w = 3 and 21 fill whole groups, the others do not), rows kept
 * sparse, dense, all, none, and the last row kept or not (padding).
 */
static void test_rows_text(void **state)
{
    (void)state;
    static const int64_t widths[] = {1, 2, 3, 4, 5, 7, 21, 81, 91, 200};
    static const unsigned every[] = {1, 2, 7, 50, 1000000};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (size_t ei = 0; ei < sizeof every / sizeof every[0]; ei++)
            for (int64_t total_rows = 1; total_rows < 400; total_rows += 1 + total_rows / 2) {
                const int64_t w = widths[wi];
                sparse_case c = make_sparse(total_rows, w, every[ei]);
                const mbx_dense_rows s = {c.rows, c.values, c.num, total_rows, w};
                const size_t bytes = (size_t)(total_rows * w) * 4;
                const size_t tlen = mbx_base64_encoded_size(bytes);
                assert_int_equal(mbx_dense_rows_b64_size(&s), tlen);
                char *whole = malloc(tlen + 1), *got = malloc(tlen + 1);
                mbx_base64_encode(c.dense, bytes, whole);
                /* In one window, then in windows of random sizes (one byte at times). */
                memset(got, '#', tlen);
                mbx_dense_rows_b64_read(&s, 0, got, tlen);
                if (memcmp(got, whole, tlen) != 0)
                    fail_msg("w %lld, %lld rows, 1/%u kept: one window differs", (long long)w,
                             (long long)total_rows, every[ei]);
                memset(got, '#', tlen);
                read_in_windows(&s, mbx_dense_rows_b64_read, tlen, 700, got);
                if (memcmp(got, whole, tlen) != 0)
                    fail_msg("w %lld, %lld rows, 1/%u kept: windows differ", (long long)w,
                             (long long)total_rows, every[ei]);
                /* The raw bytes, in windows too. */
                char *raw = malloc(bytes + 1);
                memset(raw, '#', bytes);
                read_in_windows(&s, mbx_dense_rows_raw_read, bytes, 500, raw);
                if (memcmp(raw, c.dense, bytes) != 0)
                    fail_msg("w %lld, %lld rows, 1/%u kept: raw windows differ", (long long)w,
                             (long long)total_rows, every[ei]);
                free(raw);
                assert_int_equal(mbx_dense_rows_non_finite(&s), -1);
                if (c.num > 0) {
                    const int64_t k = (int64_t)(next_rand() % (uint32_t)c.num);
                    const int64_t col = (int64_t)(next_rand() % (uint32_t)w);
                    c.values[k * w + col] = (next_rand() & 1) ? NAN : -INFINITY;
                    assert_int_equal(mbx_dense_rows_non_finite(&s), c.rows[k] * w + col);
                }
                free(whole);
                free(got);
                free_sparse(&c);
            }
}

/* ------------------------------------------------------- deferred inputs */

static void check_loads(const char *name, const char *body)
{
    mbx_request *plain = NULL, *def = NULL;
    mbx_detail d = {0, ""};
    if (mbx_request_parse_json(body, strlen(body), &plain, &d) != 0)
        fail_msg("%s: %s", name, d.message);
    if (mbx_request_parse_json_ex(body, strlen(body), MBX_REQUEST_DEFER_INPUTS, &def, &d) != 0)
        fail_msg("%s (deferred): %s", name, d.message);
    const int64_t B = plain->batch.batch, A = plain->batch.num_anchors;
    const float *values[2] = {plain->batch.loc, plain->batch.conf};
    assert_null(def->batch.loc);
    assert_null(def->batch.conf);
    int32_t *rows = malloc((size_t)A * sizeof *rows);
    for (int input = 0; input < 2; input++) {
        assert_true(mbx_request_deferred(def, input));
        const int64_t w = input == 0 ? 4 : plain->batch.num_classes;
        float *dst = malloc((size_t)(A * w) * sizeof *dst);
        for (int64_t i = 0; i < B; i++) {
            const float *want = values[input] + i * A * w;
            memset(dst, 0xee, (size_t)(A * w) * sizeof *dst);
            assert_int_equal(mbx_request_load_input(def, input, i, NULL, 0, dst), -1);
            if (memcmp(dst, want, (size_t)(A * w) * sizeof *dst) != 0)
                fail_msg("%s: input %d image %lld differs", name, input, (long long)i);
            /* Every third row, from the last: only those rows are written. */
            int64_t n = 0;
            for (int64_t a = A - 1; a >= 0; a -= 3)
                rows[n++] = (int32_t)(i * A + a);
            memset(dst, 0xee, (size_t)(A * w) * sizeof *dst);
            assert_int_equal(mbx_request_load_input(def, input, i, rows, n, dst), -1);
            for (int64_t a = 0; a < A; a++) {
                const int picked = (A - 1 - a) % 3 == 0;
                for (int64_t k = 0; k < w; k++) {
                    uint32_t bits;
                    memcpy(&bits, &dst[a * w + k], 4);
                    if (picked ? memcmp(&dst[a * w + k], &want[a * w + k], 4) != 0
                               : bits != 0xeeeeeeeeu)
                        fail_msg("%s: input %d image %lld row %lld", name, input, (long long)i,
                                 (long long)a);
                }
            }
        }
        free(dst);
    }
    free(rows);
    mbx_request_free(plain);
    mbx_request_free(def);
}

static void test_loads_equal_plain(void **state)
{
    (void)state;
    char **names = th_golden_case_names();
    assert_non_null(names);
    int n = 0;
    for (char **p = names; *p; p++, n++) {
        char *body = th_golden_b64_body(*p);
        check_loads(*p, body);
        free(body);
    }
    assert_true(n >= 20);
    th_free_list(names);
}

/*
 * What a split job reports for body: the parse's error, else the first
 * input (loc before conf) with a faulty image, through mbx_request_input_fail.
 */
static int deferred_outcome(const char *body, mbx_detail *d)
{
    mbx_request *req = NULL;
    int rc = mbx_request_parse_json_ex(body, strlen(body), MBX_REQUEST_DEFER_INPUTS, &req, d);
    if (rc != 0)
        return rc;
    const int64_t B = req->batch.batch, A = req->batch.num_anchors;
    float *dst = malloc((size_t)(A * req->batch.num_classes + A * 4) * sizeof *dst);
    for (int input = 0; input < 2 && rc == 0; input++)
        for (int64_t i = B - 1; i >= 0; i--) /* any order: the units race */
            if (mbx_request_load_input(req, input, i, NULL, 0, dst) >= 0) {
                rc = mbx_request_input_fail(req, input, d);
                break;
            }
    free(dst);
    mbx_request_free(req);
    return rc;
}

static void test_faults_equal_plain(void **state)
{
    (void)state;
    const char *what;
    char *text;
    for (size_t c = 0; (text = th_fault_body(c, &what)); c++) {
        mbx_request *plain = NULL;
        mbx_detail want = {0, ""}, got = {0, ""};
        const int rc_plain = mbx_request_parse_json(text, strlen(text), &plain, &want);
        const int rc_def = deferred_outcome(text, &got);
        if (rc_plain == 0 || rc_def != rc_plain || strcmp(want.message, got.message) != 0)
            fail_msg("%s: plain %s \"%s\", deferred %s \"%s\"", what,
                     mbx_error_name(rc_plain), want.message, mbx_error_name(rc_def), got.message);
        free(text);
    }
}

/* ------------------------------------------------------ scan in steps */

/* The one-pass scan of body against scans fed in random steps. */
static void check_scan_steps(const char *body, size_t len, const char *what)
{
    mbx_lift whole;
    assert_int_equal(mbx_lift_scan(&whole, body, len, MBX_LIFT_MIN), 0);
    for (int trial = 0; trial < 40; trial++) {
        mbx_lift l;
        mbx_lift_init(&l, MBX_LIFT_MIN);
        size_t avail = 0;
        while (avail < len) {
            const size_t step = trial == 0 ? 1 : 1 + next_rand() % (trial < 20 ? 7 : 4096);
            avail = avail + step > len ? len : avail + step;
            assert_int_equal(mbx_lift_feed(&l, body, avail), 0);
        }
        if (l.count != whole.count)
            fail_msg("%s, trial %d: %zu strings in steps, %zu at once", what, trial, l.count,
                     whole.count);
        for (size_t k = 0; k < l.count; k++)
            if (l.items[k].start != whole.items[k].start || l.items[k].len != whole.items[k].len)
                fail_msg("%s, trial %d: string %zu differs", what, trial, k);
        mbx_lift_free(&l);
    }
    mbx_lift_free(&whole);
}

static void test_scan_in_steps(void **state)
{
    (void)state;
    char long_text[700];
    memset(long_text, 'Q', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    char *bodies[6];
    /* Escapes inside short and long strings, a long key, a long array element, and the end. */
    const char *fmt[] = {
        "{\"a\":\"%s\",\"b\\\"x\":\"q\\\\\",\"c\":[\"%s\"],\"%s\":1}",
        "{\"e\":\"%.300s\\n%s\",\"f\" :  \"%s\"}",
        "{\"g\":\"%s\",\"h\":\"%s", /* unterminated */
    };
    int n = 0;
    bodies[n] = malloc(4096);
    snprintf(bodies[n++], 4096, fmt[0], long_text, long_text, long_text);
    bodies[n] = malloc(4096);
    snprintf(bodies[n++], 4096, fmt[1], long_text, long_text, long_text);
    bodies[n] = malloc(4096);
    snprintf(bodies[n++], 4096, fmt[2], long_text, long_text);
    for (int k = 0; k < n; k++) {
        char what[32];
        snprintf(what, sizeof what, "body %d", k);
        check_scan_steps(bodies[k], strlen(bodies[k]), what);
        free(bodies[k]);
    }
    /* Golden bodies, with a parse that finishes a scan fed with part of the body. */
    static const char *const names[] = {"ssd300_voc_b2.json", "batch_with_empty_image.json",
                                        "tiny.json"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char *body = th_golden_b64_body(names[k]);
        const size_t len = strlen(body);
        check_scan_steps(body, len, names[k]);
        mbx_body_scan *scan = mbx_body_scan_new();
        assert_non_null(scan);
        /* Fed as far as a half of the body, as a written scan given back at its end is. */
        assert_int_equal(mbx_lift_feed(&scan->lift, body, len / 3), 0);
        assert_int_equal(mbx_lift_feed(&scan->lift, body, len / 2), 0);
        mbx_request *a = NULL, *b = NULL;
        mbx_detail d = {0, ""};
        assert_int_equal(
            mbx_request_parse_json_scanned(body, len, MBX_REQUEST_DEFER_INPUTS, scan, &a, &d), 0);
        assert_int_equal(mbx_request_parse_json(body, len, &b, &d), 0);
        assert_int_equal(a->batch.batch, b->batch.batch);
        assert_true(mbx_request_deferred(a, MBX_REQUEST_INPUT_CONF));
        const int64_t A = b->batch.num_anchors, C = b->batch.num_classes;
        float *conf = malloc((size_t)(A * C) * sizeof *conf);
        for (int64_t i = 0; i < b->batch.batch; i++) {
            assert_int_equal(mbx_request_load_input(a, MBX_REQUEST_INPUT_CONF, i, NULL, 0, conf),
                             -1);
            assert_memory_equal(conf, b->batch.conf + i * A * C, (size_t)(A * C) * sizeof *conf);
        }
        free(conf);
        mbx_body_scan_free(scan);
        mbx_request_free(a);
        mbx_request_free(b);
        /* A broken body: the same error (its position mapped back through the scan's strings). */
        body[len - 1] = ',';
        mbx_detail want = {0, ""}, got = {0, ""};
        scan = mbx_body_scan_new();
        assert_int_equal(mbx_lift_feed(&scan->lift, body, len - 1), 0);
        const int rc_plain = mbx_request_parse_json(body, len, &b, &want);
        const int rc_scan =
            mbx_request_parse_json_scanned(body, len, MBX_REQUEST_DEFER_INPUTS, scan, &a, &got);
        assert_int_not_equal(rc_plain, 0);
        assert_int_equal(rc_scan, rc_plain);
        assert_string_equal(got.message, want.message);
        mbx_body_scan_free(scan);
        free(body);
    }
}

/* ---------------------------------------------------------- split render */

static void test_render_around(void **state)
{
    (void)state;
    /* 7 anchors: image slices of 112 and 140 bytes, neither on a 3-byte group. */
    mbx_request req;
    memset(&req, 0, sizeof req);
    req.batch.batch = 3;
    req.batch.num_anchors = 7;
    req.batch.num_classes = 5;
    mbx_outputs_default(&req.outputs);
    req.outputs.gradients = MBX_GRAD_DENSE;
    req.outputs.tensor_format = MBX_TENSOR_B64;
    req.outputs.per_image = 1;
    req.outputs.matches = 1;
    assert_true(mbx_grads_from_rows(&req));
    mbx_result res, bare;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_result_alloc(&req, &res, &d), 0);
    /* With the flag: no dense gradient arrays, the rest as asked. */
    assert_int_equal(mbx_result_alloc_ex(&req, &bare, MBX_RESULT_GRADS_FROM_ROWS, &d), 0);
    assert_null(bare.grad_loc);
    assert_null(bare.grad_conf);
    assert_non_null(bare.per_image);
    assert_non_null(bare.matches);
    const int64_t rows = 21;
    sparse_case loc = make_sparse(rows, 4, 3), conf = make_sparse(rows, 5, 2);
    memcpy(res.grad_loc, loc.dense, (size_t)rows * 4 * sizeof(float));
    memcpy(res.grad_conf, conf.dense, (size_t)rows * 5 * sizeof(float));
    for (int64_t i = 0; i < rows; i++)
        res.matches[i] = bare.matches[i] = (int32_t)(i % 4) - 1;
    for (int64_t i = 0; i < 3; i++)
        res.per_image[i] = bare.per_image[i] = (mbx_image_result){0.5 * (double)i, 0.25, 0.25, 1, 3};
    res.loss = bare.loss = 1.25;
    res.normalizer = bare.normalizer = 4;
    res.num_positives = bare.num_positives = 4;

    char *whole = NULL, *around = NULL;
    size_t whole_len = 0, around_len = 0, holes[2];
    assert_int_equal(mbx_response_render_json(&req, &res, &whole, &whole_len, &d), 0);
    const mbx_dense_rows text_loc = {loc.rows, loc.values, loc.num, rows, 4};
    const mbx_dense_rows text_conf = {conf.rows, conf.values, conf.num, rows, 5};
    const size_t n_loc = mbx_dense_rows_b64_size(&text_loc), n_conf = mbx_dense_rows_b64_size(&text_conf);
    assert_int_equal(n_loc, mbx_base64_encoded_size(rows * 16));
    assert_int_equal(n_conf, mbx_base64_encoded_size(rows * 20));
    assert_int_equal(
        mbx_response_render_json_around(&req, &bare, &around, &around_len, holes, &d), 0);
    assert_true(holes[0] <= holes[1] && holes[1] <= around_len);
    char *spliced = malloc(around_len + n_loc + n_conf + 1);
    size_t at = 0;
    memcpy(spliced + at, around, holes[0]);
    at += holes[0];
    read_in_windows(&text_loc, mbx_dense_rows_b64_read, n_loc, 97, spliced + at);
    at += n_loc;
    memcpy(spliced + at, around + holes[0], holes[1] - holes[0]);
    at += holes[1] - holes[0];
    read_in_windows(&text_conf, mbx_dense_rows_b64_read, n_conf, 97, spliced + at);
    at += n_conf;
    memcpy(spliced + at, around + holes[1], around_len - holes[1]);
    at += around_len - holes[1];
    assert_int_equal(at, whole_len);
    assert_memory_equal(spliced, whole, whole_len);

    /* A non-finite gradient: the whole render's error, from where the rows hold it. */
    assert_true(conf.num > 1);
    const int64_t k = conf.num - 1;
    res.grad_conf[conf.rows[k] * 5 + 3] = NAN;
    conf.values[k * 5 + 3] = NAN;
    mbx_detail want = {0, ""}, got = {0, ""};
    char *none = NULL;
    const int rc_whole = mbx_response_render_json(&req, &res, &none, &whole_len, &want);
    assert_int_equal(rc_whole, MBX_E_INTERNAL);
    const int64_t bad = mbx_dense_rows_non_finite(&text_conf);
    assert_int_equal(bad, conf.rows[k] * 5 + 3);
    assert_int_equal(mbx_grads_non_finite(&req, MBX_REQUEST_INPUT_CONF, bad, &got), rc_whole);
    assert_string_equal(got.message, want.message);

    /* Answers without dense b64 gradients have no texts to leave out. */
    req.outputs.tensor_format = MBX_TENSOR_FLAT;
    assert_false(mbx_grads_from_rows(&req));
    assert_int_equal(mbx_response_render_json_around(&req, &res, &none, &around_len, holes, &d),
                     MBX_E_INVALID_ARGUMENT);
    free(spliced);
    free(whole);
    free(around);
    free_sparse(&loc);
    free_sparse(&conf);
    mbx_result_release(&res);
    mbx_result_release(&bare);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_range),     cmocka_unit_test(test_rows_text),
        cmocka_unit_test(test_loads_equal_plain), cmocka_unit_test(test_faults_equal_plain),
        cmocka_unit_test(test_scan_in_steps), cmocka_unit_test(test_render_around),
    };
    return cmocka_run_group_tests_name("codec defer", tests, NULL, NULL);
}
