/*
 * request.c - a /v1/loss body to a validated mbx_request.  Three steps:
 * read the document's structure (keys, config, outputs) and probe every
 * tensor's shape without allocating; check the shapes against each other,
 * the element cap and the config; only then allocate the request's storage
 * and copy the values in, rejecting non-finite numbers, degenerate boxes
 * and bad labels.  Every error names its JSON path.  Duplicate keys are
 * rejected (JSON_REJECT_DUPLICATES): a body whose meaning depends on which
 * duplicate wins is a client bug, and the check costs one hash lookup.
 * Long string values (b64 tensors) never pass through jansson: see lift.c.
 */
#include <inttypes.h>
#include <string.h>

#include "codec_internal.h"
#include "half.h"

struct mbx_request_storage {
    float *anchors, *loc, *conf, *boxes;
    int64_t *labels;
    uint8_t *difficult;
    mbx_image_targets *targets;
    /* MBX_REQUEST_DEFER_INPUTS: loc, conf left as b64 text in the body. */
    int deferred[2];
    mbx_tensor_src input[2];
};

enum anchors_kind { ANCHORS_TENSOR, ANCHORS_PRESET, ANCHORS_PRIOR_BOX };

/* What the probe step learnt, for the fill step. */
typedef struct probe {
    const mbx_lift *lift; /* long strings kept out of jansson */
    const json_t *anchors, *loc, *conf, *targets, *config, *outputs;
    enum anchors_kind anchors_kind;
    mbx_tensor_src anchors_src, loc_src, conf_src;
    mbx_prior_params prior;
    int64_t B, A, C;
    int64_t total_boxes;
    int any_difficult;
    unsigned flags; /* MBX_REQUEST_DEFER_INPUTS */
} probe;

void mbx_request_free(mbx_request *req)
{
    if (!req)
        return;
    if (req->storage) {
        struct mbx_request_storage *s = req->storage;
        mbx_codec_free(s->anchors);
        mbx_codec_free(s->loc);
        mbx_codec_free(s->conf);
        mbx_codec_free(s->boxes);
        mbx_codec_free(s->labels);
        mbx_codec_free(s->difficult);
        mbx_codec_free(s->targets);
        mbx_codec_free(s);
    }
    mbx_codec_free(req);
}

mbx_shape mbx_request_shape(const mbx_request *req, int num_slots)
{
    mbx_shape s;
    s.batch = req->batch.batch;
    s.num_anchors = req->batch.num_anchors;
    s.num_classes = req->batch.num_classes;
    s.max_boxes = req->max_boxes;
    s.num_slots = num_slots;
    return s;
}

/* Re-issues a detail filled by the core with the path in front. */
static int with_path(mbx_detail *d, int rc, const jpath *p, const mbx_detail *sub)
{
    return jpath_fail(d, rc, p, "%s", sub->message[0] ? sub->message : mbx_error_message(rc));
}

static int missing(mbx_detail *d, jpath *p, const char *key, const char *what)
{
    size_t mark = jpath_key(p, key);
    int rc = jpath_fail(d, MBX_E_MISSING_FIELD, p, "missing (%s)", what);
    jpath_restore(p, mark);
    return rc;
}

/* ----------------------------------------------------------------- probe */

