/*
 * test_parse.c - what mbx_request_parse_json builds from valid bodies:
 * defaults when config and outputs are absent, every config key and output
 * option mapped to its field, integers accepted as reals, the three TENSOR
 * forms giving identical floats, difficult flags and images without boxes,
 * anchors from a preset and from prior_box parameters equal to the golden
 * priors (xyxy whatever config.box_format), a body that is not
 * NUL-terminated and ends against an unreadable page, and argument checks;
 * and lift.c, which keeps long string values away from jansson: which
 * strings it lifts, the stream jansson reads, positions mapped back.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec_internal.h"
#include "helpers.h"

static char *read_data(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/%s", th_env("MBX_SOURCE_ROOT"), rel);
    char *s = th_read_file(path, len);
    if (!s)
        fail_msg("cannot read %s", path);
    return s;
}

static mbx_request *parse_ok(const char *body, size_t len)
{
    mbx_request *req = NULL;
    mbx_detail d = {12345, "untouched"};
    int rc = mbx_request_parse_json(body, len, &req, &d);
    if (rc)
        fail_msg("rejected: %s: %s", mbx_error_name(rc), d.message);
    /* detail is left untouched on success */
    assert_int_equal(d.code, 12345);
    assert_string_equal(d.message, "untouched");
    return req;
}

static mbx_request *parse_file(const char *rel)
{
    size_t len;
    char *body = read_data(rel, &len);
    mbx_request *req = parse_ok(body, len);
    free(body);
    return req;
}

static mbx_request *parse_json(json_t *j)
{
    char *body = json_dumps(j, JSON_COMPACT);
    mbx_request *req = parse_ok(body, strlen(body));
    free(body);
    return req;
}

/* Field by field (padding bytes are unspecified). */
static void config_equal(const mbx_config *a, const mbx_config *b)
{
    assert_int_equal(a->box_format, b->box_format);
    assert_int_equal(a->bipartite, b->bipartite);
    assert_true(a->overlap_threshold == b->overlap_threshold);
    assert_true(a->neg_overlap == b->neg_overlap);
    assert_int_equal(a->use_difficult, b->use_difficult);
    assert_int_equal(a->num_variances, b->num_variances);
    for (int i = 0; i < a->num_variances; i++)
        assert_true(a->variances[i] == b->variances[i]);
    assert_int_equal(a->loc_loss, b->loc_loss);
    assert_true(a->smooth_l1_beta == b->smooth_l1_beta);
    assert_true(a->alpha == b->alpha);
    assert_int_equal(a->conf_loss, b->conf_loss);
    assert_int_equal(a->background_label, b->background_label);
    assert_true(a->focal_alpha == b->focal_alpha);
    assert_true(a->focal_gamma == b->focal_gamma);
    assert_int_equal(a->mining, b->mining);
    assert_true(a->neg_pos_ratio == b->neg_pos_ratio);
    assert_int_equal(a->min_negatives, b->min_negatives);
    assert_int_equal(a->normalization, b->normalization);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    mbx_request *req = parse_file("valid/minimal.json");
    mbx_config def;
    mbx_config_default(&def);
    config_equal(&req->config, &def);
    assert_int_equal(req->outputs.gradients, MBX_GRAD_DENSE);
    assert_int_equal(req->outputs.per_image, 1);
    assert_int_equal(req->outputs.matches, 0);
    assert_int_equal(req->outputs.tensor_format, MBX_TENSOR_NESTED);
    const mbx_batch *b = &req->batch;
    assert_int_equal(b->batch, 1);
    assert_int_equal(b->num_anchors, 2);
    assert_int_equal(b->num_classes, 3);
    assert_int_equal(b->anchors_format, MBX_BOX_XYXY);
    const float anchors[8] = {0.1f, 0.1f, 0.4f, 0.4f, 0.5f, 0.5f, 0.9f, 0.9f};
    const float loc[8] = {0, 0, 0, 0, 0.1f, -0.2f, 0.3f, -0.4f};
    const float conf[6] = {1, 0, 0, 0, 1, 0.5f};
    assert_memory_equal(b->anchors, anchors, sizeof anchors);
    assert_memory_equal(b->loc, loc, sizeof loc);
    assert_memory_equal(b->conf, conf, sizeof conf);
    assert_int_equal(b->targets[0].num_boxes, 1);
    const float box[4] = {0.1f, 0.1f, 0.45f, 0.45f};
    assert_memory_equal(b->targets[0].boxes, box, sizeof box);
    assert_int_equal(b->targets[0].labels[0], 1);
    assert_null(b->targets[0].difficult);
    assert_int_equal(req->max_boxes, 1);
    mbx_shape s = mbx_request_shape(req, 3);
    assert_int_equal(s.batch, 1);
    assert_int_equal(s.num_anchors, 2);
    assert_int_equal(s.num_classes, 3);
    assert_int_equal(s.max_boxes, 1);
    assert_int_equal(s.num_slots, 3);
    mbx_request_free(req);
    mbx_request_free(NULL);
}

