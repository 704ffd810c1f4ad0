/*
 * oip_response.c - an inference result to an Open Inference Protocol
 * response: a JSON header listing the outputs (with "data", or with
 * parameters.binary_data_size for binary outputs) followed by the binary
 * outputs' bytes as a list of segments, in header order, so the service can
 * send them with one writev-style call.  Dense FP32 gradients are not
 * copied: their segments are the mbx_result's own arrays.  FP16 / BF16
 * gradients, the scalars and the sparse forms live in buffers the response
 * owns.  The sparse forms are gathered from the dense gradient arrays after
 * the computation (rows from mbx_result.roles); a core that wrote only
 * those rows would spare the dense arrays, which this layout allows later.
 */
#include <float.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "half.h"
#include "oip_internal.h"

#define MAX_OWNED (MBX_OIP_OUT_COUNT + 4)

struct mbx_oip_response_storage {
    void *owned[MAX_OWNED];
    int num_owned;
    float scalars[4];          /* loss, conf_loss, loc_loss, normalizer */
    int32_t counts[2];         /* num_positives, num_negatives */
    unsigned char le[24];      /* the six scalars as little-endian bytes */
};

/* What one output is made of: float32 or int32 values and their shape. */
typedef struct out_view {
    mbx_oip_dtype dtype;       /* on the wire */
    int rank;
    int64_t shape[3];
    int64_t count;
    const float *f;            /* float values (FP32, FP16 and BF16 outputs) */
    const int32_t *i;          /* INT32 values */
    const void *le;            /* little-endian bytes of a scalar, when at hand */
} out_view;

/* The sparse rows and gathered values, computed once per render. */
typedef struct sparse {
    int32_t *loc_rows, *conf_rows;
    float *loc_values, *conf_values;
    int64_t P, K;
} sparse;

static void *own(struct mbx_oip_response_storage *s, size_t bytes)
{
    if (s->num_owned == MAX_OWNED)
        return NULL;
    void *p = mbx_codec_malloc(bytes ? bytes : 1);
    if (p)
        s->owned[s->num_owned++] = p;
    return p;
}

void mbx_oip_response_free(mbx_oip_response *resp)
{
    if (!resp)
        return;
    struct mbx_oip_response_storage *s = resp->storage;
    if (s) {
        for (int i = 0; i < s->num_owned; i++)
            mbx_codec_free(s->owned[i]);
        mbx_codec_free(s);
    }
    mbx_codec_free(resp->header);
    mbx_codec_free(resp->segments);
    memset(resp, 0, sizeof *resp);
}

/* Rows b*A+a whose role is accepted by mask (bit per mbx_anchor_role), ascending. */
static int32_t *gather_rows(struct mbx_oip_response_storage *s, const uint8_t *roles, int64_t BA,
                            unsigned mask, int64_t *n)
{
    int64_t count = 0;
    for (int64_t r = 0; r < BA; r++)
        count += (mask >> roles[r]) & 1u;
    int32_t *rows = own(s, (size_t)count * sizeof *rows);
    if (!rows)
        return NULL;
    int64_t k = 0;
    for (int64_t r = 0; r < BA; r++)
        if ((mask >> roles[r]) & 1u)
            rows[k++] = (int32_t)r;
    *n = count;
    return rows;
}

static float *gather_values(struct mbx_oip_response_storage *s, const float *dense,
                            const int32_t *rows, int64_t n, int64_t width)
{
    float *v = own(s, (size_t)(n * width) * sizeof *v);
    if (!v)
        return NULL;
    for (int64_t k = 0; k < n; k++)
        memcpy(v + k * width, dense + (int64_t)rows[k] * width, (size_t)width * sizeof *v);
    return v;
}