static int probe_anchors(probe *pr, jpath *p, mbx_detail *d)
{
    const json_t *j = pr->anchors;
    const json_t *preset = NULL, *prior_box = NULL;
    const char *key;
    json_t *val;
    int rc;
    size_t mark = jpath_key(p, "anchors");

    if (json_is_object(j)) {
        preset = json_object_get(j, "preset");
        prior_box = json_object_get(j, "prior_box");
    }
    if (preset || prior_box) {
        const char *keep = preset ? "preset" : "prior_box";
        json_object_foreach((json_t *)j, key, val) {
            if (strcmp(key, keep) != 0) {
                jpath_key(p, key);
                rc = jpath_fail(d, MBX_E_UNKNOWN_FIELD, p, "unknown field beside anchors.%s",
                                keep);
                jpath_restore(p, mark);
                return rc;
            }
        }
    }
    if (preset) {
        mbx_detail sub = {0, ""};
        pr->anchors_kind = ANCHORS_PRESET;
        jpath_key(p, "preset");
        if (!json_is_string(preset)) {
            rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected a preset name, found %s",
                            mbx_json_type_name(preset));
            jpath_restore(p, mark);
            return rc;
        }
        rc = mbx_prior_preset(json_string_value(preset), &pr->prior, &sub);
        if (rc) {
            if (rc == MBX_E_UNKNOWN_PRESET) {
                char names[128] = "";
                const char *const *all = mbx_prior_preset_names();
                size_t n = 0;
                for (int i = 0; all && all[i] && n < sizeof names; i++)
                    n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "",
                                          all[i]);
                rc = jpath_fail(d, rc, p, "unknown preset (known: %s)", names);
            } else {
                rc = with_path(d, rc, p, &sub);
            }
            jpath_restore(p, mark);
            return rc;
        }
    } else if (prior_box) {
        pr->anchors_kind = ANCHORS_PRIOR_BOX;
        jpath_key(p, "prior_box");
        rc = mbx_prior_params_parse_json(prior_box, &pr->prior, p, d);
        if (rc) {
            jpath_restore(p, mark);
            return rc;
        }
    } else {
        pr->anchors_kind = ANCHORS_TENSOR;
        rc = mbx_tensor_probe_lifted(j, 2, pr->lift, &pr->anchors_src, p, d);
        if (rc == 0 && pr->anchors_src.shape[1] != 4 && pr->anchors_src.count > 0)
            rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                            "last dimension is %" PRId64 ", expected 4 (anchors are [A,4])",
                            pr->anchors_src.shape[1]);
        pr->A = pr->anchors_src.shape[0];
        jpath_restore(p, mark);
        return rc;
    }
    /* Generated anchors: count them (this validates the parameters). */
    mbx_detail sub = {0, ""};
    rc = mbx_prior_count(&pr->prior, &pr->A, &sub);
    if (rc == 0 && pr->A > MBX_CODEC_MAX_ELEMENTS / 4)
        rc = mbx_detail_set(&sub, MBX_E_SHAPE_OVERFLOW, "%" PRId64 " anchors exceed the limit",
                            pr->A);
    if (rc && pr->anchors_kind == ANCHORS_PRIOR_BOX && strncmp(sub.message, "prior_box", 9) == 0)
        rc = mbx_detail_set(d, rc, "anchors.%s", sub.message); /* the core names the key */
    else if (rc)
        rc = with_path(d, rc, p, &sub);
    jpath_restore(p, mark);
    return rc;
}

/* Checks that dimension k of a probed tensor equals want. */
static int want_dim(const mbx_tensor_src *t, int k, int64_t want, const char *name,
                    const char *dim_name, const char *other, jpath *p, mbx_detail *d)
{
    if (t->shape[k] == want)
        return 0;
    size_t mark = jpath_key(p, name);
    int rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                        "%s is %" PRId64 ", %s has %" PRId64, dim_name, t->shape[k], other,
                        want);
    jpath_restore(p, mark);
    return rc;
}