static void test_all_keys(void **state)
{
    (void)state;
    mbx_request *req = parse_file("valid/all_keys_integers.json");
    const mbx_config *c = &req->config;
    assert_int_equal(c->box_format, MBX_BOX_XYXY);
    assert_int_equal(c->bipartite, MBX_BIPARTITE_NONE);
    assert_true(c->overlap_threshold == 1.0);
    assert_true(c->neg_overlap == 1.0);
    assert_int_equal(c->use_difficult, 0);
    assert_int_equal(c->num_variances, 4);
    assert_true(c->variances[0] == 1 && c->variances[1] == 2 && c->variances[2] == 3 &&
                c->variances[3] == 4);
    assert_int_equal(c->loc_loss, MBX_LOC_CIOU);
    assert_true(c->smooth_l1_beta == 2.0);
    assert_true(c->alpha == 0.0);
    assert_int_equal(c->conf_loss, MBX_CONF_FOCAL);
    assert_int_equal(c->background_label, 2);
    assert_true(c->focal_alpha == 1.0);
    assert_true(c->focal_gamma == 0.0);
    assert_int_equal(c->mining, MBX_MINING_NONE);
    assert_true(c->neg_pos_ratio == 0.0);
    assert_int_equal(c->min_negatives, 7);
    assert_int_equal(c->normalization, MBX_NORM_POSITIVES_PER_IMAGE);
    assert_int_equal(req->outputs.gradients, MBX_GRAD_SPARSE);
    assert_int_equal(req->outputs.per_image, 0);
    assert_int_equal(req->outputs.matches, 1);
    assert_int_equal(req->outputs.tensor_format, MBX_TENSOR_B64);
    mbx_request_free(req);

    /* each enum spelling, one key at a time */
    static const struct {
        const char *key, *value;
        size_t offset;
        int expect;
    } enums[] = {
        {"box_format", "cxcywh", offsetof(mbx_config, box_format), MBX_BOX_CXCYWH},
        {"bipartite", "greedy", offsetof(mbx_config, bipartite), MBX_BIPARTITE_GREEDY},
        {"bipartite", "per_gt", offsetof(mbx_config, bipartite), MBX_BIPARTITE_PER_GT},
        {"loc_loss", "smooth_l1", offsetof(mbx_config, loc_loss), MBX_LOC_SMOOTH_L1},
        {"loc_loss", "l1", offsetof(mbx_config, loc_loss), MBX_LOC_L1},
        {"loc_loss", "l2", offsetof(mbx_config, loc_loss), MBX_LOC_L2},
        {"loc_loss", "giou", offsetof(mbx_config, loc_loss), MBX_LOC_GIOU},
        {"loc_loss", "diou", offsetof(mbx_config, loc_loss), MBX_LOC_DIOU},
        {"conf_loss", "sigmoid", offsetof(mbx_config, conf_loss), MBX_CONF_SIGMOID},
        {"mining", "hard_negative", offsetof(mbx_config, mining), MBX_MINING_HARD_NEGATIVE},
        {"normalization", "positives", offsetof(mbx_config, normalization), MBX_NORM_POSITIVES},
        {"normalization", "anchors", offsetof(mbx_config, normalization), MBX_NORM_ANCHORS},
        {"normalization", "batch", offsetof(mbx_config, normalization), MBX_NORM_BATCH},
        {"normalization", "none", offsetof(mbx_config, normalization), MBX_NORM_NONE},
    };
    size_t len;
    char *body = read_data("valid/minimal.json", &len);
    json_t *base = json_loadb(body, len, 0, NULL);
    free(body);
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
        json_t *j = json_deep_copy(base);
        json_object_set_new(j, "config", json_pack("{s:s}", enums[i].key, enums[i].value));
        if (strcmp(enums[i].value, "cxcywh") == 0) {
            /* the same anchors and box, as centre and size */
            json_object_set_new(j, "anchors", json_pack("[[f,f,f,f],[f,f,f,f]]", 0.25, 0.25, 0.3,
                                                        0.3, 0.7, 0.7, 0.4, 0.4));
        }
        mbx_request *r = parse_json(j);
        int got;
        memcpy(&got, (const char *)&r->config + enums[i].offset, sizeof got);
        if (got != enums[i].expect)
            fail_msg("config.%s = \"%s\" gave %d, expected %d", enums[i].key, enums[i].value,
                     got, enums[i].expect);
        if (strcmp(enums[i].value, "cxcywh") == 0)
            assert_int_equal(r->batch.anchors_format, MBX_BOX_CXCYWH);
        mbx_request_free(r);
        json_decref(j);
    }
    /* two variances: centre and size, copied into the unused slots */
    json_t *j = json_deep_copy(base);
    json_object_set_new(j, "config", json_pack("{s:[f,i]}", "variances", 0.15, 1));
    mbx_request *r = parse_json(j);
    assert_int_equal(r->config.num_variances, 2);
    assert_true(r->config.variances[0] == 0.15 && r->config.variances[1] == 1.0);
    mbx_request_free(r);
    json_decref(j);
    json_decref(base);
}

