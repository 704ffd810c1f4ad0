/*
 * test_sparse.c - per-image inputs and sparse gradients against the dense
 * path.  For every option combination test_split.c covers, and several
 * splits over two threads:
 *  - a batch begun without loc/conf, each unit given its image's inputs
 *    from a per-thread buffer (as the service widens FP16), with sparse
 *    outputs only and no dense arrays: the sparse rows scattered into zeros
 *    equal mbx_loss_compute's dense gradients bit for bit, and every scalar,
 *    per-image value, match and role is identical;
 *  - in the gradient phase the per-thread buffer holds NaN everywhere but
 *    the rows mbx_loss_sparse_rows names, so the unit provably reads no
 *    other row;
 *  - dense arrays and sparse outputs together: both identical;
 *  - per-image inputs with dense outputs: identical to the normal path.
 * Also the errors of the new entry points, and that none of them allocates.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "testutil.h"

enum { OUT_DENSE = 1, OUT_SPARSE = 2, OUT_STORE = 4 /* sparse, conf rows kept from match */ };

/* What one run writes: a result (arrays as asked) and, with OUT_SPARSE, per-image rows. */
typedef struct sparse_run {
    mbx_result r;
    int64_t B, A, C;
    int64_t *nloc, *nconf;         /* [B] */
    mbx_sparse_grad *sp;           /* [B] */
    float *store;                  /* [B][A][C] with OUT_STORE: each image's conf_rows */
} sparse_run;

typedef struct unit_plan {
    mbx_loss *loss;
    const mbx_batch *b;
    sparse_run *run;
    int phase;      /* 0 match, 1 grad */
    int slot;
    int use_input;  /* 1: per-image inputs from buf */
    int outputs;
    const int64_t *order;
    int64_t count;
    float *buf;     /* [A * (4 + C)] this thread's input buffer */
    int rc;
} unit_plan;

static void *unit_worker(void *p)
{
    unit_plan *u = p;
    const int64_t A = u->b->num_anchors, C = u->b->num_classes;
    float *loc = u->buf, *conf = u->buf + A * 4;
    for (int64_t k = 0; k < u->count && u->rc == 0; k++) {
        const int64_t i = u->order[k];
        const float *bl = u->b->loc + i * A * 4, *bc = u->b->conf + i * A * C;
        float *store = u->run->store ? u->run->store + i * A * C : NULL;
        mbx_image_input in = {loc, conf, store};
        const mbx_image_input batch_in = {bl, bc, store};
        const mbx_sparse_grad *sp = u->outputs & OUT_SPARSE ? &u->run->sp[i] : NULL;
        if (u->phase == 0) {
            if (!u->use_input && !store) {
                mbx_loss_match_image(u->loss, i, u->slot);
                continue;
            }
            if (!u->use_input) {
                u->rc = mbx_loss_match_image_input(u->loss, i, u->slot, &batch_in);
                continue;
            }
            memcpy(loc, bl, (size_t)(A * 4) * sizeof *loc);
            memcpy(conf, bc, (size_t)(A * C) * sizeof *conf);
            u->rc = mbx_loss_match_image_input(u->loss, i, u->slot, &in);
            continue;
        }
        if (!u->use_input) {
            u->rc = mbx_loss_grad_image_sparse(u->loss, i, u->slot, store ? &batch_in : NULL, sp);
            continue;
        }
        /* Only the rows the unit may read hold values; NaN elsewhere would show. */
        for (int64_t x = 0; x < A * (4 + C); x++)
            u->buf[x] = NAN;
        int64_t P = 0, K = 0;
        u->rc = mbx_loss_sparse_counts(u->loss, i, &P, &K);
        int32_t *lr = malloc((size_t)(P + 1) * sizeof *lr), *cr = malloc((size_t)(K + 1) * sizeof *cr);
        mbx_sparse_grad rows = {0, lr, NULL, cr, NULL};
        if (u->rc == 0)
            u->rc = mbx_loss_sparse_rows(u->loss, i, &rows);
        for (int64_t j = 0; j < P; j++)
            memcpy(loc + 4 * lr[j], bl + 4 * lr[j], 4 * sizeof *loc);
        for (int64_t j = 0; j < K && !store; j++) /* with a store, conf is not read */
            memcpy(conf + C * cr[j], bc + C * cr[j], (size_t)C * sizeof *conf);
        if (u->rc == 0)
            u->rc = mbx_loss_grad_image_sparse(u->loss, i, u->slot, &in, sp);
        free(lr);
        free(cr);
    }
    return NULL;
}

