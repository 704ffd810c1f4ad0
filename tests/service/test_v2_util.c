/*
 * test_v2_util.c - see test_v2_util.h.  The request builder follows the
 * contract's input names (loc, conf, anchors, gt_boxes, gt_labels,
 * gt_counts, gt_difficult; the config's scalars as parameters, variances
 * split) and writes binary tensors as the extension describes: raw
 * little-endian bytes after the JSON header, in input order, each input
 * announcing its parameters.binary_data_size.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "half.h"
#include "harness.h"
#include "test_v2_util.h"

/* ------------------------------------------------------------------ HTTP */

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    v2_resp *r = arg;
    size_t n = size * nmemb;
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return n;
    size_t kn = (size_t)(colon - p), vn = n - kn - 1;
    const char *v = colon + 1;
    if (kn == 12 && strncasecmp(p, "Content-Type", kn) == 0)
        http_header_value(r->content_type, sizeof r->content_type, v, vn);
    else if (kn == 11 && strncasecmp(p, "Retry-After", kn) == 0)
        http_header_value(r->retry_after, sizeof r->retry_after, v, vn);
    else if (kn == 5 && strncasecmp(p, "Allow", kn) == 0)
        http_header_value(r->allow, sizeof r->allow, v, vn);
    else if (kn == 31 && strncasecmp(p, "Inference-Header-Content-Length", kn) == 0) {
        char num[32];
        http_header_value(num, sizeof num, v, vn);
        r->header_len = (size_t)strtoull(num, NULL, 10);
    }
    return n;
}

typedef struct chunk_src {
    const unsigned char *p;
    size_t len, pos;
} chunk_src;

/* Sends at most 7000 bytes per call, so a chunked body arrives in many pieces. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    chunk_src *s = arg;
    size_t n = size * nitems, left = s->len - s->pos;
    if (n > left)
        n = left;
    if (n > 7000)
        n = 7000;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return n;
}

long v2_do(const v2_req *req, v2_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->header_len = SIZE_MAX;
    CURL *c = req->curl ? req->curl : curl_easy_init();
    http_sink body = {0};
    chunk_src src = {req->body, req->len, 0};
    struct curl_slist *hdrs = NULL;
    char line[256];
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 120000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->curl_error);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (req->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
        hdrs = curl_slist_append(hdrs, line);
    } else {
        hdrs = curl_slist_append(hdrs, "Content-Type:"); /* none at all, as tritonclient */
    }
    if (req->header_len != SIZE_MAX) {
        snprintf(line, sizeof line, "Inference-Header-Content-Length: %zu", req->header_len);
        hdrs = curl_slist_append(hdrs, line);
    }
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    if (req->body) {
        if (req->chunked) {
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &src);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)req->body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
        }
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    else if (!resp->curl_error[0])
        snprintf(resp->curl_error, sizeof resp->curl_error, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    if (!req->curl)
        curl_easy_cleanup(c);
    if (!body.data)
        body.data = calloc(1, 1);
    resp->body = (unsigned char *)body.data;
    resp->len = body.len;
    return resp->status;
}

long v2_get(const char *url, v2_resp *resp)
{
    v2_req req = {.url = url, .header_len = SIZE_MAX};
    return v2_do(&req, resp);
}