/* Nested, flat, b64 float32 and b64 float64 give the same floats. */
static void test_tensor_forms_equal(void **state)
{
    (void)state;
    mbx_request *a = parse_file("valid/minimal.json");
    mbx_request *b = parse_file("valid/tensor_forms.json");
    assert_memory_equal(a->batch.anchors, b->batch.anchors, 8 * sizeof(float));
    assert_memory_equal(a->batch.loc, b->batch.loc, 8 * sizeof(float));
    assert_memory_equal(a->batch.conf, b->batch.conf, 6 * sizeof(float));
    assert_memory_equal(a->batch.targets[0].boxes, b->batch.targets[0].boxes, 4 * sizeof(float));
    mbx_request_free(a);
    mbx_request_free(b);
}

static void test_difficult_and_empty(void **state)
{
    (void)state;
    mbx_request *req = parse_file("valid/difficult_and_empty_image.json");
    const mbx_batch *b = &req->batch;
    assert_int_equal(b->batch, 2);
    assert_int_equal(b->targets[0].num_boxes, 2);
    assert_int_equal(b->targets[0].labels[1], 2);
    assert_non_null(b->targets[0].difficult);
    assert_int_equal(b->targets[0].difficult[0], 0);
    assert_int_equal(b->targets[0].difficult[1], 1);
    assert_int_equal(b->targets[1].num_boxes, 0);
    assert_int_equal(req->max_boxes, 2);
    mbx_request_free(req);
    req = parse_file("valid/empty_boxes_flat.json");
    assert_int_equal(req->batch.targets[0].num_boxes, 0);
    assert_int_equal(req->max_boxes, 0);
    mbx_request_free(req);
    req = parse_file("valid/one_class_no_background.json");
    assert_int_equal(req->batch.num_classes, 1);
    assert_int_equal(req->config.background_label, -1);
    mbx_request_free(req);
}

/* The golden priors file of a preset: its anchors and its prior_box member. */
static json_t *golden_priors(const char *name)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof path, "%s/priors/%s.json", th_env("MBX_GOLDEN_DIR"), name);
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("%s: %s", path, err.text);
    return j;
}

