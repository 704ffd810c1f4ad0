/*
 * helpers.c - the codec tests' shared helpers (see helpers.h).  The tensor
 * decoding and base64 here are written apart from the codec's so a bug in
 * one is not hidden by the same bug in the other.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **th_list_dir(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t n = 0, cap = 16;
    char **list = malloc(cap * sizeof *list);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] == '.')
            continue;
        if (len < sl || strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        if (n + 1 >= cap) {
            cap *= 2;
            list = realloc(list, cap * sizeof *list);
        }
        list[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(list, n, sizeof *list, cmp_str);
    list[n] = NULL;
    return list;
}

void th_free_list(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

const char *th_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("environment variable %s is not set (run through meson test)", name);
    return v;
}

/* ------------------------------------------------------------- base64 */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *th_b64_encode(const unsigned char *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

int th_b64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
    if (len % 4)
        return -1;
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + (size_t)k];
            const char *p = c ? strchr(b64chars, c) : NULL;
            if (c == '=' && i + 4 == len && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!p || pad) {
                free(buf);
                return -1;
            }
            v = v << 6 | (unsigned)(p - b64chars);
        }
        buf[o++] = (unsigned char)(v >> 16);
        if (pad < 2)
            buf[o++] = (unsigned char)(v >> 8);
        if (pad < 1)
            buf[o++] = (unsigned char)v;
    }
    *out = buf;
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------ tensor reading */

/* Collects the leaves of nested arrays; fills shape from the first elements. */
static int flatten(const json_t *j, int depth, float **data, int64_t *n, int64_t *cap,
                   int64_t *shape, int *rank)
{
    if (json_is_number(j)) {
        if (*rank < 0)
            *rank = depth;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *data = realloc(*data, (size_t)*cap * sizeof **data);
        }
        (*data)[(*n)++] = (float)json_number_value(j);
        return 0;
    }
    if (!json_is_array(j) || depth >= 4)
        return -1;
    if (*rank < 0)
        shape[depth] = (int64_t)json_array_size(j);
    for (size_t i = 0; i < json_array_size(j); i++)
        if (flatten(json_array_get(j, i), depth + 1, data, n, cap, shape, rank))
            return -1;
    if (json_array_size(j) == 0 && *rank < 0)
        *rank = depth + 1;
    return 0;
}

int th_decode_tensor(const json_t *t, float **data, int64_t *count, int64_t *shape, int *rank)
{
    *data = NULL;
    *count = 0;
    *rank = -1;
    if (json_is_array(t)) {
        int64_t cap = 0;
        return flatten(t, 0, data, count, &cap, shape, rank);
    }
    const json_t *js = json_object_get(t, "shape");
    if (!json_is_array(js) || json_array_size(js) > 4)
        return -1;
    *rank = (int)json_array_size(js);
    int64_t n = 1;
    for (int k = 0; k < *rank; k++) {
        shape[k] = json_integer_value(json_array_get(js, (size_t)k));
        n *= shape[k];
    }
    *count = n;
    *data = malloc((size_t)(n ? n : 1) * sizeof(float));
    const json_t *jd = json_object_get(t, "data");
    const json_t *jb = json_object_get(t, "b64");
    if (jd) {
        if ((int64_t)json_array_size(jd) != n)
            return -1;
        for (int64_t i = 0; i < n; i++)
            (*data)[i] = (float)json_number_value(json_array_get(jd, (size_t)i));
        return 0;
    }
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    unsigned char *bytes;
    size_t nb;
    if (!jb || !dtype || th_b64_decode(json_string_value(jb), json_string_length(jb), &bytes, &nb))
        return -1;
    int size = strcmp(dtype, "float64") == 0 ? 8 : 4;
    if ((int64_t)nb != n * size) {
        free(bytes);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        /* little-endian, assembled byte by byte */
        uint64_t u = 0;
        for (int k = size - 1; k >= 0; k--)
            u = u << 8 | bytes[i * size + k];
        if (size == 4) {
            uint32_t u32 = (uint32_t)u;
            memcpy(&(*data)[i], &u32, 4);
        } else {
            double d;
            memcpy(&d, &u, 8);
            (*data)[i] = (float)d;
        }
    }
    free(bytes);
    return 0;
}