static int probe_tensors(probe *pr, jpath *p, mbx_detail *d)
{
    size_t mark;
    int rc;

    mark = jpath_key(p, "loc");
    rc = mbx_tensor_probe_lifted(pr->loc, 3, pr->lift, &pr->loc_src, p, d);
    jpath_restore(p, mark);
    if (rc)
        return rc;
    mark = jpath_key(p, "conf");
    rc = mbx_tensor_probe_lifted(pr->conf, 3, pr->lift, &pr->conf_src, p, d);
    jpath_restore(p, mark);
    if (rc)
        return rc;
    rc = probe_anchors(pr, p, d);
    if (rc)
        return rc;

    pr->B = pr->loc_src.shape[0];
    mark = jpath_key(p, "loc");
    if (pr->B == 0)
        rc = jpath_fail(d, MBX_E_OUT_OF_RANGE, p, "the batch is empty (B = 0)");
    else if (pr->loc_src.shape[1] == 0)
        rc = jpath_fail(d, MBX_E_OUT_OF_RANGE, p, "no anchors (A = 0)");
    else if (pr->loc_src.shape[2] != 4)
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                        "last dimension is %" PRId64 ", expected 4 (loc is [B,A,4])",
                        pr->loc_src.shape[2]);
    jpath_restore(p, mark);
    if (rc)
        return rc;
    int64_t A = pr->loc_src.shape[1];
    if ((rc = want_dim(&pr->conf_src, 0, pr->B, "conf", "batch size", "loc", p, d)) ||
        (rc = want_dim(&pr->conf_src, 1, A, "conf", "anchor count", "loc", p, d)))
        return rc;
    pr->C = pr->conf_src.shape[2];
    if (pr->C <= 0) {
        mark = jpath_key(p, "conf");
        rc = jpath_fail(d, MBX_E_OUT_OF_RANGE, p, "no class columns (C = 0)");
        jpath_restore(p, mark);
        return rc;
    }
    if (pr->A != A) {
        mark = jpath_key(p, "anchors");
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "%" PRId64 " anchors, loc has %" PRId64,
                        pr->A, A);
        jpath_restore(p, mark);
        return rc;
    }
    mark = jpath_key(p, "targets");
    if (!json_is_array(pr->targets))
        rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected an array (one item per image), found %s",
                        mbx_json_type_name(pr->targets));
    else if ((int64_t)json_array_size(pr->targets) != pr->B)
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "has %zu images, loc has batch size %" PRId64,
                        json_array_size(pr->targets), pr->B);
    jpath_restore(p, mark);
    return rc;
}

/*
 * Probes one image's targets (path already at targets[i]): keys, boxes
 * shape, labels (type, count and range), difficult.  *g gets the box count.
 */
static int probe_target(const json_t *t, const mbx_config *cfg, int64_t C, const mbx_lift *lift,
                        mbx_tensor_src *boxes, int64_t *g, int *has_difficult, jpath *p,
                        mbx_detail *d)
{
    const json_t *jboxes = NULL, *labels = NULL, *difficult = NULL;
    const char *key;
    json_t *val;
    size_t mark;
    int rc = 0;

    if (!json_is_object(t))
        return jpath_fail(d, MBX_E_WRONG_TYPE, p,
                          "expected an object with boxes and labels, found %s",
                          mbx_json_type_name(t));
    json_object_foreach((json_t *)t, key, val) {
        if (strcmp(key, "boxes") == 0)
            jboxes = val;
        else if (strcmp(key, "labels") == 0)
            labels = val;
        else if (strcmp(key, "difficult") == 0)
            difficult = val;
        else {
            mark = jpath_key(p, key);
            rc = jpath_fail(d, MBX_E_UNKNOWN_FIELD, p,
                            "unknown field (targets have boxes, labels, difficult)");
            jpath_restore(p, mark);
            return rc;
        }
    }
    if (!jboxes)
        return missing(d, p, "boxes", "ground-truth boxes [G,4], [] for none");
    if (!labels)
        return missing(d, p, "labels", "one integer label per box");

    mark = jpath_key(p, "boxes");
    rc = mbx_tensor_probe_lifted(jboxes, 2, lift, boxes, p, d);
    if (rc == 0 && boxes->count > 0 && boxes->shape[1] != 4)
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                        "last dimension is %" PRId64 ", expected 4 (boxes are [G,4])",
                        boxes->shape[1]);
    if (rc == 0 && boxes->count == 0 && boxes->shape[0] > 0)
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "boxes need 4 coordinates each");
    jpath_restore(p, mark);
    if (rc)
        return rc;
    *g = boxes->shape[0];

    mark = jpath_key(p, "labels");
    if (!json_is_array(labels))
        rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected an array of integers, found %s",
                        mbx_json_type_name(labels));
    else if ((int64_t)json_array_size(labels) != *g)
        rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "has %zu labels, boxes has %" PRId64,
                        json_array_size(labels), *g);
    for (int64_t k = 0; rc == 0 && k < *g; k++) {
        const json_t *l = json_array_get(labels, (size_t)k);
        if (!json_is_integer(l)) {
            jpath_index(p, k);
            rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected an integer label, found %s",
                            mbx_json_type_name(l));
            break;
        }
        json_int_t v = json_integer_value(l);
        if (v < 0 || v >= C) {
            jpath_index(p, k);
            rc = jpath_fail(d, MBX_E_BAD_LABEL, p,
                            "label %" PRId64 " is out of range [0, %" PRId64 ")", (int64_t)v, C);
        } else if (v == cfg->background_label) {
            jpath_index(p, k);
            rc = jpath_fail(d, MBX_E_BAD_LABEL, p, "label %" PRId64 " is the background_label",
                            (int64_t)v);
        }
    }
    jpath_restore(p, mark);
    if (rc)
        return rc;

    *has_difficult = 0;
    if (difficult) {
        mark = jpath_key(p, "difficult");
        if (!json_is_array(difficult))
            rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected an array of booleans, found %s",
                            mbx_json_type_name(difficult));
        else if ((int64_t)json_array_size(difficult) != *g)
            rc = jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "has %zu flags, boxes has %" PRId64,
                            json_array_size(difficult), *g);
        for (int64_t k = 0; rc == 0 && k < *g; k++) {
            const json_t *f = json_array_get(difficult, (size_t)k);
            if (!json_is_boolean(f)) {
                jpath_index(p, k);
                rc = jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected true or false, found %s",
                                mbx_json_type_name(f));
            }
        }
        jpath_restore(p, mark);
        *has_difficult = 1;
    }
    return rc;
}

