/*
 * job_loss.c - POST /v1/loss as a split job (job_split.c runs the phases):
 * the body is parsed as JSON by the /v1 codec (long b64 strings never go
 * through jansson; the scan that finds them stores the body on the HTTP
 * thread while it arrives and decodes them there, svc_loss_begin).  float32
 * b64 loc and conf so decoded are read by the core where they lie; ones
 * that could not be (left as text) are decoded one image at a time by the
 * match units (ops->load).  Otherwise the body is freed as soon as it is
 * parsed, since the parsed request then holds its own tensors.  Dense b64
 * gradients are computed as sparse rows and their texts written only as
 * they are sent, a block at a time (mbx_dense_rows): nearly all of them is
 * zero, "AAAA", so neither the dense arrays nor the 37 MB of text of an
 * SSD300 batch of 32 ever exist.  Other answers are rendered whole as JSON
 * text.
 */
#include <stdlib.h>

#include "codec.h"
#include "job_split.h"
#include "multibox/multibox.h"
#include "request.h"
#include "routes.h"

typedef struct loss_job {
    svc_split_job base; /* first member */
    mbx_body_scan *scan; /* the scan run during the upload (NULL: none), for parse */
    mbx_request *parsed;
    mbx_result result;
    int result_allocated;
    int from_rows; /* dense b64 gradients, made from sparse rows as they are sent */
    int in_place;  /* loc and conf are read where they were decoded in the body */
} loss_job;

/*
 * An answer with dense b64 gradients, as five parts: JSON, grad_loc's text,
 * JSON, grad_conf's text, JSON.  The texts are made from the sparse rows
 * (owned here) as libmicrohttpd sends them.
 */
typedef struct loss_answer {
    char *json;
    svc_sparse_out rows;
    mbx_dense_rows text[2];
    svc_part parts[5];
} loss_answer;

static void answer_free(void *cls)
{
    loss_answer *a = cls;
    free(a->json);
    svc_sparse_free(&a->rows);
    free(a);
}

static int loss_parse(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    svc_request *req = sj->req;
    int rc = mbx_request_parse_json_scanned(req->body ? req->body + req->body_offset : "",
                                            req->body_len, MBX_REQUEST_DEFER_INPUTS, j->scan,
                                            &j->parsed, d);
    mbx_body_scan_free(j->scan);
    j->scan = NULL;
    if (rc != 0)
        return rc;
    sj->deferred[0] = mbx_request_deferred(j->parsed, MBX_REQUEST_INPUT_LOC);
    sj->deferred[1] = mbx_request_deferred(j->parsed, MBX_REQUEST_INPUT_CONF);
    /* Deferred b64 inputs are read from the body until the last image: freed in release. */
    if (!sj->deferred[0] && !sj->deferred[1])
        svc_request_free_body(req); /* the parsed request holds its own copy */
    /*
     * Both decoded as they arrived: the core reads them where they lie, as
     * it reads binary tensors, and checks them itself (loss_check names a
     * fault as the parse would).
     */
    const float *loc = mbx_request_input_in_place(j->parsed, MBX_REQUEST_INPUT_LOC);
    const float *conf = mbx_request_input_in_place(j->parsed, MBX_REQUEST_INPUT_CONF);
    if (loc && conf) {
        j->parsed->batch.loc = loc;
        j->parsed->batch.conf = conf;
        sj->deferred[0] = sj->deferred[1] = 0;
        j->in_place = 1;
    }
    /* Sparse gradients come straight from the core's sparse units, and dense
     * b64 ones from the same rows: no dense arrays. */
    rc = mbx_result_alloc_ex(j->parsed, &j->result,
                             MBX_RESULT_SPARSE_DIRECT | MBX_RESULT_GRADS_FROM_ROWS, d);
    if (rc != 0)
        return rc;
    j->result_allocated = 1;
    j->from_rows = mbx_grads_from_rows(j->parsed);
    sj->sparse = j->parsed->outputs.gradients == MBX_GRAD_SPARSE || j->from_rows;
    sj->config = &j->parsed->config;
    sj->batch = &j->parsed->batch;
    sj->result = &j->result;
    sj->shape = mbx_request_shape(j->parsed, 1);
    return 0;
}