/* ------------------------------------------------- request conversion */

json_t *th_to_nested(const json_t *tensor)
{
    float *data;
    int64_t count, shape[4];
    int rank;
    if (th_decode_tensor(tensor, &data, &count, shape, &rank))
        fail_msg("th_to_nested: malformed tensor");
    /* Build bottom-up: rows of the last dimension, then group. */
    json_t *flat = json_array();
    for (int64_t i = 0; i < count; i++)
        json_array_append_new(flat, json_real(data[i]));
    free(data);
    for (int k = rank - 1; k >= 1; k--) {
        json_t *grouped = json_array();
        size_t n = json_array_size(flat);
        size_t w = (size_t)shape[k];
        for (size_t i = 0; w && i < n; i += w) {
            json_t *row = json_array();
            for (size_t j = 0; j < w; j++)
                json_array_append(row, json_array_get(flat, i + j));
            json_array_append_new(grouped, row);
        }
        json_decref(flat);
        flat = grouped;
    }
    return flat;
}

json_t *th_to_b64(const json_t *tensor, int dtype_size, int rank_hint)
{
    float *data;
    int64_t count, shape[4];
    int rank;
    if (th_decode_tensor(tensor, &data, &count, shape, &rank))
        fail_msg("th_to_b64: malformed tensor");
    if (count == 0 && json_is_array(tensor)) {
        /* "boxes": [] has no inner dimension: make it [0, 4]. */
        rank = rank_hint;
        shape[0] = 0;
        for (int k = 1; k < rank; k++)
            shape[k] = 4;
    }
    unsigned char *bytes = malloc((size_t)(count ? count : 1) * (size_t)dtype_size);
    for (int64_t i = 0; i < count; i++) {
        uint64_t u;
        if (dtype_size == 4) {
            uint32_t u32;
            memcpy(&u32, &data[i], 4);
            u = u32;
        } else {
            double d = data[i];
            memcpy(&u, &d, 8);
        }
        for (int k = 0; k < dtype_size; k++)
            bytes[i * dtype_size + k] = (unsigned char)(u >> (8 * k));
    }
    char *text = th_b64_encode(bytes, (size_t)count * (size_t)dtype_size);
    json_t *js = json_array();
    for (int k = 0; k < rank; k++)
        json_array_append_new(js, json_integer(shape[k]));
    json_t *out = json_pack("{s:o, s:s, s:s}", "shape", js, "dtype",
                            dtype_size == 4 ? "float32" : "float64", "b64", text);
    free(text);
    free(bytes);
    free(data);
    return out;
}

void th_rewrite_tensors(json_t *request, th_tensor_fn fn)
{
    static const char *const names[] = {"loc", "conf"};
    for (int i = 0; i < 2; i++) {
        json_t *t = json_object_get(request, names[i]);
        json_object_set_new(request, names[i], fn(t, 3));
    }
    json_t *anchors = json_object_get(request, "anchors");
    if (json_is_array(anchors) || json_object_get(anchors, "shape"))
        json_object_set_new(request, "anchors", fn(anchors, 2));
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(request, "targets"), i, t) {
        json_object_set_new(t, "boxes", fn(json_object_get(t, "boxes"), 2));
    }
}

/* ------------------------------------------------------------ compare */

static void close_rel(double got, double want, const char *what, const char *label)
{
    double tol = 1e-5 * fabs(want) + 1e-9;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: %s = %.17g, expected %.17g (relative 1e-5)", label, what, got, want);
}

static void same_int(const json_t *got, const json_t *want, const char *what, const char *label)
{
    if (!json_is_integer(got) || json_integer_value(got) != json_integer_value(want))
        fail_msg("%s: %s = %lld, expected %lld", label, what,
                 (long long)json_integer_value(got), (long long)json_integer_value(want));
}

