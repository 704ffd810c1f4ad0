/*
 * oip_request.c - an Open Inference Protocol inference request (JSON header
 * + binary tensors) to a validated mbx_oip_request whose mbx_batch the core
 * reads.  After the framing pass (oip_frame.c): inputs matched to their
 * names (unknown or repeated ones refused), datatypes and ranks checked,
 * shapes checked against each other, parameters and outputs parsed, the
 * configuration validated; only then is anything allocated from a shape.
 * FP32 tensors (and INT64 labels, BOOL flags) are used in place in the body
 * when aligned; everything else is converted into buffers the request owns.
 * GT boxes, labels, counts and anchors are checked here so that errors name
 * the input; loc and conf used in place are left to the core's NaN check.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "oip_internal.h"

enum {
    IN_LOC = 0,
    IN_CONF,
    IN_ANCHORS,
    IN_GT_BOXES,
    IN_GT_LABELS,
    IN_GT_COUNTS,
    IN_GT_DIFFICULT,
    IN_COUNT
};

static const struct {
    const char *name;
    int rank;
    uint32_t dtypes;     /* bit per accepted mbx_oip_dtype */
    const char *dtext;   /* the same, for messages */
    const char *shape;   /* for messages */
} input_spec[IN_COUNT] = {
    [IN_LOC] = {"loc", 3,
                1u << MBX_OIP_FP32 | 1u << MBX_OIP_FP16 | 1u << MBX_OIP_BF16 | 1u << MBX_OIP_FP64,
                "FP32, FP16, BF16 or FP64", "[B,A,4]"},
    [IN_CONF] = {"conf", 3,
                 1u << MBX_OIP_FP32 | 1u << MBX_OIP_FP16 | 1u << MBX_OIP_BF16 | 1u << MBX_OIP_FP64,
                 "FP32, FP16, BF16 or FP64", "[B,A,C]"},
    [IN_ANCHORS] = {"anchors", 2, 1u << MBX_OIP_FP32, "FP32", "[A,4]"},
    [IN_GT_BOXES] = {"gt_boxes", 2, 1u << MBX_OIP_FP32, "FP32", "[N,4]"},
    [IN_GT_LABELS] = {"gt_labels", 1, 1u << MBX_OIP_INT32 | 1u << MBX_OIP_INT64, "INT32 or INT64",
                      "[N]"},
    [IN_GT_COUNTS] = {"gt_counts", 1, 1u << MBX_OIP_INT32, "INT32", "[B]"},
    [IN_GT_DIFFICULT] = {"gt_difficult", 1, 1u << MBX_OIP_BOOL, "BOOL", "[N]"},
};

#define MAX_OWNED 8

struct mbx_oip_storage {
    void *owned[MAX_OWNED];
    int num_owned;
    oip_tensor deferred[2];    /* loc, conf left in the body (name points to a literal) */
    int is_deferred[2];
    mbx_image_targets *targets;
    char *id;
};

/* Allocates bytes (at least 1) owned by the request; NULL when out of memory. */
static void *own(struct mbx_oip_storage *s, size_t bytes)
{
    if (s->num_owned == MAX_OWNED)
        return NULL;
    void *p = mbx_codec_malloc(bytes ? bytes : 1);
    if (p)
        s->owned[s->num_owned++] = p;
    return p;
}

static int oom(mbx_detail *d)
{
    return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the request's tensors");
}

void mbx_oip_request_free(mbx_oip_request *req)
{
    if (!req)
        return;
    struct mbx_oip_storage *s = req->storage;
    if (s) {
        for (int i = 0; i < s->num_owned; i++)
            mbx_codec_free(s->owned[i]);
        mbx_codec_free(s->targets);
        mbx_codec_free(s->id);
        mbx_codec_free(s);
    }
    mbx_codec_free(req);
}

mbx_shape mbx_oip_request_shape(const mbx_oip_request *req, int num_slots)
{
    mbx_shape s;
    s.batch = req->core.batch.batch;
    s.num_anchors = req->core.batch.num_anchors;
    s.num_classes = req->core.batch.num_classes;
    s.max_boxes = req->core.max_boxes;
    s.num_slots = num_slots;
    return s;
}

/* ------------------------------------------------------------- checking */

/*
 * Fails with "inputs[<name>]: <message>", or "inputs[<name>][<index>]: ..."
 * when index >= 0.
 */