static int make_sparse(struct mbx_oip_response_storage *s, const mbx_oip_request *req,
                       const mbx_result *res, const mbx_sparse_grads *given, sparse *sp,
                       mbx_detail *d)
{
    const mbx_batch *b = &req->core.batch;
    int64_t BA = b->batch * b->num_anchors;
    int need_loc = 0, need_conf = 0;
    memset(sp, 0, sizeof *sp);
    for (int k = 0; k < req->num_outputs; k++) {
        mbx_oip_output o = req->output[k];
        need_loc |= o == MBX_OIP_OUT_GRAD_LOC_ROWS || o == MBX_OIP_OUT_GRAD_LOC_VALUES;
        need_conf |= o == MBX_OIP_OUT_GRAD_CONF_ROWS || o == MBX_OIP_OUT_GRAD_CONF_VALUES;
    }
    if (!need_loc && !need_conf)
        return 0;
    if (given) { /* computed sparse by the core: borrowed as they are */
        if ((need_loc && (!given->loc_rows || !given->loc_values)) ||
            (need_conf && (!given->conf_rows || !given->conf_values)))
            return mbx_detail_set(d, MBX_E_INVALID_ARGUMENT,
                                  "sparse gradients asked and not given");
        sp->loc_rows = (int32_t *)(uintptr_t)given->loc_rows;
        sp->loc_values = (float *)(uintptr_t)given->loc_values;
        sp->P = given->num_loc;
        sp->conf_rows = (int32_t *)(uintptr_t)given->conf_rows;
        sp->conf_values = (float *)(uintptr_t)given->conf_values;
        sp->K = given->num_conf;
        return 0;
    }
    if (!res->roles || (need_loc && !res->grad_loc) || (need_conf && !res->grad_conf))
        return mbx_detail_set(d, MBX_E_INVALID_ARGUMENT,
                              "sparse gradients need roles and dense gradients in the result "
                              "(mbx_oip_result_alloc)");
    /* grad_loc rows: positives; grad_conf rows: positives and the negatives that count. */
    if (need_loc) {
        sp->loc_rows = gather_rows(s, res->roles, BA, 1u << MBX_ROLE_POSITIVE, &sp->P);
        if (!sp->loc_rows ||
            !(sp->loc_values = gather_values(s, res->grad_loc, sp->loc_rows, sp->P, 4)))
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    }
    if (need_conf) {
        sp->conf_rows = gather_rows(s, res->roles, BA,
                                    1u << MBX_ROLE_POSITIVE | 1u << MBX_ROLE_NEGATIVE, &sp->K);
        if (!sp->conf_rows || !(sp->conf_values = gather_values(s, res->grad_conf, sp->conf_rows,
                                                                sp->K, b->num_classes)))
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    }
    return 0;
}

static void put_u32_le(unsigned char *p, uint32_t u)
{
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
}

/* The view of output o; 0, or MBX_E_INVALID_ARGUMENT when res lacks its array. */
static int view_of(mbx_oip_output o, const mbx_oip_request *req, const mbx_result *res,
                   const sparse *sp, struct mbx_oip_response_storage *s, float *per_image,
                   int from_rows, out_view *v, mbx_detail *d)
{
    const mbx_batch *b = &req->core.batch;
    const int64_t B = b->batch, A = b->num_anchors, C = b->num_classes;
    memset(v, 0, sizeof *v);
    v->dtype = MBX_OIP_FP32;
    v->rank = 1;
    v->shape[0] = 1;
    switch (o) {
    case MBX_OIP_OUT_LOSS:
    case MBX_OIP_OUT_CONF_LOSS:
    case MBX_OIP_OUT_LOC_LOSS:
    case MBX_OIP_OUT_NORMALIZER:
        v->f = &s->scalars[o - MBX_OIP_OUT_LOSS];
        v->le = s->le + 4 * (o - MBX_OIP_OUT_LOSS);
        break;
    case MBX_OIP_OUT_NUM_POSITIVES:
    case MBX_OIP_OUT_NUM_NEGATIVES:
        v->dtype = MBX_OIP_INT32;
        v->i = &s->counts[o - MBX_OIP_OUT_NUM_POSITIVES];
        v->le = s->le + 16 + 4 * (o - MBX_OIP_OUT_NUM_POSITIVES);
        break;
    case MBX_OIP_OUT_PER_IMAGE_LOSS:
        if (!per_image)
            goto missing;
        v->shape[0] = B;
        v->f = per_image;
        break;
    case MBX_OIP_OUT_GRAD_LOC:
    case MBX_OIP_OUT_GRAD_CONF:
        v->dtype = req->gradient_datatype;
        v->rank = 3;
        v->shape[0] = B;
        v->shape[1] = A;
        v->shape[2] = o == MBX_OIP_OUT_GRAD_LOC ? 4 : C;
        v->f = o == MBX_OIP_OUT_GRAD_LOC ? res->grad_loc : res->grad_conf;
        if (!v->f && !from_rows)
            goto missing;
        break;
    case MBX_OIP_OUT_GRAD_LOC_ROWS:
        v->dtype = MBX_OIP_INT32;
        v->shape[0] = sp->P;
        v->i = sp->loc_rows;
        break;
    case MBX_OIP_OUT_GRAD_CONF_ROWS:
        v->dtype = MBX_OIP_INT32;
        v->shape[0] = sp->K;
        v->i = sp->conf_rows;
        break;
    case MBX_OIP_OUT_GRAD_LOC_VALUES:
        v->dtype = req->gradient_datatype;
        v->rank = 2;
        v->shape[0] = sp->P;
        v->shape[1] = 4;
        v->f = sp->loc_values;
        break;
    case MBX_OIP_OUT_GRAD_CONF_VALUES:
        v->dtype = req->gradient_datatype;
        v->rank = 2;
        v->shape[0] = sp->K;
        v->shape[1] = C;
        v->f = sp->conf_values;
        break;
    default:
        return mbx_detail_set(d, MBX_E_INTERNAL, "unknown output %d", (int)o);
    }
    v->count = 1;
    for (int k = 0; k < v->rank; k++)
        v->count *= v->shape[k];
    return 0;
missing:
    return mbx_detail_set(d, MBX_E_INVALID_ARGUMENT,
                          "output %s: the result has no array for it (mbx_oip_result_alloc)",
                          mbx_oip_output_name(o));
}