float *th_dense_gradient(const json_t *response, const char *name, int64_t rows, int64_t width)
{
    const json_t *g = json_object_get(response, name);
    int64_t total = rows * width;
    float *dense = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
    float *data;
    int64_t count, shape[4];
    int rank;
    if (!g)
        fail_msg("%s missing from the response", name);
    const json_t *jrows = json_object_get(g, "rows");
    if (jrows) {
        const json_t *vals = json_object_get(g, "values");
        if (th_decode_tensor(vals, &data, &count, shape, &rank))
            fail_msg("%s.values: malformed tensor", name);
        int64_t k = (int64_t)json_array_size(jrows);
        if (count != k * width)
            fail_msg("%s: %lld values for %lld rows of %lld", name, (long long)count,
                     (long long)k, (long long)width);
        int64_t prev = -1;
        for (int64_t i = 0; i < k; i++) {
            int64_t r = json_integer_value(json_array_get(jrows, (size_t)i));
            if (r <= prev || r >= rows)
                fail_msg("%s.rows[%lld] = %lld: not ascending or out of range", name,
                         (long long)i, (long long)r);
            prev = r;
            memcpy(dense + r * width, data + i * width, (size_t)width * sizeof(float));
        }
        free(data);
        return dense;
    }
    if (th_decode_tensor(g, &data, &count, shape, &rank))
        fail_msg("%s: malformed tensor", name);
    if (count != rows * width)
        fail_msg("%s: %lld values, expected %lld", name, (long long)count,
                 (long long)(rows * width));
    if (rank != 3 || shape[0] * shape[1] != rows || shape[2] != width)
        fail_msg("%s: wrong shape", name);
    memcpy(dense, data, (size_t)count * sizeof(float));
    free(data);
    return dense;
}

static void compare_grad(const json_t *response, const json_t *expected, const char *name,
                         const char *label)
{
    float *want;
    int64_t count, shape[4];
    int rank;
    if (th_decode_tensor(json_object_get(expected, name), &want, &count, shape, &rank))
        fail_msg("%s: expected %s malformed", label, name);
    float *got = th_dense_gradient(response, name, shape[0] * shape[1], shape[2]);
    double maxabs = 0;
    for (int64_t i = 0; i < count; i++)
        maxabs = fmax(maxabs, fabs(want[i]));
    double tol = 1e-6 + 1e-4 * maxabs;
    for (int64_t i = 0; i < count; i++) {
        if (!(fabs((double)got[i] - (double)want[i]) <= tol)) {
            fail_msg("%s: %s[%lld][%lld][%lld] = %.9g, expected %.9g (tolerance %.3g)", label, name,
                     (long long)(i / (shape[1] * shape[2])), (long long)(i / shape[2] % shape[1]),
                     (long long)(i % shape[2]), (double)got[i], (double)want[i], tol);
        }
    }
    free(want);
    free(got);
}

void th_compare_expected(const json_t *response, const json_t *expected, const char *label)
{
    static const char *const losses[] = {"loss", "conf_loss", "loc_loss", "normalizer"};
    for (int i = 0; i < 4; i++) {
        const json_t *g = json_object_get(response, losses[i]);
        if (!json_is_number(g))
            fail_msg("%s: %s missing or not a number", label, losses[i]);
        close_rel(json_number_value(g), json_number_value(json_object_get(expected, losses[i])),
                  losses[i], label);
    }
    same_int(json_object_get(response, "num_positives"),
             json_object_get(expected, "num_positives"), "num_positives", label);
    same_int(json_object_get(response, "num_negatives"),
             json_object_get(expected, "num_negatives"), "num_negatives", label);

    const json_t *pi = json_object_get(response, "per_image");
    const json_t *pe = json_object_get(expected, "per_image");
    if (pi) {
        if (json_array_size(pi) != json_array_size(pe))
            fail_msg("%s: per_image has %zu items, expected %zu", label, json_array_size(pi),
                     json_array_size(pe));
        for (size_t i = 0; i < json_array_size(pe); i++) {
            const json_t *a = json_array_get(pi, i), *b = json_array_get(pe, i);
            char what[64];
            for (int k = 0; k < 3; k++) {
                snprintf(what, sizeof what, "per_image[%zu].%s", i, losses[k]);
                close_rel(json_number_value(json_object_get(a, losses[k])),
                          json_number_value(json_object_get(b, losses[k])), what, label);
            }
            snprintf(what, sizeof what, "per_image[%zu].num_positives", i);
            same_int(json_object_get(a, "num_positives"), json_object_get(b, "num_positives"),
                     what, label);
            snprintf(what, sizeof what, "per_image[%zu].num_negatives", i);
            same_int(json_object_get(a, "num_negatives"), json_object_get(b, "num_negatives"),
                     what, label);
        }
    }

    const json_t *mg = json_object_get(response, "matches");
    const json_t *me = json_object_get(expected, "matches");
    if (mg) {
        if (json_array_size(mg) != json_array_size(me))
            fail_msg("%s: matches has %zu images, expected %zu", label, json_array_size(mg),
                     json_array_size(me));
        for (size_t i = 0; i < json_array_size(me); i++) {
            const json_t *a = json_array_get(mg, i), *b = json_array_get(me, i);
            if (json_array_size(a) != json_array_size(b))
                fail_msg("%s: matches[%zu] has %zu anchors, expected %zu", label, i,
                         json_array_size(a), json_array_size(b));
            for (size_t k = 0; k < json_array_size(b); k++) {
                if (json_integer_value(json_array_get(a, k)) !=
                    json_integer_value(json_array_get(b, k)))
                    fail_msg("%s: matches[%zu][%zu] = %lld, expected %lld", label, i, k,
                             (long long)json_integer_value(json_array_get(a, k)),
                             (long long)json_integer_value(json_array_get(b, k)));
            }
        }
    }
    if (json_object_get(response, "grad_loc"))
        compare_grad(response, expected, "grad_loc", label);
    if (json_object_get(response, "grad_conf"))
        compare_grad(response, expected, "grad_conf", label);
}