void v2_resp_free(v2_resp *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* Splits a /v2 error body into code and message (static per-thread buffers). */
static _Thread_local char err_code[64], err_message[512];
static void split_error(const v2_resp *resp)
{
    err_code[0] = err_message[0] = 0;
    json_t *j = json_loadb((const char *)resp->body, resp->len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *sep = e ? strstr(e, ": ") : NULL;
    if (sep && json_object_size(j) == 1) {
        size_t n = (size_t)(sep - e);
        if (n < sizeof err_code) {
            memcpy(err_code, e, n);
            err_code[n] = 0;
            snprintf(err_message, sizeof err_message, "%s", sep + 2);
        }
    }
    json_decref(j);
}

const char *v2_error_code(const v2_resp *resp)
{
    split_error(resp);
    return err_code;
}

const char *v2_error_message(const v2_resp *resp)
{
    split_error(resp);
    return err_message;
}

/* --------------------------------------------------------------- requests */

static double round_half(double v, const char *to)
{
    if (!to)
        return v;
    if (strcmp(to, "FP16") == 0)
        return tu_f16(mbx_f32_to_f16((float)v));
    return tu_bf16(mbx_f32_to_bf16((float)v));
}


const char *const v2_every_output[V2_NUM_OUTPUTS] = {
    "loss", "conf_loss", "loc_loss", "normalizer", "num_positives", "num_negatives",
    "per_image_loss", "grad_loc", "grad_conf", "grad_loc_rows", "grad_loc_values",
    "grad_conf_rows", "grad_conf_values"};

/* Input t of the golden request (0 loc, 1 conf, 2 anchors) as the form says. */
static void add_golden_input(const json_t *request, const v2_form *f, json_t *inputs,
                             tu_bytes *bin, int t)
{
    static const char *const names[3] = {"loc", "conf", "anchors"};
    int64_t shape[4];
    int rank;
    size_t n;
    double *v = tu_tensor_values(json_object_get(request, names[t]), &n, shape, &rank);
    const char *dt = "FP32";
    if (t < 2) {
        if (f->loc_dtype)
            dt = f->loc_dtype;
        if (t == 1 && f->conf_dtype)
            dt = f->conf_dtype;
        for (size_t i = 0; i < n; i++)
            v[i] = round_half(v[i], f->round_to);
    }
    tu_add_input(inputs, bin, names[t], dt, rank, shape, v, n, f->binary_in);
    free(v);
}

void v2_build(const json_t *request, const v2_form *f, v2_built *out)
{
    json_t *header = json_object(), *inputs = json_array(), *params = json_object();
    tu_bytes bin = {0};
    if (f->targets_first) {
        add_golden_input(request, f, inputs, &bin, 2);
    } else {
        for (int t = 0; t < 3; t++)
            add_golden_input(request, f, inputs, &bin, t);
    }
    const json_t *targets = json_object_get(request, "targets");
    size_t B = json_array_size(targets), N = 0;
    int any_difficult = 0;
    for (size_t i = 0; i < B; i++) {
        N += json_array_size(json_object_get(json_array_get(targets, i), "labels"));
        any_difficult |= json_object_get(json_array_get(targets, i), "difficult") != NULL;
    }
    double *boxes = malloc((4 * N + 1) * sizeof *boxes), *labels = malloc((N + 1) * sizeof *labels);
    double *diff = calloc(N + 1, sizeof *diff), *counts = malloc((B + 1) * sizeof *counts);
    assert_true(boxes && labels && diff && counts);
    size_t k = 0;
    for (size_t i = 0; i < B; i++) {
        const json_t *t = json_array_get(targets, i);
        const json_t *jb = json_object_get(t, "boxes"), *jl = json_object_get(t, "labels");
        const json_t *jd = json_object_get(t, "difficult");
        counts[i] = (double)json_array_size(jl);
        for (size_t g = 0; g < json_array_size(jl); g++, k++) {
            for (size_t c = 0; c < 4; c++)
                boxes[4 * k + c] = json_number_value(json_array_get(json_array_get(jb, g), c));
            labels[k] = (double)json_integer_value(json_array_get(jl, g));
            diff[k] = jd ? json_is_true(json_array_get(jd, g)) : 0;
        }
    }
    int64_t s2[2] = {(int64_t)N, 4}, s1[1] = {(int64_t)N}, sb[1] = {(int64_t)B};
    tu_add_input(inputs, &bin, "gt_boxes", "FP32", 2, s2, boxes, 4 * N, f->binary_in);
    tu_add_input(inputs, &bin, "gt_labels", f->labels_dtype ? f->labels_dtype : "INT32", 1, s1,
              labels, N, f->binary_in);
    tu_add_input(inputs, &bin, "gt_counts", "INT32", 1, sb, counts, B, f->binary_in);
    if (any_difficult)
        tu_add_input(inputs, &bin, "gt_difficult", "BOOL", 1, s1, diff, N, f->binary_in);
    if (f->targets_first)
        for (int t = 0; t < 2; t++)
            add_golden_input(request, f, inputs, &bin, t);
    free(boxes);
    free(labels);
    free(diff);
    free(counts);

    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(request, "config"), key, v) {
        if (strcmp(key, "variances") == 0) {
            static const char *const two[2] = {"variance_center", "variance_size"};
            static const char *const four[4] = {"variance_cx", "variance_cy", "variance_w",
                                                "variance_h"};
            size_t nv = json_array_size(v);
            for (size_t i = 0; i < nv; i++)
                json_object_set(params, nv == 2 ? two[i] : four[i], json_array_get(v, i));
        } else {
            json_object_set(params, key, v);
        }
    }
    if (f->binary_out)
        json_object_set_new(params, "binary_data_output", json_true());
    if (f->gradient_datatype)
        json_object_set_new(params, "gradient_datatype", json_string(f->gradient_datatype));
    if (f->all_outputs) {
        json_t *outs = json_array();
        for (size_t i = 0; i < V2_NUM_OUTPUTS; i++)
            json_array_append_new(outs, json_pack("{s:s}", "name", v2_every_output[i]));
        json_object_set_new(header, "outputs", outs);
    } else if (f->outputs) {
        json_t *outs = json_array();
        for (size_t i = 0; f->outputs[i]; i++)
            json_array_append_new(outs, json_pack("{s:s}", "name", f->outputs[i]));
        json_object_set_new(header, "outputs", outs);
    }
    json_object_set_new(header, "id", json_string("golden"));
    json_object_set_new(header, "inputs", inputs);
    json_object_set_new(header, "parameters", params);
    char *text = json_dumps(header, JSON_COMPACT);
    assert_non_null(text);
    memset(out, 0, sizeof *out);
    out->header_len = strlen(text);
    out->binary = f->binary_in;
    tu_put(&out->body, text, out->header_len);
    tu_put(&out->body, bin.data, bin.len);
    free(text);
    tu_free(&bin);
    json_decref(header);
}

size_t v2_input_offset(const v2_built *b, const char *name, size_t *size)
{
    json_t *h = json_loadb((const char *)b->body.data, b->header_len, 0, NULL);
    assert_non_null(h);
    size_t off = b->header_len, i;
    json_t *in;
    json_array_foreach(json_object_get(h, "inputs"), i, in) {
        const json_t *bs = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
        const size_t n = bs ? (size_t)json_integer_value(bs) : 0;
        if (bs && strcmp(json_string_value(json_object_get(in, "name")), name) == 0) {
            json_decref(h);
            *size = n;
            return off;
        }
        off += n;
    }
    json_decref(h);
    fail_msg("no binary input %s", name);
    return 0;
}

long v2_post_built(const char *url, const v2_built *b, const char *content_type, v2_resp *resp)
{
    v2_req req = {.url = url,
                  .body = b->body.data,
                  .len = b->body.len,
                  .content_type = content_type,
                  .header_len = b->binary ? b->header_len : SIZE_MAX};
    return v2_do(&req, resp);
}

void v2_decode(const v2_resp *resp, tu_response *out, const char *label)
{
    char err[256];
    if (resp->status != 200)
        fail_msg("%s: status %ld: %.300s", label, resp->status, resp->body);
    int binary = resp->header_len != SIZE_MAX;
    /* The extension's content types: octet-stream with binary data, JSON without. */
    if (binary)
        assert_string_equal(resp->content_type, "application/octet-stream");
    else
        assert_string_equal(resp->content_type, "application/json");
    if (tu_decode(resp->body, resp->len, resp->header_len, out, err) != 0)
        fail_msg("%s: decode: %s", label, err);
}

void v2_same_output(const tu_response *a, const tu_response *b, const char *name,
                    const char *label)
{
    const tu_tensor *x = tu_find(a, name), *y = tu_find(b, name);
    if (!x || !y)
        fail_msg("%s: output %s missing", label, name);
    if (x->count != y->count || x->rank != y->rank)
        fail_msg("%s: %s: %lld vs %lld values", label, name, (long long)x->count,
                 (long long)y->count);
    /* JSON data carry a float32 as the shortest text that reads back as it
     * ("%.9g"), so values are compared as float32. */
    for (int64_t i = 0; i < x->count; i++)
        if (!((float)x->values[i] == (float)y->values[i]))
            fail_msg("%s: %s[%lld]: %.9g vs %.9g", label, name, (long long)i, x->values[i],
                     y->values[i]);
}