static int fail_at(mbx_detail *d, int code, const oip_tensor *t, int64_t index, const char *fmt,
                   ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int fail_at(mbx_detail *d, int code, const oip_tensor *t, int64_t index, const char *fmt,
                   ...)
{
    char msg[200];
    va_list ap;
    jpath p;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oip_tensor_path(&p, t, 1);
    if (index >= 0)
        jpath_index(&p, index);
    return jpath_fail(d, code, &p, "%s", msg);
}

#define tensor_fail(d, code, t, ...) fail_at(d, code, t, -1, __VA_ARGS__)

/* Matches inputs to names: unknown and repeated names are refused. */
static int match_inputs(const oip_frame *f, const oip_tensor *in[IN_COUNT], mbx_detail *d)
{
    for (size_t i = 0; i < f->num_inputs; i++) {
        const oip_tensor *t = &f->inputs[i];
        int which = -1;
        for (int k = 0; k < IN_COUNT; k++)
            if (strcmp(t->name, input_spec[k].name) == 0)
                which = k;
        if (which < 0) {
            jpath p;
            oip_tensor_path(&p, t, 0);
            return jpath_fail(d, MBX_E_UNKNOWN_FIELD, &p,
                              "unknown input \"%.40s\" (inputs are loc, conf, anchors, gt_boxes, "
                              "gt_labels, gt_counts, gt_difficult)",
                              t->name);
        }
        if (in[which]) {
            jpath p;
            jpath_init(&p);
            jpath_key(&p, "inputs");
            jpath_index(&p, (int64_t)i);
            return jpath_fail(d, MBX_E_UNKNOWN_FIELD, &p, "input \"%s\" given twice (also inputs[%zu])",
                              t->name, in[which]->index);
        }
        in[which] = t;
    }
    return 0;
}

/* Datatype and rank of each given input, and last dimensions of 4. */
static int check_kinds(const oip_tensor *in[IN_COUNT], mbx_detail *d)
{
    char buf[96];
    for (int k = 0; k < IN_COUNT; k++) {
        const oip_tensor *t = in[k];
        if (!t)
            continue;
        if (!(input_spec[k].dtypes & (1u << t->dtype)))
            return tensor_fail(d, MBX_E_WRONG_TYPE, t, "datatype %s is not accepted (%s)",
                               mbx_oip_dtype_name(t->dtype), input_spec[k].dtext);
        if (t->rank != input_spec[k].rank)
            return tensor_fail(d, MBX_E_SHAPE_MISMATCH, t, "shape %s has rank %d, expected %s",
                               oip_shape_str(t->shape, t->rank, buf, sizeof buf), t->rank,
                               input_spec[k].shape);
        if ((k == IN_LOC || k == IN_ANCHORS || k == IN_GT_BOXES) &&
            t->shape[t->rank - 1] != 4)
            return tensor_fail(d, MBX_E_SHAPE_MISMATCH, t, "shape %s: last dimension must be 4 (%s)",
                               oip_shape_str(t->shape, t->rank, buf, sizeof buf),
                               input_spec[k].shape);
    }
    return 0;
}

/* "inputs[conf]: shape [2,100,5] disagrees with loc [2,99,4]" */
static int disagree(mbx_detail *d, const oip_tensor *t, const oip_tensor *other,
                    const char *what)
{
    char a[96], b[96];
    return tensor_fail(d, MBX_E_SHAPE_MISMATCH, t, "shape %s disagrees with %s %s (%s)",
                       oip_shape_str(t->shape, t->rank, a, sizeof a), other->name,
                       oip_shape_str(other->shape, other->rank, b, sizeof b), what);
}

static int check_shapes(const oip_tensor *in[IN_COUNT], mbx_detail *d)
{
    const oip_tensor *loc = in[IN_LOC], *conf = in[IN_CONF];
    int64_t B = loc->shape[0], A = loc->shape[1];
    if (B == 0)
        return tensor_fail(d, MBX_E_OUT_OF_RANGE, loc, "the batch is empty (B = 0)");
    if (A == 0)
        return tensor_fail(d, MBX_E_OUT_OF_RANGE, loc, "no anchors (A = 0)");
    if (conf->shape[0] != B)
        return disagree(d, conf, loc, "batch size");
    if (conf->shape[1] != A)
        return disagree(d, conf, loc, "anchor count");
    if (conf->shape[2] == 0)
        return tensor_fail(d, MBX_E_OUT_OF_RANGE, conf, "no class columns (C = 0)");
    if (in[IN_ANCHORS] && in[IN_ANCHORS]->shape[0] != A)
        return disagree(d, in[IN_ANCHORS], loc, "anchor count");
    int64_t N = in[IN_GT_BOXES]->shape[0];
    if (in[IN_GT_LABELS]->shape[0] != N)
        return disagree(d, in[IN_GT_LABELS], in[IN_GT_BOXES], "one label per box");
    if (in[IN_GT_DIFFICULT] && in[IN_GT_DIFFICULT]->shape[0] != N)
        return disagree(d, in[IN_GT_DIFFICULT], in[IN_GT_BOXES], "one flag per box");
    if (in[IN_GT_COUNTS]->shape[0] != B)
        return disagree(d, in[IN_GT_COUNTS], loc, "one count per image");
    return 0;
}

/* Re-issues a core config error under the protocol's names ("parameters.alpha"). */
static int config_fail(mbx_detail *d, int rc, const mbx_detail *sub, const json_t *params)
{
    const char *msg = sub->message[0] ? sub->message : mbx_error_message(rc);
    if (strncmp(msg, "config.", 7) != 0)
        return mbx_detail_set(d, rc, "%s", msg);
    msg += 7;
    /* "variances[i]: ..." names the scalar parameter the client sent, if that is how. */
    if (strncmp(msg, "variances[", 10) == 0 && params && msg[10] >= '0' && msg[10] <= '3' &&
        !json_object_get(params, "variances")) {
        static const char *const two[2] = {"variance_center", "variance_size"};
        static const char *const four[4] = {"variance_cx", "variance_cy", "variance_w",
                                            "variance_h"};
        int i = msg[10] - '0';
        const char *rest = strchr(msg, ']');
        const char *name = json_object_get(params, "variance_center") ||
                                   json_object_get(params, "variance_size")
                               ? (i < 2 ? two[i] : NULL)
                               : four[i];
        if (name && rest)
            return mbx_detail_set(d, rc, "parameters.%s%s", name, rest + 1);
    }
    return mbx_detail_set(d, rc, "parameters.%s", msg);
}

/* Image and box within it of the flat box index k, from the per-image counts. */
static void locate(const int64_t *counts, int64_t B, int64_t k, int64_t *img, int64_t *box)
{
    int64_t i = 0, first = 0;
    while (i < B && first + counts[i] <= k)
        first += counts[i++];
    *img = i;
    *box = k - first;
}

/* Checks finite values and positive sizes of n boxes in fmt. */
static int check_boxes(const float *b, int64_t n, mbx_box_format fmt, const oip_tensor *t,
                       const int64_t *counts, int64_t B, mbx_detail *d)
{
    for (int64_t k = 0; k < n; k++) {
        const float *x = b + 4 * k;
        int finite = isfinite(x[0]) && isfinite(x[1]) && isfinite(x[2]) && isfinite(x[3]);
        const char *bad = NULL;
        double lhs = 0, rhs = 0;
        if (fmt == MBX_BOX_XYXY) {
            if (!(x[2] > x[0]))
                bad = "x2 <= x1", lhs = x[2], rhs = x[0];
            else if (!(x[3] > x[1]))
                bad = "y2 <= y1", lhs = x[3], rhs = x[1];
        } else {
            if (!(x[2] > 0))
                bad = "width <= 0", lhs = x[2];
            else if (!(x[3] > 0))
                bad = "height <= 0", lhs = x[3];
        }
        /* The rest of the core's rule: a cxcywh size lost next to its centre. */
        const char *why = NULL;
        if (finite && !bad && mbx_box_check(x, fmt, &why) != 0)
            bad = why, lhs = x[2] < x[3] ? x[2] : x[3];
        if (finite && !bad)
            continue;
        char where[64] = "";
        if (counts) {
            int64_t img, box;
            locate(counts, B, k, &img, &box);
            snprintf(where, sizeof where, " (image %" PRId64 ", box %" PRId64 ")", img, box);
        }
        if (!finite)
            return fail_at(d, MBX_E_NOT_FINITE, t, k, "NaN or infinity%s", where);
        if (fmt == MBX_BOX_XYXY)
            return fail_at(d, MBX_E_DEGENERATE_BOX, t, k, "%s (%.9g <= %.9g)%s", bad, lhs, rhs,
                           where);
        return fail_at(d, MBX_E_DEGENERATE_BOX, t, k, "%s (%.9g)%s", bad, lhs, where);
    }
    return 0;
}

/* ------------------------------------------------------------- loading */

/* The float32 values of t: in place, or converted into a buffer the request owns. */
static int get_f32(struct mbx_oip_storage *s, const oip_tensor *t, const float **out,
                   int *in_place, mbx_detail *d)
{
    const float *p = oip_tensor_f32_in_place(t);
    if (p) {
        *out = p;
        (*in_place)++;
        return 0;
    }
    float *buf = own(s, (size_t)t->count * sizeof(float));
    if (!buf)
        return oom(d);
    *out = buf;
    return oip_load_f32(t, buf, d);
}

static int load_anchors(struct mbx_oip_storage *s, const oip_tensor *t, const char *preset,
                        const mbx_config *cfg, mbx_oip_request *req, mbx_detail *d)
{
    mbx_batch *b = &req->core.batch;
    int rc;
    if (t && preset) {
        jpath p;
        jpath_init(&p);
        jpath_key(&p, "parameters");
        jpath_key(&p, "anchor_preset");
        return jpath_fail(d, MBX_E_UNKNOWN_FIELD, &p,
                          "given together with an anchors input; send one of them");
    }
    if (t) {
        rc = get_f32(s, t, &b->anchors, &req->in_place, d);
        if (rc)
            return rc;
        b->anchors_format = cfg->box_format;
        return check_boxes(b->anchors, t->shape[0], b->anchors_format, t, NULL, 0, d);
    }
    if (!preset)
        return mbx_detail_set(d, MBX_E_MISSING_FIELD,
                              "inputs: no input named anchors and no parameters.anchor_preset");
    mbx_prior_params pp;
    mbx_detail sub = {0, ""};
    int64_t count = 0;
    rc = mbx_prior_preset(preset, &pp, &sub);
    if (rc == 0)
        rc = mbx_prior_count(&pp, &count, &sub);
    if (rc) {
        char names[128] = "";
        const char *const *all = mbx_prior_preset_names();
        size_t n = 0;
        for (int i = 0; all && all[i] && n < sizeof names; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", all[i]);
        return mbx_detail_set(d, rc, "parameters.anchor_preset: unknown preset \"%.40s\" (known: %s)",
                              preset, names);
    }
    if (count != b->num_anchors)
        return mbx_detail_set(d, MBX_E_SHAPE_MISMATCH,
                              "parameters.anchor_preset: %s has %" PRId64
                              " anchors, loc has A = %" PRId64,
                              preset, count, b->num_anchors);
    float *buf = own(s, (size_t)count * 4 * sizeof(float));
    if (!buf)
        return oom(d);
    rc = mbx_prior_generate(&pp, buf, count, &sub);
    if (rc)
        return mbx_detail_set(d, rc, "parameters.anchor_preset: %s", sub.message);
    b->anchors = buf;
    b->anchors_format = MBX_BOX_XYXY;
    return 0;
}

static int load_targets(struct mbx_oip_storage *s, const oip_tensor *in[IN_COUNT],
                        mbx_oip_request *req, mbx_detail *d)
{
    const mbx_config *cfg = &req->core.config;
    mbx_batch *b = &req->core.batch;
    const int64_t B = b->batch, C = b->num_classes, N = in[IN_GT_BOXES]->shape[0];
    const oip_tensor *tcounts = in[IN_GT_COUNTS], *tlabels = in[IN_GT_LABELS];
    const oip_tensor *tdiff = in[IN_GT_DIFFICULT];
    int rc;

    /* Counts first: small, and they say which image a bad box belongs to. */
    int64_t *counts = own(s, (size_t)B * sizeof(int64_t));
    if (!counts)
        return oom(d);
    rc = oip_load_i64(tcounts, counts, d);
    if (rc)
        return rc;
    int64_t total = 0;
    req->core.max_boxes = 0;
    for (int64_t i = 0; i < B; i++) {
        if (counts[i] < 0)
            return fail_at(d, MBX_E_OUT_OF_RANGE, tcounts, i, "negative count %" PRId64,
                           counts[i]);
        total += counts[i];
        if (counts[i] > req->core.max_boxes)
            req->core.max_boxes = counts[i];
    }
    if (total != N)
        return tensor_fail(d, MBX_E_SHAPE_MISMATCH, tcounts,
                           "counts sum to %" PRId64 " boxes, gt_boxes has N = %" PRId64, total, N);

    const float *boxes = NULL;
    rc = get_f32(s, in[IN_GT_BOXES], &boxes, &req->in_place, d);
    if (rc == 0)
        rc = check_boxes(boxes, N, cfg->box_format, in[IN_GT_BOXES], counts, B, d);
    if (rc)
        return rc;

    const int64_t *labels = oip_tensor_i64_in_place(tlabels);
    if (labels) {
        req->in_place++;
    } else {
        int64_t *buf = own(s, (size_t)N * sizeof(int64_t));
        if (!buf)
            return oom(d);
        rc = oip_load_i64(tlabels, buf, d);
        if (rc)
            return rc;
        labels = buf;
    }
    for (int64_t k = 0; k < N; k++) {
        if (labels[k] >= 0 && labels[k] < C && labels[k] != cfg->background_label)
            continue;
        int64_t img, box;
        locate(counts, B, k, &img, &box);
        if (labels[k] < 0 || labels[k] >= C)
            return fail_at(d, MBX_E_BAD_LABEL, tlabels, k,
                           "label %" PRId64 " is out of range [0, %" PRId64 ") (image %" PRId64
                           ", box %" PRId64 ")",
                           labels[k], C, img, box);
        return fail_at(d, MBX_E_BAD_LABEL, tlabels, k,
                       "label %" PRId64 " is the background_label (image %" PRId64
                       ", box %" PRId64 ")",
                       labels[k], img, box);
    }

    const uint8_t *difficult = NULL;
    if (tdiff) {
        if (!tdiff->data) {
            rc = oip_load_bool(tdiff, NULL, d);
            difficult = tdiff->bytes;
            req->in_place++;
        } else {
            uint8_t *buf = own(s, (size_t)N);
            if (!buf)
                return oom(d);
            rc = oip_load_bool(tdiff, buf, d);
            difficult = buf;
        }
        if (rc)
            return rc;
    }

    s->targets = mbx_codec_calloc((size_t)B, sizeof *s->targets);
    if (!s->targets)
        return oom(d);
    int64_t off = 0;
    for (int64_t i = 0; i < B; i++) {
        mbx_image_targets *it = &s->targets[i];
        it->boxes = boxes + 4 * off;
        it->labels = labels + off;
        it->difficult = difficult ? difficult + off : NULL;
        it->num_boxes = counts[i];
        off += counts[i];
    }
    b->targets = s->targets;
    return 0;
}

/*
 * loc or conf: in place, deferred (binary, not usable in place, with
 * MBX_OIP_PARSE_DEFER_INPUTS: kept as a description of its bytes in the
 * body), or converted into a buffer the request owns.
 */
static int get_input(struct mbx_oip_storage *s, const oip_tensor *t, int which, unsigned flags,
                     const float **out, int *in_place, mbx_detail *d)
{
    if ((flags & MBX_OIP_PARSE_DEFER_INPUTS) && !t->data && !oip_tensor_f32_in_place(t)) {
        s->deferred[which] = *t;
        s->deferred[which].name = input_spec[which == MBX_OIP_INPUT_LOC ? IN_LOC : IN_CONF].name;
        s->is_deferred[which] = 1;
        *out = NULL;
        return 0;
    }
    return get_f32(s, t, out, in_place, d);
}

static int build(const oip_frame *f, mbx_oip_request *req, unsigned flags, mbx_detail *d)
{
    const oip_tensor *in[IN_COUNT] = {NULL};
    struct mbx_oip_storage *s = req->storage;
    mbx_batch *b = &req->core.batch;
    oip_params op;
    int rc;

    rc = match_inputs(f, in, d);
    if (rc)
        return rc;
    static const int required[] = {IN_LOC, IN_CONF, IN_GT_BOXES, IN_GT_LABELS, IN_GT_COUNTS};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
        if (!in[required[k]])
            return mbx_detail_set(d, MBX_E_MISSING_FIELD, "inputs: no input named %s (%s %s)",
                                  input_spec[required[k]].name, input_spec[required[k]].dtext,
                                  input_spec[required[k]].shape);
    rc = check_kinds(in, d);
    if (rc == 0)
        rc = check_shapes(in, d);
    if (rc)
        return rc;
    /* JSON data must match its shape before anything is sized from that shape. */
    for (int k = 0; k < IN_COUNT; k++)
        if (in[k] && (rc = oip_check_data(in[k], d)))
            return rc;

    mbx_config_default(&req->core.config);
    rc = oip_params_parse(f->parameters, &req->core.config, &op, d);
    if (rc)
        return rc;
    mbx_detail sub = {0, ""};
    rc = mbx_config_validate(&req->core.config, in[IN_CONF]->shape[2], &sub);
    if (rc)
        return config_fail(d, rc, &sub, f->parameters);
    rc = oip_outputs_parse(f->outputs, op.binary_data_output, req, d);
    if (rc)
        return rc;
    req->gradient_datatype = op.gradient_datatype;
    if (f->id) {
        size_t n = strlen(f->id);
        s->id = mbx_codec_malloc(n + 1);
        if (!s->id)
            return oom(d);
        memcpy(s->id, f->id, n + 1);
        req->id = s->id;
    }

    b->batch = in[IN_LOC]->shape[0];
    b->num_anchors = in[IN_LOC]->shape[1];
    b->num_classes = in[IN_CONF]->shape[2];
    rc = load_anchors(s, in[IN_ANCHORS], op.anchor_preset, &req->core.config, req, d);
    if (rc == 0)
        rc = load_targets(s, in, req, d);
    if (rc == 0)
        rc = get_input(s, in[IN_LOC], MBX_OIP_INPUT_LOC, flags, &b->loc, &req->in_place, d);
    if (rc == 0)
        rc = get_input(s, in[IN_CONF], MBX_OIP_INPUT_CONF, flags, &b->conf, &req->in_place, d);
    return rc;
}

int mbx_oip_request_parse(const uint8_t *body, size_t len, size_t header_len,
                          mbx_oip_request **out, mbx_detail *detail)
{
    return mbx_oip_request_parse_ex(body, len, header_len, 0, out, detail);
}

int mbx_oip_request_deferred(const mbx_oip_request *req, int input)
{
    return req && req->storage && (input == MBX_OIP_INPUT_LOC || input == MBX_OIP_INPUT_CONF) &&
           req->storage->is_deferred[input];
}

int64_t mbx_oip_request_load_input(const mbx_oip_request *req, int input, int64_t image,
                                   const int32_t *rows, int64_t n, float *dst)
{
    const oip_tensor *t = &req->storage->deferred[input];
    const int64_t A = req->core.batch.num_anchors;
    const int64_t w = input == MBX_OIP_INPUT_LOC ? 4 : req->core.batch.num_classes;
    if (!rows) {
        const int64_t bad = oip_load_f32_range(t, image * A * w, A * w, dst);
        return bad < A * w ? bad : -1;
    }
    for (int64_t k = 0; k < n; k++) {
        const int64_t a = (int64_t)rows[k] - image * A;
        const int64_t bad = oip_load_f32_range(t, (image * A + a) * w, w, dst + a * w);
        if (bad < w)
            return a * w + bad;
    }
    return -1;
}

int mbx_oip_request_input_fail(const mbx_oip_request *req, int input, int64_t image,
                               int64_t index, mbx_detail *detail)
{
    const oip_tensor *t = &req->storage->deferred[input];
    const int64_t w = input == MBX_OIP_INPUT_LOC ? 4 : req->core.batch.num_classes;
    return oip_load_fail(t, image * req->core.batch.num_anchors * w + index, detail);
}

int mbx_oip_request_parse_ex(const uint8_t *body, size_t len, size_t header_len, unsigned flags,
                             mbx_oip_request **out, mbx_detail *detail)
{
    oip_frame f;
    int rc;
    if (!out)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!body && len)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "body is NULL");
    rc = oip_frame_parse(body ? body : (const uint8_t *)"", len, header_len, &f, detail);
    if (rc)
        return rc;
    mbx_oip_request *req = mbx_codec_calloc(1, sizeof *req);
    if (req)
        req->storage = mbx_codec_calloc(1, sizeof *req->storage);
    if (!req || !req->storage) {
        mbx_codec_free(req);
        oip_frame_release(&f);
        return oom(detail);
    }
    rc = build(&f, req, flags, detail);
    oip_frame_release(&f);
    if (rc) {
        mbx_oip_request_free(req);
        return rc;
    }
    *out = req;
    return 0;
}