/* ------------------------------------------- /v1 bodies with b64 tensors */

static json_t *to_b64_f32(const json_t *t, int rank)
{
    return th_to_b64(t, 4, rank);
}

char **th_golden_case_names(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cases", th_env("MBX_GOLDEN_DIR"));
    return th_list_dir(dir, ".json");
}

/* Golden case name's request with every tensor as b64 float32, as compact text. */
char *th_golden_b64_body(const char *name)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof path, "%s/cases/%s", th_env("MBX_GOLDEN_DIR"), name);
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("%s: %s", path, err.text);
    json_t *req = json_deep_copy(json_object_get(root, "request"));
    json_decref(root);
    th_rewrite_tensors(req, to_b64_f32);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return body;
}

/* Replaces the b64 text of key's tensor in req with text. */
static void set_b64(json_t *req, const char *key, const char *text)
{
    json_object_set_new(json_object_get(req, key), "b64", json_string(text));
}

/* key's values (float32) from req's b64 text; *n gets their count. */
static float *get_values(json_t *req, const char *key, size_t *n)
{
    const char *t = json_string_value(json_object_get(json_object_get(req, key), "b64"));
    unsigned char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(th_b64_decode(t, strlen(t), &bytes, &len), 0);
    *n = len / 4;
    return (float *)(void *)bytes;
}

static void put_values(json_t *req, const char *key, const float *v, size_t n)
{
    char *t = th_b64_encode((const unsigned char *)v, n * 4);
    set_b64(req, key, t);
    free(t);
}

enum fault_kind { NAN_AT, INF_AT, CHAR_AT, PAD_AT };
typedef struct fault {
    const char *key; /* "loc" or "conf" */
    enum fault_kind kind;
    double where;    /* fraction of the tensor's values (or characters) */
} fault;

static void apply(json_t *req, const fault *f)
{
    size_t n;
    float *v = get_values(req, f->key, &n);
    const size_t at = (size_t)(f->where * (double)(n - 1));
    if (f->kind == NAN_AT || f->kind == INF_AT) {
        v[at] = f->kind == NAN_AT ? NAN : -INFINITY;
        put_values(req, f->key, v, n);
    } else {
        char *t = strdup(json_string_value(json_object_get(json_object_get(req, f->key), "b64")));
        const size_t c = (size_t)(f->where * (double)(strlen(t) - 8));
        t[c] = f->kind == CHAR_AT ? '*' : '=';
        set_b64(req, f->key, t);
        free(t);
    }
    free(v);
}

/*
 * Writes the first character of key's b64 text as a \u00XX escape: the
 * same JSON string, but one the scan leaves to jansson (so not deferred).
 */