/* A request of one image with A anchors given by the anchors member. */
static json_t *request_with_anchors(json_t *anchors, int64_t A, const char *box_format)
{
    size_t nloc = (size_t)A * 4 * 4, nconf = (size_t)A * 2 * 4;
    unsigned char *zeros = calloc(nloc, 1);
    char *b64loc = th_b64_encode(zeros, nloc), *b64conf = th_b64_encode(zeros, nconf);
    json_t *j = json_pack("{s:o, s:{s:[i,I,i], s:s, s:s}, s:{s:[i,I,i], s:s, s:s},"
                          " s:[{s:[[f,f,f,f]], s:[i]}], s:{s:s}}",
                          "anchors", anchors, "loc", "shape", 1, (json_int_t)A, 4, "dtype",
                          "float32", "b64", b64loc, "conf", "shape", 1, (json_int_t)A, 2,
                          "dtype", "float32", "b64", b64conf, "targets", "boxes", 0.3, 0.3, 0.6,
                          0.6, "labels", 1, "config", "box_format", box_format);
    free(zeros);
    free(b64loc);
    free(b64conf);
    assert_non_null(j);
    return j;
}

static void test_preset_and_prior_box(void **state)
{
    (void)state;
    static const char *const names[] = {"ssd300_voc", "ssd300_coco", "ssd512_voc"};
    for (int i = 0; i < 3; i++) {
        json_t *g = golden_priors(names[i]);
        float *want;
        int64_t count, shape[4];
        int rank;
        assert_int_equal(th_decode_tensor(json_object_get(g, "anchors"), &want, &count, shape,
                                          &rank),
                         0);
        int64_t A = shape[0];
        /* preset, with GT in cxcywh: generated anchors stay xyxy */
        json_t *j = request_with_anchors(json_pack("{s:s}", "preset", names[i]), A, "cxcywh");
        mbx_request *req = parse_json(j);
        assert_int_equal(req->batch.num_anchors, A);
        assert_int_equal(req->batch.anchors_format, MBX_BOX_XYXY);
        assert_memory_equal(req->batch.anchors, want, (size_t)count * sizeof(float));
        mbx_request_free(req);
        json_decref(j);
        /* the same from the file's prior_box parameters */
        j = request_with_anchors(
            json_pack("{s:O}", "prior_box", json_object_get(g, "prior_box")), A, "xyxy");
        req = parse_json(j);
        assert_int_equal(req->batch.anchors_format, MBX_BOX_XYXY);
        assert_memory_equal(req->batch.anchors, want, (size_t)count * sizeof(float));
        mbx_request_free(req);
        json_decref(j);
        free(want);
        json_decref(g);
    }
}

static void test_prior_box_small(void **state)
{
    (void)state;
    mbx_request *req = parse_file("valid/prior_box_anchors.json");
    assert_int_equal(req->batch.num_anchors, 16);
    assert_int_equal(req->batch.anchors_format, MBX_BOX_XYXY);
    for (int a = 0; a < 16; a++) {
        const float *box = req->batch.anchors + 4 * a;
        /* clip "corners": every coordinate within [0, 1], boxes not degenerate */
        for (int k = 0; k < 4; k++)
            assert_true(box[k] >= 0.0f && box[k] <= 1.0f);
        assert_true(box[2] > box[0] && box[3] > box[1]);
    }
    mbx_request_free(req);
}

/* Body bytes end right before an unreadable page, with no NUL after them. */
static void test_body_at_guard_page(void **state)
{
    (void)state;
    size_t len;
    char *body = read_data("valid/tensor_forms.json", &len);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (len + page - 1) / page * page;
    char *m = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + span, page, PROT_NONE), 0);
    memcpy(m + span - len, body, len);
    mbx_request *req = parse_ok(m + span - len, len);
    assert_int_equal(req->batch.num_anchors, 2);
    mbx_request_free(req);
    /* a truncated body is malformed, not over-read */
    mbx_detail d = {0, ""};
    memcpy(m + span - (len - 1), body, len - 1);
    req = NULL;
    assert_int_equal(mbx_request_parse_json(m + span - (len - 1), len - 2, &req, &d),
                     MBX_E_MALFORMED_JSON);
    assert_null(req);
    munmap(m, span + page);
    free(body);
}