static void phase(mbx_loss *l, const mbx_batch *b, sparse_run *run, int ph, int mode, rng *r,
                  int use_input, int outputs)
{
    int64_t *order[2] = {malloc((size_t)b->batch * sizeof(int64_t)),
                         malloc((size_t)b->batch * sizeof(int64_t))};
    int64_t count[2];
    split_images_2(ph == 0 ? mode : (mode + 3) % 5, b->batch, r, order, count);
    pthread_t th[2];
    unit_plan up[2];
    for (int t = 0; t < 2; t++) {
        up[t] = (unit_plan){l, b, run, ph, (ph == 1 && mode % 2) ? 1 - t : t, use_input,
                            outputs, order[t], count[t],
                            malloc((size_t)(b->num_anchors * (4 + b->num_classes)) * sizeof(float)),
                            0};
        assert_int_equal(pthread_create(&th[t], NULL, unit_worker, &up[t]), 0);
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(up[t].rc, 0);
        free(up[t].buf);
    }
    free(order[0]);
    free(order[1]);
}

static void run_alloc(sparse_run *run, const mbx_batch *b, int outputs)
{
    memset(run, 0, sizeof *run);
    run->B = b->batch;
    run->A = b->num_anchors;
    run->C = b->num_classes;
    const size_t BA = (size_t)(run->B * run->A);
    run->r.per_image = calloc((size_t)run->B, sizeof *run->r.per_image);
    run->r.matches = calloc(BA, sizeof(int32_t));
    run->r.roles = calloc(BA, 1);
    if (outputs & OUT_DENSE) {
        /* Garbage, not zeros: the core must write every element. */
        run->r.grad_loc = malloc(BA * 4 * sizeof(float));
        run->r.grad_conf = malloc(BA * (size_t)run->C * sizeof(float));
        memset(run->r.grad_loc, 0x7f, BA * 4 * sizeof(float));
        memset(run->r.grad_conf, 0x7f, BA * (size_t)run->C * sizeof(float));
    }
    if (outputs & OUT_STORE) { /* NaN: a row grad reads but match did not write would show */
        run->store = malloc(BA * (size_t)run->C * sizeof(float));
        for (size_t k = 0; k < BA * (size_t)run->C; k++)
            run->store[k] = NAN;
    }
    run->nloc = calloc((size_t)run->B, sizeof(int64_t));
    run->nconf = calloc((size_t)run->B, sizeof(int64_t));
    run->sp = calloc((size_t)run->B, sizeof *run->sp);
}

/* Sizes every image's sparse arrays from the counts (after reduce). */
static void run_size_sparse(sparse_run *run, mbx_loss *l)
{
    for (int64_t i = 0; i < run->B; i++) {
        assert_int_equal(mbx_loss_sparse_counts(l, i, &run->nloc[i], &run->nconf[i]), 0);
        mbx_sparse_grad *s = &run->sp[i];
        s->row_base = i * run->A;
        s->loc_rows = malloc((size_t)(run->nloc[i] + 1) * sizeof(int32_t));
        s->loc_values = malloc((size_t)(run->nloc[i] * 4 + 1) * sizeof(float));
        s->conf_rows = malloc((size_t)(run->nconf[i] + 1) * sizeof(int32_t));
        s->conf_values = malloc((size_t)(run->nconf[i] * run->C + 1) * sizeof(float));
    }
}

static void run_free(sparse_run *run)
{
    for (int64_t i = 0; i < run->B; i++) {
        free(run->sp[i].loc_rows);
        free(run->sp[i].loc_values);
        free(run->sp[i].conf_rows);
        free(run->sp[i].conf_values);
    }
    free(run->sp);
    free(run->nloc);
    free(run->nconf);
    free(run->r.per_image);
    free(run->r.matches);
    free(run->r.roles);
    free(run->r.grad_loc);
    free(run->r.grad_conf);
    free(run->store);
}