/*
 * FP16 / BF16 patterns of finite gradients, saturated: a gradient beyond the
 * type's range (|g| >= 65520 for FP16, the core's FLT_MAX for BF16) rounds to
 * infinity, which JSON data cannot carry (500 internal_error, found by
 * fuzzing: tests/fuzz/regressions/oip/loss-beyond-float32-*); it becomes the
 * largest finite value of its sign instead, in JSON and binary alike, as the
 * core saturates its float32 gradients.  NaN patterns are left alone.
 */
static uint16_t f16_sat(uint16_t h)
{
    return (h & 0x7fffu) == 0x7c00u ? (uint16_t)((h & 0x8000u) | 0x7bffu) : h;
}

static uint16_t bf16_sat(uint16_t b)
{
    return (b & 0x7fffu) == 0x7f80u ? (uint16_t)((b & 0x8000u) | 0x7f7fu) : b;
}

/* The value as it travels: rounded to FP16 / BF16 (saturated) for those datatypes. */
static float wire_value(float x, mbx_oip_dtype t)
{
    if (t == MBX_OIP_FP16)
        return mbx_f16_to_f32(f16_sat(mbx_f32_to_f16(x)));
    if (t == MBX_OIP_BF16)
        return mbx_bf16_to_f32(bf16_sat(mbx_f32_to_bf16(x)));
    return x;
}

/* Saturates n little-endian FP16 (bf16 0) or BF16 (bf16 1) patterns at p in place. */
static void saturate_halves(unsigned char *p, size_t n, int bf16)
{
    for (size_t k = 0; k < n; k++, p += 2) {
        uint16_t h = (uint16_t)(p[0] | p[1] << 8);
        uint16_t s = bf16 ? bf16_sat(h) : f16_sat(h);
        p[0] = (unsigned char)(s & 0xff);
        p[1] = (unsigned char)(s >> 8);
    }
}

/* Writes "data":[...] for a view; MBX_E_INTERNAL on a non-finite float. */
static int put_data(jbuf *jb, const out_view *v, mbx_oip_output o, mbx_detail *d)
{
    enum { CHUNK = 4096 };
    jbuf_puts(jb, "\"data\":[");
    for (int64_t i = 0; i < v->count;) {
        int64_t n = v->count - i < CHUNK ? v->count - i : CHUNK;
        if (jbuf_reserve(jb, (size_t)n * (MBX_NUMBER_MAX + 1)))
            return 0; /* jbuf_finish reports it */
        char *w = jb->data + jb->len;
        for (int64_t k = 0; k < n; k++, i++) {
            if (i)
                *w++ = ',';
            if (v->i) {
                w += mbx_format_i64(v->i[i], w);
            } else {
                float x = wire_value(v->f[i], v->dtype);
                if (!isfinite(x))
                    return mbx_detail_set(d, MBX_E_INTERNAL,
                                          "output %s: element %lld is not finite",
                                          mbx_oip_output_name(o), (long long)i);
                w += mbx_format_f32(x, w);
            }
        }
        jb->len = (size_t)(w - jb->data);
    }
    jbuf_putc(jb, ']');
    return 0;
}