static int probe_targets(probe *pr, const mbx_config *cfg, jpath *p, mbx_detail *d)
{
    size_t mark = jpath_key(p, "targets");
    int rc = 0;
    pr->total_boxes = 0;
    for (int64_t i = 0; i < pr->B && rc == 0; i++) {
        mbx_tensor_src boxes;
        int64_t g = 0;
        int has_difficult = 0;
        size_t m2 = jpath_index(p, i);
        rc = probe_target(json_array_get(pr->targets, (size_t)i), cfg, pr->C, pr->lift, &boxes,
                          &g, &has_difficult, p, d);
        if (rc == 0 && g > MBX_CODEC_MAX_ELEMENTS / 4 - pr->total_boxes)
            rc = jpath_fail(d, MBX_E_SHAPE_OVERFLOW, p, "too many boxes in the batch");
        jpath_restore(p, m2);
        pr->total_boxes += g;
        pr->any_difficult |= has_difficult;
    }
    jpath_restore(p, mark);
    return rc;
}

/* ------------------------------------------------------------------ fill */

/* A box (4 floats, finite) in fmt; MBX_E_DEGENERATE_BOX names which side. */
static int check_box(const float *b, mbx_box_format fmt, const jpath *p, mbx_detail *d)
{
    if (fmt == MBX_BOX_XYXY) {
        if (!(b[2] > b[0]))
            return jpath_fail(d, MBX_E_DEGENERATE_BOX, p, "x2 <= x1 (%.9g <= %.9g)",
                              (double)b[2], (double)b[0]);
        if (!(b[3] > b[1]))
            return jpath_fail(d, MBX_E_DEGENERATE_BOX, p, "y2 <= y1 (%.9g <= %.9g)",
                              (double)b[3], (double)b[1]);
    } else {
        if (!(b[2] > 0))
            return jpath_fail(d, MBX_E_DEGENERATE_BOX, p, "width %.9g <= 0", (double)b[2]);
        if (!(b[3] > 0))
            return jpath_fail(d, MBX_E_DEGENERATE_BOX, p, "height %.9g <= 0", (double)b[3]);
    }
    /* The rest of the core's rule (a size lost next to the centre). */
    const char *why;
    const int rc = mbx_box_check(b, fmt, &why);
    if (rc != 0)
        return jpath_fail(d, rc, p, "%s", why);
    return 0;
}