/* Reads the whole lifted stream through mbx_lift_read with chunks of chunk bytes. */
static char *lifted_stream(mbx_lift *l, size_t chunk, size_t *len)
{
    char *out = malloc(l->len + 64 * (l->count + 1));
    size_t n = 0, got;
    char buf[1024];
    while ((got = mbx_lift_read(buf, chunk, l)) > 0) {
        memcpy(out + n, buf, got);
        n += got;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static void test_lift(void **state)
{
    (void)state;
    char long_a[301], long_b[301];
    memset(long_a, 'A', 300);
    long_a[300] = '\0';
    memset(long_b, 'b', 300);
    long_b[300] = '\0';
    char body[4096];
    /* lifted: a and d (value strings, plain); not: the key, the array element,
     * the escaped string, the short string */
    snprintf(body, sizeof body,
             "{\"a\" :\n \"%s\", \"%s\": 1, \"c\": [\"%s\"], \"e\": \"x\\/%s\", \"f\": \"short\","
             " \"d\":\"%s\"}",
             long_a, long_b, long_b, long_a, long_b);
    size_t len = strlen(body);
    mbx_lift l;
    assert_int_equal(mbx_lift_scan(&l, body, len, 256), 0);
    assert_int_equal(l.count, 2);
    assert_int_equal(strncmp(body + l.items[0].start - 1, "\"AAAA", 5), 0);
    assert_int_equal(l.items[0].len, 300);
    assert_int_equal(strncmp(body + l.items[1].start - 5, "\"d\":\"bbbb", 9), 0);
    assert_int_equal(l.items[1].len, 300);

    char want[4096];
    snprintf(want, sizeof want,
             "{\"a\" :\n \"\\u001bmbx#0\", \"%s\": 1, \"c\": [\"%s\"], \"e\": \"x\\/%s\", "
             "\"f\": \"short\", \"d\":\"\\u001bmbx#1\"}",
             long_b, long_b, long_a);
    const size_t chunks[] = {1, 7, 1024};
    for (int c = 0; c < 3; c++) {
        l.pos = l.next = l.ph_len = l.ph_pos = 0;
        size_t n;
        char *stream = lifted_stream(&l, chunks[c], &n);
        assert_string_equal(stream, want);
        free(stream);
    }
    /* jansson sees placeholders; they resolve to the body's bytes */
    l.pos = l.next = l.ph_len = l.ph_pos = 0;
    json_t *j = json_load_callback(mbx_lift_read, &l, 0, NULL);
    assert_non_null(j);
    const char *t = json_string_value(json_object_get(j, "d"));
    size_t tl = json_string_length(json_object_get(j, "d"));
    assert_ptr_equal(mbx_lift_resolve(&l, &t, &tl), &l.items[1]);
    assert_ptr_equal(t, body + l.items[1].start);
    assert_int_equal(tl, 300);
    t = json_string_value(json_object_get(j, "f"));
    tl = 5;
    assert_null(mbx_lift_resolve(&l, &t, &tl));
    assert_null(mbx_lift_resolve(NULL, &t, &tl));
    const char *bad = "\x1b" "mbx#2"; /* no such item */
    tl = 6;
    assert_null(mbx_lift_resolve(&l, &bad, &tl));
    json_decref(j);

    /* stream positions map back to the body */
    size_t ph0 = strlen("\\u001bmbx#0");
    size_t s0 = l.items[0].start;
    assert_int_equal(mbx_lift_body_offset(&l, 3), 3);
    assert_int_equal(mbx_lift_body_offset(&l, s0 + 2), s0); /* inside the placeholder */
    assert_int_equal(mbx_lift_body_offset(&l, s0 + ph0), s0 + 300);
    assert_int_equal(mbx_lift_body_offset(&l, s0 + ph0 + 5), s0 + 305);
    mbx_lift_free(&l);

    /* unterminated string: the scan stops, jansson reports the error */
    assert_int_equal(mbx_lift_scan(&l, "{\"a\": \"abc", 10, 256), 0);
    assert_int_equal(l.count, 0);
    mbx_lift_free(&l);
}

/* A body whose last bytes are a lifted b64 string, against an unreadable page. */
static void test_lifted_body_at_guard_page(void **state)
{
    (void)state;
    const int64_t A = 100;
    float loc[400];
    for (int i = 0; i < 400; i++)
        loc[i] = (float)i / 64;
    char *b64 = th_b64_encode((const unsigned char *)loc, sizeof loc);
    json_t *anchors = json_array(), *conf = json_array(), *row = json_array();
    for (int64_t a = 0; a < A; a++) {
        json_array_append_new(anchors, json_pack("[f,f,f,f]", 0.1, 0.1, 0.4, 0.4));
        json_array_append_new(row, json_pack("[i,i]", 0, 1));
    }
    json_array_append_new(conf, row);
    json_t *j = json_pack("{s:o, s:o, s:[], s:{s:[i,I,i], s:s, s:s}}", "anchors", anchors, "conf",
                          conf, "targets", "loc", "shape", 1, (json_int_t)A, 4, "dtype", "float32",
                          "b64", b64);
    assert_non_null(j);
    /* targets has one image: put it there, keeping loc (and its b64) last */
    json_array_append_new(json_object_get(j, "targets"),
                          json_pack("{s:[], s:[]}", "boxes", "labels"));
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t len = strlen(text);
    assert_true(len > 2 && text[len - 3] == '"'); /* ends with ..."}} */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (len + page - 1) / page * page;
    char *m = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + span, page, PROT_NONE), 0);
    memcpy(m + span - len, text, len);
    mbx_request *req = parse_ok(m + span - len, len);
    assert_memory_equal(req->batch.loc, loc, sizeof loc);
    mbx_request_free(req);
    munmap(m, span + page);
    free(text);
    free(b64);
    json_decref(j);
}