/* The binary bytes of a view: borrowed when already right, else converted into owned memory. */
static const void *wire_bytes(const out_view *v, struct mbx_oip_response_storage *s, size_t *len)
{
    size_t n = (size_t)v->count;
    int le = mbx_host_is_little_endian();
    *len = n * mbx_oip_dtype_size(v->dtype);
    if (v->le)
        return v->le;
    if (v->i) {
        if (le)
            return v->i;
        unsigned char *p = own(s, *len);
        if (p)
            for (size_t k = 0; k < n; k++)
                put_u32_le(p + 4 * k, (uint32_t)v->i[k]);
        return p;
    }
    if (v->dtype == MBX_OIP_FP32 && le)
        return v->f;
    void *p = own(s, *len);
    if (!p)
        return NULL;
    if (v->dtype == MBX_OIP_FP16) {
        mbx_store_f16(v->f, n, p);
        saturate_halves(p, n, 0);
    } else if (v->dtype == MBX_OIP_BF16) {
        mbx_store_bf16(v->f, n, p);
        saturate_halves(p, n, 1);
    } else {
        mbx_store_f32(v->f, n, p);
    }
    return p;
}

/*
 * float of a finite double, saturated at the largest finite float, as the
 * core saturates its float gradients.  A finite loss beyond FLT_MAX (finite
 * but extreme GT boxes, e.g. coordinates of 1e31 with an l2 loss) used to
 * become infinity here, which JSON cannot carry: 500 internal_error.  Found
 * by fuzzing, tests/fuzz/regressions/oip/loss-beyond-float32-*.
 */
static float f32_sat(double x)
{
    if (x > FLT_MAX)
        return FLT_MAX;
    if (x < -FLT_MAX)
        return -FLT_MAX;
    return (float)x;
}

