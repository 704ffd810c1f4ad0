/*
 * job_split.h - a loss request as a job on the worker pool, shared by
 * POST /v1/loss (job_loss.c) and POST /v2/models/multibox_loss/infer
 * (job_oip.c), which differ only in how they read the body and write the
 * answer:
 *
 *   ops->parse, then mbx_loss_new + mbx_loss_begin      1 unit
 *   mbx_loss_match_image per image                       k units, then reduce
 *   mbx_loss_grad_image per image                        k units, then finish
 *                                                        and ops->render
 *
 * k (the loss context's slots) is the batch split: up to the number of
 * workers when the pool is quiet, fewer when other jobs run, never more
 * than B.  Each request has its own loss context.  The serial steps run on
 * the worker that ends a phase.  Any error sets the error answer (in the
 * request's error style) and releases everything at once.
 */
#ifndef SVC_JOB_SPLIT_H
#define SVC_JOB_SPLIT_H

#include <stdatomic.h>
#include <stdint.h>

#include "codec.h"
#include "multibox/multibox.h"
#include "pool.h"

struct svc_request;
typedef struct svc_split_job svc_split_job;

typedef struct svc_split_ops {
    /*
     * A worker: reads j->req's body into a problem and sets j->config,
     * j->batch, j->result (allocated for the outputs asked) and j->shape
     * (num_slots is set by the caller).  Everything they point to belongs
     * to the concrete job and stays valid until release.  Returns 0 or a
     * negative MBX_E_* code with d set.
     */
    int (*parse)(svc_split_job *j, mbx_detail *d);
    /* A worker, once the result is complete: sets the 200 answer in
     * j->req->response.  Returns 0 or a negative code with d set. */
    int (*render)(svc_split_job *j, mbx_detail *d);
    /* Frees what parse and render made and the answer does not own, and
     * the request body.  Called exactly once, on success or failure,
     * before the connection is resumed; may run on any thread. */
    void (*release)(svc_split_job *j);
    /*
     * Only when parse sets j->deferred (NULL otherwise).  load widens
     * image's rows of input (0 loc, 1 conf) into dst, the image's [A][w]
     * float32 array: all rows when rows is NULL, else rows[0..n) given as
     * flat indices image * A + a; returns -1 when all are finite, else an
     * index (>= 0) within the image's values of the first fault (a
     * non-finite value; for text inputs, maybe a bad character).  load_fail
     * sets the error of the first image with a fault (as a whole-tensor
     * parse would report it: loc before conf) and returns its code.  Both
     * run on any worker, concurrently.
     */
    int64_t (*load)(svc_split_job *j, int input, int64_t image, const int32_t *rows, int64_t n,
                    float *dst);
    int (*load_fail)(svc_split_job *j, int input, int64_t image, int64_t index, mbx_detail *d);
    /*
     * Optional (NULL: none).  When reduce finds a NaN or infinity in the
     * inputs: input's error as the job's parse would have reported it
     * (inputs read in place, unchecked), or 0 when it has none; asked for
     * loc, then conf, and the first error wins over the core's own.
     */
    int (*check)(svc_split_job *j, int input, mbx_detail *d);
} svc_split_ops;

/*
 * The whole batch's sparse gradients as the grad units write them: each
 * image's rows are a slice, in image order, of one array per output.
 * Owned by the split job until a renderer takes them (svc_split_take_sparse).
 */
typedef struct svc_sparse_out {
    int32_t *loc_rows, *conf_rows;
    float *loc_values, *conf_values;
    int64_t num_loc, num_conf;
} svc_sparse_out;

struct svc_split_job {
    svc_job job; /* first member: the pool's handle */
    const svc_split_ops *ops;
    struct svc_request *req;

    /* Set by ops->parse. */
    const mbx_config *config;
    const mbx_batch *batch;
    mbx_result *result;
    mbx_shape shape;
    int sparse;       /* 1: sparse gradients asked; the core writes only their rows (j->out) */
    int deferred[2];  /* loc, conf: not in batch (NULL there); ops->load widens them per image */

    /* Set after the grad phase when sparse: what render sends. */
    svc_sparse_out out;

    /* Private. */
    mbx_loss *loss;
    int64_t images;
    int units;    /* parallel units per phase = loss slots */
    int failed;
    int released;
    float *scratch;          /* per unit: A * (4 + C) floats of widened inputs */
    int32_t *row_scratch;    /* per unit: 2 * A rows (phase 2 with deferred inputs) */
    int64_t *bad;            /* [2][B]: first bad value of each image's deferred inputs, or -1 */
    mbx_sparse_grad *sp;     /* [B] each image's slice of out */
    float *conf_store;       /* [B][A][C] (sparse, no dense grad_conf): conf rows from match */
    atomic_int unit_error;   /* first error a work unit returned (0: none); cannot happen */
    /*
     * The next image a unit of the running phase takes: images go to whichever
     * unit is free (their costs differ), each unit working in its own slot.
     */
    atomic_llong next_image;
    int waiting;             /* loop thread: parked until more images are in */

    /* Streaming (svc_split_dispatch_early): the body still arrives. */
    int streaming;
    size_t body_bytes;       /* the whole body's length, which parse must use */
    atomic_llong ready;      /* images whose bytes are in (all, when not streaming) */
    atomic_int abandoned;    /* the client went away: end at the next step */
    atomic_int handoff;      /* SPLIT_BODY_DONE | SPLIT_JOB_DONE | SPLIT_ABANDONED */
};

/* Moves j->out into *dst (zeroing j->out), so the answer owns it; free with svc_sparse_free. */
void svc_split_take_sparse(svc_split_job *j, svc_sparse_out *dst);
void svc_sparse_free(svc_sparse_out *s);
/* j->out as the codec's borrowed view. */
mbx_sparse_grads svc_sparse_view(const svc_sparse_out *s);

/*
 * HTTP thread, from a handler: runs j on the pool with the connection
 * suspended.  j is malloc'ed by the caller (zeroed, concrete job first,
 * svc_split_job first in it), with ops and req set here.  The job frees j
 * itself once it is done; when the pool refuses it (503 overloaded is then
 * the answer), ops->release runs and j is freed at once.
 */
void svc_split_dispatch(struct svc_request *req, svc_split_job *j, const svc_split_ops *ops);

/*
 * Streaming: the loss starts while the body still arrives, image by image.
 *
 * HTTP thread, during the upload, once every byte parse reads is in (the
 * JSON header and every input but loc and conf; the bytes of loc and conf
 * are not read before svc_split_ready says so): starts j as
 * svc_split_dispatch does, but with the connection left running and
 * body_bytes as the body's full length.  Returns 0, or -1 when the pool
 * has no room (nothing was started: dispatch at the end as usual).
 *
 * Then, on the same thread: svc_split_ready as the bytes of more images
 * arrive (images 0..n-1 are complete in the body), svc_split_body_done
 * once the body is complete (instead of svc_split_dispatch), or
 * svc_split_abandon when the connection ends first.  The job runs ahead
 * as far as the images allow and parks in between, holding no worker and
 * no run slot, so a slow upload delays only itself.  Until the body is
 * done or abandoned, the job never frees the body, the request or j.
 */
int svc_split_dispatch_early(struct svc_request *req, svc_split_job *j, const svc_split_ops *ops,
                             size_t body_bytes);
void svc_split_ready(svc_split_job *j, int64_t n);
void svc_split_body_done(svc_split_job *j);
/* Returns 1 when the job will free req once it ends, 0 when the caller frees it now. */
int svc_split_abandon(svc_split_job *j);

#endif