/* -------------------------------------------------------------- results */

/* Bit per requested output. */
static uint32_t requested(const mbx_oip_request *req)
{
    uint32_t m = 0;
    for (int k = 0; k < req->num_outputs; k++)
        m |= 1u << req->output[k];
    return m;
}

#define BIT(o) (1u << MBX_OIP_OUT_##o)

uint32_t mbx_oip_request_outputs(const mbx_oip_request *req)
{
    return requested(req);
}

int mbx_oip_grads_from_rows(const mbx_oip_request *req)
{
    int any = 0;
    for (int k = 0; k < req->num_outputs; k++)
        if (req->output[k] == MBX_OIP_OUT_GRAD_LOC || req->output[k] == MBX_OIP_OUT_GRAD_CONF) {
            if (!req->binary[k])
                return 0;
            any = 1;
        }
    return any && req->gradient_datatype == MBX_OIP_FP32;
}

int mbx_oip_result_alloc(const mbx_oip_request *req, mbx_result *res, mbx_detail *d)
{
    return mbx_oip_result_alloc_ex(req, res, 0, d);
}

int mbx_oip_result_alloc_ex(const mbx_oip_request *req, mbx_result *res, unsigned flags,
                            mbx_detail *d)
{
    const mbx_batch *b = &req->core.batch;
    size_t BA = (size_t)b->batch * (size_t)b->num_anchors;
    uint32_t m = requested(req);
    memset(res, 0, sizeof *res);
    if (flags & MBX_RESULT_SPARSE_DIRECT) /* the sparse outputs need nothing here */
        m &= ~(BIT(GRAD_LOC_ROWS) | BIT(GRAD_LOC_VALUES) | BIT(GRAD_CONF_ROWS) |
               BIT(GRAD_CONF_VALUES));
    if ((flags & MBX_RESULT_GRADS_FROM_ROWS) && mbx_oip_grads_from_rows(req))
        m &= ~(BIT(GRAD_LOC) | BIT(GRAD_CONF)); /* sent from the sparse rows */
    /* Sizes: B*A*C <= MBX_CODEC_MAX_ELEMENTS was checked by the parser. */
    if ((m & BIT(PER_IMAGE_LOSS)) &&
        !(res->per_image = mbx_codec_calloc((size_t)b->batch, sizeof *res->per_image)))
        goto fail;
    /* Without MBX_RESULT_SPARSE_DIRECT the sparse forms are gathered from the dense
     * arrays (see oip_response.c).  Not zeroed: the core writes every element (runs of zeros included), and
     * memory reused from an earlier request would be cleared for nothing. */
    if ((m & (BIT(GRAD_LOC) | BIT(GRAD_LOC_ROWS) | BIT(GRAD_LOC_VALUES))) &&
        !(res->grad_loc = mbx_codec_malloc(BA * 4 * sizeof(float))))
        goto fail;
    if ((m & (BIT(GRAD_CONF) | BIT(GRAD_CONF_ROWS) | BIT(GRAD_CONF_VALUES))) &&
        !(res->grad_conf = mbx_codec_malloc(BA * (size_t)b->num_classes * sizeof(float))))
        goto fail;
    if ((m & (BIT(GRAD_LOC_ROWS) | BIT(GRAD_LOC_VALUES) | BIT(GRAD_CONF_ROWS) |
              BIT(GRAD_CONF_VALUES))) &&
        !(res->roles = mbx_codec_calloc(BA, 1)))
        goto fail;
    return 0;
fail:
    mbx_oip_result_release(res);
    return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the result arrays");
}

void mbx_oip_result_release(mbx_result *res)
{
    if (!res)
        return;
    mbx_codec_free(res->per_image);
    mbx_codec_free(res->grad_loc);
    mbx_codec_free(res->grad_conf);
    mbx_codec_free(res->matches);
    mbx_codec_free(res->roles);
    memset(res, 0, sizeof *res);
}