static void run_split(mbx_loss *l, const mbx_batch *b, sparse_run *run, int mode, rng *r,
                      int use_input, int outputs)
{
    mbx_batch bb = *b;
    if (use_input)
        bb.loc = bb.conf = NULL; /* the units get every input */
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_loss_begin(l, &bb, &run->r, &d), 0);
    /* The units copy their inputs from b; the context saw bb. */
    phase(l, b, run, 0, mode, r, use_input, outputs);
    assert_int_equal(mbx_loss_reduce(l, &d), 0);
    if (outputs & OUT_SPARSE)
        run_size_sparse(run, l);
    phase(l, b, run, 1, mode, r, use_input, outputs);
    assert_int_equal(mbx_loss_finish(l, &d), 0);
}

static int same_d(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Scalars, per-image values, matches and roles of run equal ref's bit for bit. */
static void check_scalars(const test_result *ref, const sparse_run *run, const char *what)
{
    const mbx_result *a = &ref->r, *b = &run->r;
    if (!same_d(a->loss, b->loss) || !same_d(a->conf_loss, b->conf_loss) ||
        !same_d(a->loc_loss, b->loc_loss) || !same_d(a->normalizer, b->normalizer) ||
        a->num_positives != b->num_positives || a->num_negatives != b->num_negatives)
        fail_msg("%s: scalars differ (loss %.17g vs %.17g)", what, a->loss, b->loss);
    for (int64_t i = 0; i < run->B; i++) {
        const mbx_image_result *p = &a->per_image[i], *q = &b->per_image[i];
        if (!same_d(p->loss, q->loss) || !same_d(p->conf_loss, q->conf_loss) ||
            !same_d(p->loc_loss, q->loc_loss) || p->num_positives != q->num_positives ||
            p->num_negatives != q->num_negatives)
            fail_msg("%s: per_image[%lld] differs", what, (long long)i);
    }
    const size_t BA = (size_t)(run->B * run->A);
    if (memcmp(a->matches, b->matches, BA * sizeof(int32_t)) != 0 ||
        memcmp(a->roles, b->roles, BA) != 0)
        fail_msg("%s: matches or roles differ", what);
}

/*
 * The sparse rows scattered into zeros equal ref's dense gradients; the
 * rows are exactly the positives (loc) and the counted anchors (conf).
 */
static void check_sparse(const test_result *ref, const sparse_run *run, const char *what)
{
    const int64_t B = run->B, A = run->A, C = run->C;
    const size_t BA = (size_t)(B * A);
    float *gl = calloc(BA * 4, sizeof(float)), *gc = calloc(BA * (size_t)C, sizeof(float));
    for (int64_t i = 0; i < B; i++) {
        const mbx_sparse_grad *s = &run->sp[i];
        assert_int_equal(run->nloc[i], ref->r.per_image[i].num_positives);
        assert_int_equal(run->nconf[i],
                         ref->r.per_image[i].num_positives + ref->r.per_image[i].num_negatives);
        int64_t p = 0, k = 0;
        for (int64_t a = 0; a < A; a++) {
            const uint8_t role = ref->r.roles[i * A + a];
            if (role == MBX_ROLE_POSITIVE) {
                if (p >= run->nloc[i] || s->loc_rows[p] != i * A + a)
                    fail_msg("%s: image %lld loc row %lld", what, (long long)i, (long long)p);
                memcpy(gl + (i * A + a) * 4, s->loc_values + 4 * p, 4 * sizeof(float));
                p++;
            }
            if (role == MBX_ROLE_POSITIVE || role == MBX_ROLE_NEGATIVE) {
                if (k >= run->nconf[i] || s->conf_rows[k] != i * A + a)
                    fail_msg("%s: image %lld conf row %lld", what, (long long)i, (long long)k);
                memcpy(gc + (i * A + a) * C, s->conf_values + C * k, (size_t)C * sizeof(float));
                k++;
            }
        }
        assert_int_equal(p, run->nloc[i]);
        assert_int_equal(k, run->nconf[i]);
    }
    if (memcmp(gl, ref->r.grad_loc, BA * 4 * sizeof(float)) != 0)
        fail_msg("%s: scattered grad_loc differs from the dense one", what);
    if (memcmp(gc, ref->r.grad_conf, BA * (size_t)C * sizeof(float)) != 0)
        fail_msg("%s: scattered grad_conf differs from the dense one", what);
    free(gl);
    free(gc);
}

static void check_dense(const test_result *ref, const sparse_run *run, const char *what)
{
    const size_t BA = (size_t)(run->B * run->A);
    if (memcmp(ref->r.grad_loc, run->r.grad_loc, BA * 4 * sizeof(float)) != 0 ||
        memcmp(ref->r.grad_conf, run->r.grad_conf, BA * (size_t)run->C * sizeof(float)) != 0)
        fail_msg("%s: dense gradients differ", what);
}

/* The option combinations of test_split.c (rep % n of each option), and mining off. */
static void config_for(int rep, mbx_config *cfg)
{
    mbx_config_default(cfg);
    cfg->conf_loss = (mbx_conf_loss)(rep % 3);
    cfg->loc_loss = (mbx_loc_loss)(rep % 6);
    cfg->bipartite = (mbx_bipartite)(rep % 3);
    cfg->normalization = (mbx_normalization)(rep % 5);
    cfg->use_difficult = rep % 2;
    cfg->neg_overlap = rep % 4 == 0 ? 0.3 : 0.5;
    if (rep >= 12) /* beyond test_split's reps: no mining, and a min_negatives floor */
        cfg->mining = rep % 2 ? MBX_MINING_NONE : MBX_MINING_HARD_NEGATIVE;
    if (rep == 14)
        cfg->min_negatives = 5;
}

static void test_sparse_equals_dense(void **state)
{
    (void)state;
    rng r = {51};
    for (int rep = 0; rep < 15; rep++) {
        const int64_t B = rng_int(&r, 1, 9);
        batch_spec spec = {B, rng_int(&r, 30, 300), rng_int(&r, 2, 23), 0, 6, 2.0, 1.0, 0, 1,
                           MBX_BOX_XYXY};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        mbx_config cfg;
        config_for(rep, &cfg);
        mbx_loss *one = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        mbx_loss *two = loss_for(&cfg, &tb.b, tb.max_boxes, 2);
        test_result ref;
        result_alloc(&ref, &tb.b);
        assert_int_equal(mbx_loss_compute(one, &tb.b, &ref.r, NULL), 0);
        /*
         * Each way the service runs a split, in this order: sparse only with
         * per-image inputs (the FP16 + sparse path), sparse only with the
         * batch's inputs, both again with the conf rows kept from match in a
         * store (what the service does), dense and sparse together (inputs
         * alternating with the mode), dense with per-image inputs (the
         * normal path bit for bit).
         */
        static const struct {
            const char *name;
            int input; /* -1: mode % 2 */
            int outputs;
        } kinds[] = {{"sparse+input", 1, OUT_SPARSE},
                     {"sparse", 0, OUT_SPARSE},
                     {"sparse+store", 0, OUT_SPARSE | OUT_STORE},
                     {"sparse+input+store", 1, OUT_SPARSE | OUT_STORE},
                     {"dense+sparse", -1, OUT_DENSE | OUT_SPARSE},
                     {"dense+input", 1, OUT_DENSE}};
        for (int mode = 0; mode < 5; mode++) {
            for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
                char what[64];
                snprintf(what, sizeof what, "rep %d mode %d %s", rep, mode, kinds[k].name);
                const int input = kinds[k].input < 0 ? mode % 2 : kinds[k].input;
                sparse_run run;
                run_alloc(&run, &tb.b, kinds[k].outputs);
                run_split(two, &tb.b, &run, mode, &r, input, kinds[k].outputs);
                check_scalars(&ref, &run, what);
                if (kinds[k].outputs & OUT_DENSE)
                    check_dense(&ref, &run, what);
                if (kinds[k].outputs & OUT_SPARSE)
                    check_sparse(&ref, &run, what);
                run_free(&run);
            }
        }
        result_free(&ref);
        mbx_loss_free(one);
        mbx_loss_free(two);
        batch_free(&tb);
    }
}