static int check_boxes(const float *boxes, int64_t n, mbx_box_format fmt, jpath *p,
                       mbx_detail *d)
{
    for (int64_t k = 0; k < n; k++) {
        if (mbx_box_check(boxes + 4 * k, fmt, NULL) == 0)
            continue;
        size_t mark = jpath_index(p, k);
        int rc = check_box(boxes + 4 * k, fmt, p, d);
        jpath_restore(p, mark);
        return rc;
    }
    return 0;
}

static void *alloc_array(size_t count, size_t size)
{
    /* count <= MBX_CODEC_MAX_ELEMENTS here, so count * size cannot overflow. */
    return mbx_codec_malloc(count ? count * size : 1);
}

/*
 * Whether an input may stay b64 text until mbx_request_load_input widens
 * it: asked for, float32, and text lifted out of the body (which outlives
 * the request then; shorter texts live in jansson's tree, gone after the
 * parse).
 */
static int deferrable(const probe *pr, const mbx_tensor_src *src)
{
    const mbx_lift *l = pr->lift;
    return (pr->flags & MBX_REQUEST_DEFER_INPUTS) && src->kind == MBX_TSRC_B64 &&
           src->dtype_size == 4 && src->count > 0 && l && src->b64 >= l->body &&
           src->b64_len <= l->len && src->b64 - l->body <= (ptrdiff_t)(l->len - src->b64_len);
}

static const char *const input_key[2] = {"loc", "conf"};

/*
 * An error rc (in d) found after the deferred inputs' turn in the plain
 * parse's order (loc, conf, then the targets; before is 2 for the targets):
 * the plain parse reads them first, so the first fault of a deferred input
 * before `before` is the error instead (checked whole now).
 */
static int deferred_first(const struct mbx_request_storage *s, int before, int rc, jpath *p,
                          mbx_detail *d)
{
    for (int k = 0; k < before; k++) {
        if (!s->deferred[k])
            continue;
        mbx_detail first = {0, ""};
        const size_t mark = jpath_key(p, input_key[k]);
        const int rc_input = mbx_tensor_check(&s->input[k], p, &first);
        jpath_restore(p, mark);
        if (rc_input != 0) {
            if (d)
                *d = first;
            return rc_input;
        }
    }
    return rc;
}