static void escape_first_char(char **text, const char *key)
{
    char pattern[32];
    snprintf(pattern, sizeof pattern, "\"%s\":{", key);
    const char *obj = strstr(*text, pattern);
    assert_non_null(obj);
    const char *b64 = strstr(obj, "\"b64\":\"");
    assert_non_null(b64);
    const size_t at = (size_t)(b64 - *text) + 7, len = strlen(*text);
    char *out = malloc(len + 6);
    memcpy(out, *text, at);
    snprintf(out + at, 7, "\\u%04x", (unsigned char)(*text)[at]);
    memcpy(out + at + 6, *text + at + 1, len - at);
    free(*text);
    *text = out;
}

static const struct {
    const char *what;
    fault faults[3];
    int bad_box;      /* a degenerate GT box in the last image too */
    const char *read; /* this input's text escaped: jansson reads it, it is not deferred */
} fault_cases[] = {
    {"NaN in loc, image 1", {{"loc", NAN_AT, 0.7}}, 0, NULL},
    {"infinity in conf, image 0", {{"conf", INF_AT, 0.1}}, 0, NULL},
    {"bad char in conf, image 1", {{"conf", CHAR_AT, 0.9}}, 0, NULL},
    {"'=' inside loc", {{"loc", PAD_AT, 0.3}}, 0, NULL},
    {"NaN in loc image 0, bad char in loc image 1",
     {{"loc", NAN_AT, 0.2}, {"loc", CHAR_AT, 0.8}},
     0, NULL},
    {"NaN in conf image 0, bad char in conf image 1",
     {{"conf", NAN_AT, 0.05}, {"conf", CHAR_AT, 0.95}},
     0, NULL},
    {"NaN in conf, bad char in loc", {{"conf", NAN_AT, 0.1}, {"loc", CHAR_AT, 0.9}}, 0, NULL},
    {"two NaN in loc", {{"loc", NAN_AT, 0.9}, {"loc", NAN_AT, 0.4}}, 0, NULL},
    {"NaN in conf and a degenerate box", {{"conf", NAN_AT, 0.6}}, 1, NULL},
    {"bad char in loc and a degenerate box", {{"loc", CHAR_AT, 0.6}}, 1, NULL},
    {"only a degenerate box", {{NULL, NAN_AT, 0}}, 1, NULL},
    /* One input deferred, the other read whole by the parse (found by the fuzzer). */
    {"bad char in loc, bad char in conf read whole",
     {{"loc", CHAR_AT, 0.8}, {"conf", CHAR_AT, 0.2}},
     0,
     "conf"},
    {"NaN in loc, NaN in conf read whole", {{"loc", NAN_AT, 0.8}, {"conf", NAN_AT, 0.2}}, 0,
     "conf"},
    {"bad char in loc read whole, bad char in conf",
     {{"loc", CHAR_AT, 0.8}, {"conf", CHAR_AT, 0.2}},
     0,
     "loc"},
    {"only NaN in conf read whole", {{"conf", NAN_AT, 0.5}}, 0, "conf"},
};

char *th_fault_body(size_t k, const char **what)
{
    if (k >= sizeof fault_cases / sizeof fault_cases[0])
        return NULL;
    char *body = th_golden_b64_body("ssd300_voc_b2.json");
    json_error_t err;
    json_t *req = json_loads(body, 0, &err);
    free(body);
    if (!req)
        fail_msg("golden body: %s", err.text);
    for (int f = 0; f < 3 && fault_cases[k].faults[f].key; f++)
        apply(req, &fault_cases[k].faults[f]);
    if (fault_cases[k].bad_box) {
        json_t *targets = json_object_get(req, "targets");
        json_t *t = json_array_get(targets, json_array_size(targets) - 1);
        json_object_set_new(t, "boxes", json_pack("[[f,f,f,f]]", 0.5, 0.5, 0.4, 0.7));
        json_object_set_new(t, "labels", json_pack("[i]", 1));
        json_object_del(t, "difficult");
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (fault_cases[k].read)
        escape_first_char(&text, fault_cases[k].read);
    *what = fault_cases[k].what;
    return text;
}