static int64_t alloc_calls;

static void *refusing_malloc(size_t n)
{
    (void)n;
    alloc_calls++;
    return NULL;
}

/* The sparse and per-image entry points allocate nothing (every allocation would fail). */
static void test_sparse_allocates_nothing(void **state)
{
    (void)state;
    rng r = {52};
    batch_spec spec = {3, 120, 7, 1, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
    test_result ref;
    result_alloc(&ref, &tb.b);
    assert_int_equal(mbx_loss_compute(l, &tb.b, &ref.r, NULL), 0);
    sparse_run run;
    run_alloc(&run, &tb.b, OUT_SPARSE);
    const int64_t A = tb.b.num_anchors, C = tb.b.num_classes;
    mbx_batch bb = tb.b;
    bb.loc = bb.conf = NULL;
    mbx_detail d = {0, ""};
    alloc_calls = 0;
    mbx_core_set_allocator(refusing_malloc, free);
    assert_int_equal(mbx_loss_begin(l, &bb, &run.r, &d), 0);
    for (int64_t i = 0; i < tb.b.batch; i++) {
        mbx_image_input in = {tb.b.loc + i * A * 4, tb.b.conf + i * A * C, NULL};
        assert_int_equal(mbx_loss_match_image_input(l, i, 0, &in), 0);
    }
    assert_int_equal(mbx_loss_reduce(l, &d), 0);
    mbx_core_set_allocator(NULL, NULL);
    run_size_sparse(&run, l); /* the caller's allocations, outside the hook */
    mbx_core_set_allocator(refusing_malloc, free);
    for (int64_t i = 0; i < tb.b.batch; i++) {
        mbx_image_input in = {tb.b.loc + i * A * 4, tb.b.conf + i * A * C, NULL};
        assert_int_equal(mbx_loss_sparse_rows(l, i, &run.sp[i]), 0);
        assert_int_equal(mbx_loss_grad_image_sparse(l, i, 0, &in, &run.sp[i]), 0);
    }
    assert_int_equal(mbx_loss_finish(l, &d), 0);
    mbx_core_set_allocator(NULL, NULL);
    assert_int_equal(alloc_calls, 0);
    check_scalars(&ref, &run, "no-alloc run");
    check_sparse(&ref, &run, "no-alloc run");
    run_free(&run);
    result_free(&ref);
    mbx_loss_free(l);
    batch_free(&tb);
}

/* Misuse of the new entry points, and errors through per-image inputs. */
static void test_sparse_errors(void **state)
{
    (void)state;
    rng r = {53};
    batch_spec spec = {3, 40, 4, 1, 3, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 2);
    const int64_t A = 40, C = 4;
    mbx_result res = {0};
    mbx_detail d = {0, ""};
    mbx_batch bb = tb.b;
    bb.loc = bb.conf = NULL;

    /* compute still needs the batch's inputs. */
    assert_int_equal(mbx_loss_compute(l, &bb, &res, &d), MBX_E_INVALID_ARGUMENT);
    assert_string_equal(d.message, "loc: NULL");

    /* A NaN in a per-image input is reported by reduce as from the batch. */
    float *conf = malloc((size_t)(A * C) * sizeof *conf);
    assert_int_equal(mbx_loss_begin(l, &bb, &res, &d), 0);
    int64_t P = 0, K = 0;
    assert_int_equal(mbx_loss_sparse_counts(l, 0, &P, &K), MBX_E_INVALID_ARGUMENT); /* no reduce */
    for (int64_t i = 0; i < 3; i++) {
        memcpy(conf, tb.b.conf + i * A * C, (size_t)(A * C) * sizeof *conf);
        if (i == 2)
            conf[7 * C + 3] = NAN;
        mbx_image_input in = {tb.b.loc + i * A * 4, conf, NULL};
        assert_int_equal(mbx_loss_match_image_input(l, i, (int)(i % 2), &in), 0);
    }
    assert_int_equal(mbx_loss_reduce(l, &d), MBX_E_NOT_FINITE);
    assert_string_equal(d.message, "conf[2][7][3]: NaN or infinity");
    assert_int_equal(mbx_loss_finish(l, &d), MBX_E_NOT_FINITE);

    /* A plain unit on a batch without inputs: reduce says so. */
    assert_int_equal(mbx_loss_begin(l, &bb, &res, &d), 0);
    mbx_image_input in0 = {tb.b.loc, tb.b.conf, NULL};
    mbx_image_input no_conf = {tb.b.loc, NULL, NULL};
    assert_int_equal(mbx_loss_match_image_input(l, 0, 0, &no_conf), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_match_image_input(l, 0, 2, &in0), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_match_image_input(l, 3, 0, &in0), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_match_image_input(l, 0, 0, NULL), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_match_image_input(l, 0, 0, &in0), 0);
    mbx_loss_match_image(l, 1, 0);
    mbx_image_input in2 = {tb.b.loc + 2 * A * 4, tb.b.conf + 2 * A * C, NULL};
    assert_int_equal(mbx_loss_match_image_input(l, 2, 1, &in2), 0);
    assert_int_equal(mbx_loss_reduce(l, &d), MBX_E_INVALID_ARGUMENT);
    assert_string_equal(d.message,
                        "loc[1], conf[1]: no inputs (the batch has none and the unit was given none)");
    assert_int_equal(mbx_loss_finish(l, &d), MBX_E_INVALID_ARGUMENT);

    /* Grad-phase misuse. */
    assert_int_equal(mbx_loss_begin(l, &bb, &res, &d), 0);
    for (int64_t i = 0; i < 3; i++) {
        mbx_image_input in = {tb.b.loc + i * A * 4, tb.b.conf + i * A * C, NULL};
        assert_int_equal(mbx_loss_match_image_input(l, i, 0, &in), 0);
    }
    mbx_sparse_grad none = {0};
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 0, &in0, &none), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_reduce(l, &d), 0);
    assert_int_equal(mbx_loss_sparse_counts(l, 3, &P, &K), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_sparse_counts(l, 0, &P, NULL), 0);
    assert_int_equal(mbx_loss_sparse_counts(l, 0, NULL, &K), 0);
    int32_t *rows = malloc((size_t)(K + 1) * sizeof *rows);
    float *vals = malloc((size_t)(K * C + 1) * sizeof *vals);
    mbx_sparse_grad far = {INT32_MAX - 38, NULL, NULL, rows, NULL};
    assert_int_equal(mbx_loss_sparse_rows(l, 0, &far), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 0, &in0, &far), MBX_E_INVALID_ARGUMENT);
    far.row_base = INT32_MAX - 39; /* the last anchor's row is INT32_MAX: fits */
    assert_int_equal(mbx_loss_sparse_rows(l, 0, &far), 0);
    far.row_base = -1;
    assert_int_equal(mbx_loss_sparse_rows(l, 0, &far), MBX_E_INVALID_ARGUMENT);
    mbx_sparse_grad cv = {0, NULL, NULL, rows, vals};
    mbx_image_input loc_only = {tb.b.loc, NULL, NULL};
    /* conf values wanted and no dense array: the conf input is needed. */
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 0, &loc_only, &cv), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 0, NULL, &cv), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 2, &in0, &cv), MBX_E_INVALID_ARGUMENT);
    /* loc values only: conf is not read. */
    mbx_sparse_grad lv = {0, rows, vals, NULL, NULL};
    assert_int_equal(mbx_loss_grad_image_sparse(l, 0, 0, &loc_only, &lv), 0);
    assert_int_equal(mbx_loss_grad_image_sparse(l, 1, 0, &in0, &cv), 0);
    mbx_image_input in1 = {tb.b.loc + A * 4, tb.b.conf + A * C, NULL};
    assert_int_equal(mbx_loss_grad_image_sparse(l, 1, 0, &in1, NULL), 0);
    assert_int_equal(mbx_loss_grad_image_sparse(l, 2, 0, &in2, NULL), 0);
    assert_int_equal(mbx_loss_finish(l, &d), 0);
    assert_int_equal(mbx_loss_sparse_counts(l, 0, &P, &K), MBX_E_INVALID_ARGUMENT); /* finished */
    free(rows);
    free(vals);
    free(conf);
    mbx_loss_free(l);
    batch_free(&tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_equals_dense),
        cmocka_unit_test(test_sparse_allocates_nothing),
        cmocka_unit_test(test_sparse_errors),
    };
    return cmocka_run_group_tests_name("core sparse gradients and per-image inputs", tests, NULL,
                                       NULL);
}