static int fill_request(const probe *pr, mbx_request *req, jpath *p, mbx_detail *d)
{
    struct mbx_request_storage *s = req->storage;
    const mbx_config *cfg = &req->config;
    const int64_t B = pr->B, A = pr->A, C = pr->C;
    size_t mark;
    int rc;

    s->deferred[0] = deferrable(pr, &pr->loc_src);
    s->deferred[1] = deferrable(pr, &pr->conf_src);
    s->input[0] = pr->loc_src;
    s->input[1] = pr->conf_src;
    s->anchors = alloc_array((size_t)A * 4, sizeof(float));
    s->loc = s->deferred[0] ? NULL : alloc_array((size_t)(B * A * 4), sizeof(float));
    s->conf = s->deferred[1] ? NULL : alloc_array((size_t)(B * A * C), sizeof(float));
    s->boxes = alloc_array((size_t)pr->total_boxes * 4, sizeof(float));
    s->labels = alloc_array((size_t)pr->total_boxes, sizeof(int64_t));
    s->targets = alloc_array((size_t)B, sizeof(mbx_image_targets));
    if (pr->any_difficult)
        s->difficult = alloc_array((size_t)pr->total_boxes, 1);
    if (!s->anchors || (!s->loc && !s->deferred[0]) || (!s->conf && !s->deferred[1]) ||
        !s->boxes || !s->labels || !s->targets || (pr->any_difficult && !s->difficult))
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the request's tensors");

    /* Anchors. */
    mark = jpath_key(p, "anchors");
    if (pr->anchors_kind == ANCHORS_TENSOR) {
        rc = mbx_tensor_fill(&pr->anchors_src, s->anchors, p, d);
        req->batch.anchors_format = cfg->box_format;
    } else {
        mbx_detail sub = {0, ""};
        jpath_key(p, pr->anchors_kind == ANCHORS_PRESET ? "preset" : "prior_box");
        rc = mbx_prior_generate(&pr->prior, s->anchors, A, &sub);
        if (rc)
            rc = with_path(d, rc, p, &sub);
        jpath_restore(p, mark);
        jpath_key(p, "anchors");
        req->batch.anchors_format = MBX_BOX_XYXY;
    }
    if (rc == 0)
        rc = check_boxes(s->anchors, A, req->batch.anchors_format, p, d);
    jpath_restore(p, mark);
    if (rc)
        return rc;

    float *const input_dst[2] = {s->loc, s->conf};
    for (int k = 0; k < 2; k++) {
        if (s->deferred[k])
            continue;
        mark = jpath_key(p, input_key[k]);
        rc = mbx_tensor_fill(&s->input[k], input_dst[k], p, d);
        jpath_restore(p, mark);
        if (rc)
            return deferred_first(s, k, rc, p, d);
    }

    /* Targets: boxes, labels and difficult flags packed image after image. */
    mark = jpath_key(p, "targets");
    int64_t off = 0;
    req->max_boxes = 0;
    for (int64_t i = 0; i < B && rc == 0; i++) {
        const json_t *t = json_array_get(pr->targets, (size_t)i);
        const json_t *labels = json_object_get(t, "labels");
        const json_t *difficult = json_object_get(t, "difficult");
        mbx_image_targets *it = &s->targets[i];
        mbx_tensor_src boxes;
        size_t m2 = jpath_index(p, i);
        size_t m3 = jpath_key(p, "boxes");
        rc = mbx_tensor_probe_lifted(json_object_get(t, "boxes"), 2, pr->lift, &boxes, p, d);
        int64_t g = boxes.shape[0];
        if (rc == 0)
            rc = mbx_tensor_fill(&boxes, s->boxes + 4 * off, p, d);
        if (rc == 0)
            rc = check_boxes(s->boxes + 4 * off, g, cfg->box_format, p, d);
        jpath_restore(p, m3);
        jpath_restore(p, m2);
        if (rc)
            break;
        for (int64_t k = 0; k < g; k++)
            s->labels[off + k] = (int64_t)json_integer_value(json_array_get(labels, (size_t)k));
        it->difficult = NULL;
        if (difficult) {
            for (int64_t k = 0; k < g; k++)
                s->difficult[off + k] = json_is_true(json_array_get(difficult, (size_t)k));
            it->difficult = s->difficult + off;
        }
        it->boxes = s->boxes + 4 * off;
        it->labels = s->labels + off;
        it->num_boxes = g;
        if (g > req->max_boxes)
            req->max_boxes = g;
        off += g;
    }
    jpath_restore(p, mark);
    if (rc)
        return deferred_first(s, 2, rc, p, d);

    req->batch.batch = B;
    req->batch.num_anchors = A;
    req->batch.num_classes = C;
    req->batch.loc = s->loc;
    req->batch.conf = s->conf;
    req->batch.anchors = s->anchors;
    req->batch.targets = s->targets;
    return 0;
}

/* ------------------------------------------------------------------ root */