/* The answer around the gradients' texts, which are written as they are sent. */
static int render_from_rows(loss_job *j, mbx_detail *d)
{
    loss_answer *a = calloc(1, sizeof *a);
    if (!a)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    svc_split_take_sparse(&j->base, &a->rows);
    const mbx_sparse_grads view = svc_sparse_view(&a->rows);
    a->text[0] = mbx_dense_rows_of(&view, MBX_REQUEST_INPUT_LOC, &j->parsed->batch);
    a->text[1] = mbx_dense_rows_of(&view, MBX_REQUEST_INPUT_CONF, &j->parsed->batch);
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        const int64_t bad = mbx_dense_rows_non_finite(&a->text[k]);
        if (bad >= 0)
            rc = mbx_grads_non_finite(j->parsed, k, bad, d);
    }
    size_t len = 0, at[2];
    if (rc == 0)
        rc = mbx_response_render_json_around(j->parsed, &j->result, &a->json, &len, at, d);
    if (rc != 0) {
        answer_free(a);
        return rc;
    }
    a->parts[0] = (svc_part){a->json, at[0], NULL, 0};
    a->parts[1] = (svc_part){NULL, mbx_dense_rows_b64_size(&a->text[0]), &a->text[0], 1};
    a->parts[2] = (svc_part){a->json + at[0], at[1] - at[0], NULL, 0};
    a->parts[3] = (svc_part){NULL, mbx_dense_rows_b64_size(&a->text[1]), &a->text[1], 1};
    a->parts[4] = (svc_part){a->json + at[1], len - at[1], NULL, 0};
    svc_response_parts(&j->base.req->response, 200, SVC_CT_JSON, a->parts, 5,
                       len + a->parts[1].len + a->parts[3].len, answer_free, a);
    return 0;
}

static int loss_render(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    if (j->from_rows)
        return render_from_rows(j, d);
    char *out = NULL;
    size_t len = 0;
    const mbx_sparse_grads view = svc_sparse_view(&sj->out);
    int rc = mbx_response_render_json_sparse(j->parsed, &j->result, sj->sparse ? &view : NULL,
                                             &out, &len, d);
    if (rc != 0) {
        free(out);
        return rc;
    }
    svc_response_owned(&sj->req->response, 200, SVC_CT_JSON, out, len);
    return 0;
}

static void loss_release(svc_split_job *sj)
{
    loss_job *j = (loss_job *)sj;
    if (j->result_allocated)
        mbx_result_release(&j->result);
    j->result_allocated = 0;
    mbx_request_free(j->parsed);
    j->parsed = NULL;
    mbx_body_scan_free(j->scan);
    j->scan = NULL;
    svc_request_free_body(sj->req);
}

static int64_t loss_load(svc_split_job *sj, int input, int64_t image, const int32_t *rows,
                         int64_t n, float *dst)
{
    return mbx_request_load_input(((loss_job *)sj)->parsed, input, image, rows, n, dst);
}

static int loss_load_fail(svc_split_job *sj, int input, int64_t image, int64_t index,
                          mbx_detail *d)
{
    (void)image; /* the whole text is read again: a bad character anywhere comes first */
    (void)index;
    return mbx_request_input_fail(((loss_job *)sj)->parsed, input, d);
}

/* The core found a NaN or infinity: the parse's error for it, loc before conf. */
static int loss_check(svc_split_job *sj, int input, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    return j->in_place ? mbx_request_input_check(j->parsed, input, d) : 0;
}

static const svc_split_ops loss_ops = {loss_parse, loss_render,    loss_release,
                                       loss_load,  loss_load_fail, loss_check};

/* HTTP thread, each chunk: the scan stores it, decoding long b64 strings as they come. */
static void loss_store(svc_request *r, const char *data, size_t n)
{
    mbx_body_scan_write(r->hook_data, r->body + r->body_offset, data, n);
}

/* HTTP thread: the connection ended before the handler ran (or an error answered it). */
static int loss_abandon(svc_request *r)
{
    mbx_body_scan_free(svc_request_unfollow(r));
    return 0;
}

void svc_loss_begin(svc_request *r)
{
    mbx_body_scan *scan = mbx_body_scan_new();
    if (scan) {
        svc_request_follow(r, NULL, loss_abandon, scan);
        r->on_store = loss_store;
    }
}

void svc_handle_loss(svc_request *req)
{
    mbx_body_scan *scan = svc_request_unfollow(req);
    if (scan && req->body)
        mbx_body_scan_end(scan, req->body + req->body_offset);
    loss_job *j = calloc(1, sizeof *j);
    if (!j) {
        mbx_body_scan_free(scan);
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    j->scan = scan;
    svc_split_dispatch(req, &j->base, &loss_ops);
}