static int render(const mbx_oip_request *req, const mbx_result *res,
                  const mbx_sparse_grads *given, int force_json, mbx_oip_response *resp,
                  mbx_detail *d)
{
    struct mbx_oip_response_storage *s = resp->storage;
    const mbx_batch *b = &req->core.batch;
    jbuf jb = {0};
    sparse sp;
    int rc;

    s->scalars[0] = f32_sat(res->loss);
    s->scalars[1] = f32_sat(res->conf_loss);
    s->scalars[2] = f32_sat(res->loc_loss);
    s->scalars[3] = f32_sat(res->normalizer);
    s->counts[0] = (int32_t)res->num_positives;
    s->counts[1] = (int32_t)res->num_negatives;
    for (int k = 0; k < 4; k++) {
        uint32_t u;
        memcpy(&u, &s->scalars[k], 4);
        put_u32_le(s->le + 4 * k, u);
    }
    put_u32_le(s->le + 16, (uint32_t)s->counts[0]);
    put_u32_le(s->le + 20, (uint32_t)s->counts[1]);

    float *per_image = NULL;
    if (res->per_image) {
        per_image = own(s, (size_t)b->batch * sizeof *per_image);
        if (!per_image)
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
        for (int64_t i = 0; i < b->batch; i++)
            per_image[i] = f32_sat(res->per_image[i].loss);
    }
    rc = make_sparse(s, req, res, given, &sp, d);
    if (rc)
        return rc;

    resp->segments = mbx_codec_calloc((size_t)req->num_outputs + 1, sizeof *resp->segments);
    if (!resp->segments)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    resp->num_segments = 1;

    jbuf_puts(&jb, "{\"model_name\":\"" MBX_OIP_MODEL_NAME "\"");
    if (req->id) {
        jbuf_puts(&jb, ",\"id\":");
        jbuf_put_jstring(&jb, req->id, strlen(req->id));
    }
    jbuf_puts(&jb, ",\"outputs\":[");
    for (int k = 0; k < req->num_outputs; k++) {
        mbx_oip_output o = req->output[k];
        const int grad = o == MBX_OIP_OUT_GRAD_LOC ? 0 : o == MBX_OIP_OUT_GRAD_CONF ? 1 : -1;
        /* A dense gradient without its array: sent from the rows given (grads_from_rows). */
        const int from_rows = grad >= 0 && !(grad ? res->grad_conf : res->grad_loc) && given &&
                              (grad ? given->conf_rows && given->conf_values
                                    : given->loc_rows && given->loc_values) &&
                              !force_json && mbx_oip_grads_from_rows(req);
        out_view v;
        rc = view_of(o, req, res, &sp, s, per_image, from_rows, &v, d);
        if (rc)
            goto fail;
        if (k)
            jbuf_putc(&jb, ',');
        jbuf_puts(&jb, "{\"name\":\"");
        jbuf_puts(&jb, mbx_oip_output_name(o));
        jbuf_puts(&jb, "\",\"datatype\":\"");
        jbuf_puts(&jb, mbx_oip_dtype_name(v.dtype));
        jbuf_puts(&jb, "\",\"shape\":[");
        for (int r = 0; r < v.rank; r++) {
            if (r)
                jbuf_putc(&jb, ',');
            jbuf_put_i64(&jb, v.shape[r]);
        }
        jbuf_puts(&jb, "],");
        if (from_rows) {
            const size_t len = (size_t)v.count * sizeof(float);
            jbuf_puts(&jb, "\"parameters\":{\"binary_data_size\":");
            jbuf_put_i64(&jb, (int64_t)len);
            jbuf_putc(&jb, '}');
            resp->rows_segment[grad] = resp->num_segments;
            resp->rows[grad] = mbx_dense_rows_of(given, grad, b);
            resp->segments[resp->num_segments].base = NULL;
            resp->segments[resp->num_segments].len = len;
            resp->num_segments++;
        } else if (req->binary[k] && !force_json) {
            size_t len;
            const void *bytes = wire_bytes(&v, s, &len);
            if (!bytes) {
                rc = mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
                goto fail;
            }
            jbuf_puts(&jb, "\"parameters\":{\"binary_data_size\":");
            jbuf_put_i64(&jb, (int64_t)len);
            jbuf_putc(&jb, '}');
            resp->segments[resp->num_segments].base = bytes;
            resp->segments[resp->num_segments].len = len;
            resp->num_segments++;
        } else {
            rc = put_data(&jb, &v, o, d);
            if (rc)
                goto fail;
        }
        jbuf_putc(&jb, '}');
    }
    jbuf_puts(&jb, "]}");
    rc = jbuf_finish(&jb, &resp->header, &resp->header_len);
    if (rc)
        return mbx_detail_set(d, rc, "out of memory rendering the response header");
    resp->segments[0].base = resp->header;
    resp->segments[0].len = resp->header_len;
    resp->binary = resp->num_segments > 1;
    resp->body_len = 0;
    for (size_t i = 0; i < resp->num_segments; i++)
        resp->body_len += resp->segments[i].len;
    return 0;
fail:
    jbuf_free(&jb);
    return rc;
}

int mbx_oip_response_render(const mbx_oip_request *req, const mbx_result *res, int force_json,
                            mbx_oip_response *resp, mbx_detail *d)
{
    return mbx_oip_response_render_sparse(req, res, NULL, force_json, resp, d);
}

int mbx_oip_response_render_sparse(const mbx_oip_request *req, const mbx_result *res,
                                   const mbx_sparse_grads *given, int force_json,
                                   mbx_oip_response *resp, mbx_detail *d)
{
    if (!resp)
        return mbx_detail_set(d, MBX_E_INVALID_ARGUMENT, "resp is NULL");
    memset(resp, 0, sizeof *resp);
    if (!req || !res)
        return mbx_detail_set(d, MBX_E_INVALID_ARGUMENT, "req or res is NULL");
    resp->storage = mbx_codec_calloc(1, sizeof *resp->storage);
    if (!resp->storage)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    int rc = render(req, res, given, force_json, resp, d);
    if (rc)
        mbx_oip_response_free(resp);
    return rc;
}