static int parse_root(const json_t *root, const mbx_lift *lift, unsigned flags,
                      mbx_request *req, jpath *p, mbx_detail *d)
{
    probe pr;
    const char *key;
    json_t *val;
    size_t mark;
    int rc;

    memset(&pr, 0, sizeof pr);
    pr.lift = lift;
    pr.flags = flags;
    if (!json_is_object(root))
        return jpath_fail(d, MBX_E_WRONG_TYPE, p, "the request body must be a JSON object, found %s",
                          mbx_json_type_name(root));
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "anchors") == 0)
            pr.anchors = val;
        else if (strcmp(key, "loc") == 0)
            pr.loc = val;
        else if (strcmp(key, "conf") == 0)
            pr.conf = val;
        else if (strcmp(key, "targets") == 0)
            pr.targets = val;
        else if (strcmp(key, "config") == 0)
            pr.config = val;
        else if (strcmp(key, "outputs") == 0)
            pr.outputs = val;
        else {
            mark = jpath_key(p, key);
            rc = jpath_fail(d, MBX_E_UNKNOWN_FIELD, p,
                            "unknown field (expected anchors, loc, conf, targets, config, outputs)");
            jpath_restore(p, mark);
            return rc;
        }
    }
    if (!pr.anchors)
        return missing(d, p, "anchors", "a TENSOR [A,4], {\"preset\": name} or {\"prior_box\": {...}}");
    if (!pr.loc)
        return missing(d, p, "loc", "a TENSOR [B,A,4]");
    if (!pr.conf)
        return missing(d, p, "conf", "a TENSOR [B,A,C]");
    if (!pr.targets)
        return missing(d, p, "targets", "one {boxes, labels} per image");

    mbx_config_default(&req->config);
    if (pr.config) {
        mark = jpath_key(p, "config");
        rc = mbx_config_parse_json(pr.config, &req->config, p, d);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    mbx_outputs_default(&req->outputs);
    if (pr.outputs) {
        mark = jpath_key(p, "outputs");
        rc = mbx_outputs_parse_json(pr.outputs, &req->outputs, p, d);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }

    rc = probe_tensors(&pr, p, d);
    if (rc)
        return rc;
    /* The core checks the ranges, C >= 2 with a background column included. */
    rc = mbx_config_validate(&req->config, pr.C, d);
    if (rc)
        return rc;
    rc = probe_targets(&pr, &req->config, p, d);
    if (rc)
        return rc;

    /* Every shape is now checked: allocate and copy. */
    req->storage = mbx_codec_calloc(1, sizeof *req->storage);
    if (!req->storage)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    return fill_request(&pr, req, p, d);
}

/* jansson's failure as a detail, its position mapped back to the body. */
static int json_failure(const json_error_t *jerr, const mbx_lift *lift, mbx_detail *detail)
{
    if (json_error_code(jerr) == json_error_out_of_memory)
        return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY, "out of memory parsing JSON");
    size_t off = jerr->position < 0 ? 0 : mbx_lift_body_offset(lift, (size_t)jerr->position);
    size_t line = 1, col = 0;
    if (off > lift->len)
        off = lift->len;
    size_t next = 0; /* strings decoded as the body arrived hold bytes, not their text */
    for (size_t i = 0; i < off; i++) {
        while (next < lift->count && lift->items[next].start + lift->items[next].len <= i)
            next++;
        if (next < lift->count && lift->items[next].decoded && i >= lift->items[next].start) {
            const size_t end = lift->items[next].start + lift->items[next].len;
            const size_t skip = (end < off ? end : off) - i; /* base64 text: no newline */
            col += skip;
            i += skip - 1;
            continue;
        }
        col++;
        if (lift->body[i] == '\n') {
            line++;
            col = 0;
        }
    }
    return mbx_detail_set(detail, MBX_E_MALFORMED_JSON,
                          "malformed JSON at line %zu, column %zu (byte %zu): %s", line, col, off,
                          jerr->text);
}

int mbx_request_parse_json(const char *body, size_t len, mbx_request **out, mbx_detail *detail)
{
    return mbx_request_parse_json_ex(body, len, 0, out, detail);
}

int mbx_request_parse_json_ex(const char *body, size_t len, unsigned flags, mbx_request **out,
                              mbx_detail *detail)
{
    return mbx_request_parse_json_scanned(body, len, flags, NULL, out, detail);
}

int mbx_request_parse_json_scanned(const char *body, size_t len, unsigned flags,
                                   mbx_body_scan *scan, mbx_request **out, mbx_detail *detail)
{
    json_error_t jerr;
    json_t *root;
    mbx_request *req;
    mbx_lift own, *lift = &own;
    jpath p;
    int rc;

    if (!out)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!body && len)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "body is NULL");
    if (!body)
        body = "";
    if (scan && !scan->failed)
        lift = &scan->lift; /* scanned as far as the upload came: the rest now */
    else
        mbx_lift_init(lift, MBX_LIFT_MIN);
    rc = mbx_lift_feed(lift, body, len);
    lift->body = body;
    lift->len = len;
    if (rc) {
        mbx_lift_free(lift);
        return mbx_detail_set(detail, rc, "out of memory scanning the body");
    }
    root = json_load_callback(mbx_lift_read, lift, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = json_failure(&jerr, lift, detail);
        mbx_lift_free(lift);
        return rc;
    }
    req = mbx_codec_calloc(1, sizeof *req);
    if (!req) {
        json_decref(root);
        mbx_lift_free(lift);
        return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY, "out of memory");
    }
    jpath_init(&p);
    rc = parse_root(root, lift, flags, req, &p, detail);
    json_decref(root);
    mbx_lift_free(lift);
    if (rc) {
        mbx_request_free(req);
        return rc;
    }
    *out = req;
    return 0;
}