static void test_numbers(void **state)
{
    (void)state;
    const char *body =
        "{\"anchors\":[[0,0,1,1]],\"loc\":[[[0.1,3,-3.4028234663852886e38,1e-46]]],"
        "\"conf\":[[[-1e-45,16777217]]],\"targets\":[{\"boxes\":[],\"labels\":[]}]}";
    mbx_request *req = parse_ok(body, strlen(body));
    assert_true(req->batch.loc[0] == 0.1f);
    assert_true(req->batch.loc[1] == 3.0f);
    assert_true(req->batch.loc[2] == -3.4028234663852886e38f);
    assert_true(req->batch.loc[3] == 0.0f);   /* underflows to zero: finite, accepted */
    assert_true(req->batch.conf[0] == -1e-45f);
    assert_true(req->batch.conf[1] == 16777216.0f); /* nearest float32 of the integer */
    mbx_request_free(req);
}

static void test_arguments(void **state)
{
    (void)state;
    mbx_detail d = {0, ""};
    mbx_request *req = NULL;
    assert_int_equal(mbx_request_parse_json("{}", 2, NULL, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_request_parse_json(NULL, 5, &req, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_request_parse_json(NULL, 0, &req, &d), MBX_E_MALFORMED_JSON);
    assert_int_equal(mbx_request_parse_json("{}", 2, &req, NULL), MBX_E_MISSING_FIELD);
    assert_null(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),     cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_tensor_forms_equal),   cmocka_unit_test(test_difficult_and_empty),
        cmocka_unit_test(test_preset_and_prior_box), cmocka_unit_test(test_prior_box_small),
        cmocka_unit_test(test_body_at_guard_page),   cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_arguments),          cmocka_unit_test(test_lift),
        cmocka_unit_test(test_lifted_body_at_guard_page),
    };
    return cmocka_run_group_tests_name("codec parse", tests, NULL, NULL);
}