/* ------------------------------------------------------- deferred inputs */

int mbx_request_deferred(const mbx_request *req, int input)
{
    return req && req->storage && (input == 0 || input == 1) && req->storage->deferred[input];
}

/* Widens values [first, first + n) of a deferred input into dst; as mbx_request_load_input. */
static int64_t load_values(const mbx_tensor_src *t, int64_t first, int64_t n, float *dst)
{
    if (t->raw)
        memcpy(dst, t->raw + (size_t)first * 4, (size_t)n * 4);
    else if (mbx_base64_decode_range(t->b64, t->b64_len, (size_t)first * 4, (size_t)n * 4, dst) !=
             0)
        return 0; /* a bad character: mbx_request_input_fail names it */
    mbx_f32_from_le(dst, n);
    const int64_t bad = mbx_find_non_finite(dst, n);
    return bad < n ? bad : -1;
}

/* Asks for the text of values [first, first + n) of a deferred input ahead of its load. */
static void prefetch_values(const mbx_tensor_src *t, int64_t first, int64_t n)
{
    const char *base = t->raw ? (const char *)t->raw : t->b64;
    const size_t from = t->raw ? (size_t)first * 4 : (size_t)first * 4 / 3 * 4;
    const size_t to = t->raw ? (size_t)(first + n) * 4 : ((size_t)(first + n) * 4 + 2) / 3 * 4;
    for (size_t at = from; at < to; at += 64)
        __builtin_prefetch(base + at);
    __builtin_prefetch(base + to - 1);
}

/* Rows loaded ahead of the one being decoded: a few rows scattered over a
 * long text are each a cache miss, which overlap when asked for early. */
#define LOAD_AHEAD 8

int64_t mbx_request_load_input(const mbx_request *req, int input, int64_t image,
                               const int32_t *rows, int64_t n, float *dst)
{
    const mbx_tensor_src *t = &req->storage->input[input];
    const int64_t A = req->batch.num_anchors, w = input == 0 ? 4 : req->batch.num_classes;
    if (!rows)
        return load_values(t, image * A * w, A * w, dst);
    for (int64_t k = 0; k < n && k < LOAD_AHEAD; k++)
        prefetch_values(t, (int64_t)rows[k] * w, w);
    for (int64_t k = 0; k < n; k++) {
        if (k + LOAD_AHEAD < n)
            prefetch_values(t, (int64_t)rows[k + LOAD_AHEAD] * w, w);
        const int64_t a = (int64_t)rows[k] - image * A;
        const int64_t bad = load_values(t, (image * A + a) * w, w, dst + a * w);
        if (bad >= 0)
            return a * w + bad;
    }
    return -1;
}

const float *mbx_request_input_in_place(const mbx_request *req, int input)
{
    if (!mbx_request_deferred(req, input) || !mbx_host_is_little_endian())
        return NULL;
    const mbx_tensor_src *t = &req->storage->input[input];
    if (!t->raw || (uintptr_t)t->raw % _Alignof(float) != 0)
        return NULL;
    return (const float *)(const void *)t->raw;
}

int mbx_request_input_check(const mbx_request *req, int input, mbx_detail *detail)
{
    jpath p;
    jpath_init(&p);
    jpath_key(&p, input_key[input]);
    return mbx_tensor_check(&req->storage->input[input], &p, detail);
}

int mbx_request_input_fail(const mbx_request *req, int input, mbx_detail *detail)
{
    int rc = mbx_request_input_check(req, input, detail);
    if (rc == 0)
        rc = mbx_detail_set(detail, MBX_E_INTERNAL, "%s: a load failed on valid values",
                            input_key[input]);
    return rc;
}
