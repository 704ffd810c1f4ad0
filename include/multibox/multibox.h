/*
 * multibox.h - the public API of libmultibox, the SSD MultiBox loss core.
 *
 * The core is pure computation: it does no I/O, keeps no global state, and
 * allocates only in mbx_loss_new(); every compute call works in the workspace
 * sized there and in buffers the caller owns.  All functions return 0 on
 * success or a negative MBX_E* code, and fill an optional mbx_detail with a
 * message naming what was wrong ("targets[3].boxes[7]: x2 <= x1").
 *
 * Semantics follow docs/multibox-semantics.md of the project: matching,
 * encoding, localization and classification losses, hard negative mining and
 * normalization, with the defaults of the SSD paper and Caffe SSD.
 */
#ifndef MULTIBOX_MULTIBOX_H
#define MULTIBOX_MULTIBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MBX_BUILDING_LIBRARY) && defined(__GNUC__)
#define MBX_API __attribute__((visibility("default")))
#else
#define MBX_API
#endif

#define MBX_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ errors */

/*
 * The one error list of the project: X(NAME, "stable_snake_case_code",
 * "default message").  It generates the enum below, mbx_error_name() and
 * mbx_error_message(); the service maps each code to an HTTP status in one
 * table of its own.  Codes are negative: MBX_E_<NAME> = -(position + 1).
 */
#define MBX_ERROR_LIST(X)                                                     \
    X(INVALID_ARGUMENT, "invalid_argument", "invalid argument")              \
    X(OUT_OF_MEMORY, "out_of_memory", "out of memory")                       \
    X(MALFORMED_JSON, "malformed_json", "request body is not valid JSON")    \
    X(BAD_BASE64, "bad_base64", "invalid base64 data")                       \
    X(BAD_FRAMING, "bad_framing", "binary tensor framing is inconsistent")   \
    X(MISSING_FIELD, "missing_field", "a required field is missing")         \
    X(UNKNOWN_FIELD, "unknown_field", "unknown field")                       \
    X(WRONG_TYPE, "wrong_type", "a field has the wrong type")                \
    X(SHAPE_MISMATCH, "shape_mismatch", "tensor shapes disagree")            \
    X(SHAPE_OVERFLOW, "shape_overflow", "tensor shape is too large")         \
    X(OUT_OF_RANGE, "out_of_range", "value out of range")                    \
    X(NOT_FINITE, "not_finite", "NaN or infinity in an input")               \
    X(DEGENERATE_BOX, "degenerate_box", "box with non-positive size")        \
    X(BAD_LABEL, "bad_label", "label out of range or equal to background")   \
    X(BAD_CONFIG, "bad_config", "configuration value out of range")          \
    X(UNKNOWN_PRESET, "unknown_preset", "unknown anchor preset")             \
    X(PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")      \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",                      \
      "unsupported content type")                                            \
    X(NOT_FOUND, "not_found", "no such resource")                            \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")        \
    X(UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")         \
    X(OVERLOADED, "overloaded", "server is overloaded, retry later")         \
    X(DRAINING, "draining", "server is shutting down")                       \
    X(TIMEOUT, "timeout", "request timed out")                               \
    X(INTERNAL, "internal_error", "internal error")

/* Error codes: MBX_E_<NAME> == -(1 + index in MBX_ERROR_LIST). */
enum mbx_error_index {
#define MBX_X_INDEX(name, code, msg) MBX_ERROR_INDEX_##name,
    MBX_ERROR_LIST(MBX_X_INDEX)
#undef MBX_X_INDEX
    MBX_ERROR_COUNT
};
enum mbx_error_code {
    MBX_OK = 0,
#define MBX_X_CODE(name, code, msg) MBX_E_##name = -(1 + MBX_ERROR_INDEX_##name),
    MBX_ERROR_LIST(MBX_X_CODE)
#undef MBX_X_CODE
};

/*
 * Details of a failure, filled by any function that takes one (it may be
 * NULL).  message holds the full human text, path first when there is one:
 * "targets[3].boxes[7]: x2 <= x1".  On success the struct is left untouched.
 */
typedef struct mbx_detail {
    int code;           /* the negative MBX_E_* code, or 0 */
    char message[256];  /* NUL-terminated, truncated if longer */
} mbx_detail;

/* "stable_snake_case" code of an error, "unknown_error" for a foreign value. */
MBX_API const char *mbx_error_name(int code);
/* Default one-line message of an error code. */
MBX_API const char *mbx_error_message(int code);
/* Fills detail (when not NULL) with code and a printf-style message; returns code. */
MBX_API int mbx_detail_set(mbx_detail *detail, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------ configuration */

typedef enum mbx_box_format { MBX_BOX_XYXY = 0, MBX_BOX_CXCYWH } mbx_box_format;
typedef enum mbx_bipartite {
    MBX_BIPARTITE_GREEDY = 0, /* Caffe MatchBBox */
    MBX_BIPARTITE_PER_GT,     /* ssd.pytorch, torchvision, mmdetection */
    MBX_BIPARTITE_NONE
} mbx_bipartite;
typedef enum mbx_loc_loss {
    MBX_LOC_SMOOTH_L1 = 0, MBX_LOC_L1, MBX_LOC_L2,
    MBX_LOC_GIOU, MBX_LOC_DIOU, MBX_LOC_CIOU
} mbx_loc_loss;
typedef enum mbx_conf_loss { MBX_CONF_SOFTMAX = 0, MBX_CONF_SIGMOID, MBX_CONF_FOCAL } mbx_conf_loss;
typedef enum mbx_mining { MBX_MINING_HARD_NEGATIVE = 0, MBX_MINING_NONE } mbx_mining;
typedef enum mbx_normalization {
    MBX_NORM_POSITIVES = 0,       /* max(1, total positives) */
    MBX_NORM_POSITIVES_PER_IMAGE, /* sum_i max(1, P_i) */
    MBX_NORM_ANCHORS,             /* B * A */
    MBX_NORM_BATCH,               /* B */
    MBX_NORM_NONE                 /* 1 */
} mbx_normalization;

/*
 * Every option of the semantics document.  Fill with mbx_config_default()
 * and change what differs; mbx_config_validate() checks the ranges.
 */
typedef struct mbx_config {
    mbx_box_format box_format;   /* of anchors (unless mbx_batch says otherwise) and GT */
    mbx_bipartite bipartite;
    double overlap_threshold;    /* (0, 1] */
    double neg_overlap;          /* (0, overlap_threshold] */
    int use_difficult;           /* 0 drops GT flagged difficult before matching */
    int num_variances;           /* 2 or 4 */
    double variances[4];         /* each > 0; with 2, only [0] (centre) and [1] (size) are read */
    mbx_loc_loss loc_loss;
    double smooth_l1_beta;       /* > 0 */
    double alpha;                /* >= 0, weight of the localization loss */
    mbx_conf_loss conf_loss;
    int background_label;        /* [0, C), or -1 for no background column (not softmax) */
    double focal_alpha;          /* [0, 1] */
    double focal_gamma;          /* >= 0 */
    mbx_mining mining;
    double neg_pos_ratio;        /* >= 0 */
    int64_t min_negatives;       /* >= 0 */
    mbx_normalization normalization;
} mbx_config;

/* Fills cfg with the documented defaults (SSD paper / Caffe SSD). */
MBX_API void mbx_config_default(mbx_config *cfg);
/*
 * Checks every range of the semantics table; num_classes is C (background
 * column included); pass 0 to skip the checks that need it.  Returns 0 or
 * MBX_E_BAD_CONFIG with detail->message naming the key ("config.alpha: ...").
 */
MBX_API int mbx_config_validate(const mbx_config *cfg, int64_t num_classes, mbx_detail *detail);

/*
 * Checks one box (an anchor or a ground-truth box) as the core will use it:
 * finite, with positive width and height, and in cxcywh with a size that
 * does not vanish next to the centre once the box is made xyxy in double
 * precision (a width of 1e-44 at x = 0.7 does).  Returns 0,
 * MBX_E_NOT_FINITE or MBX_E_DEGENERATE_BOX; *why, when why is not NULL, gets
 * a static description of the fault.  The codecs call it so that a request
 * they accept is one the core accepts.
 */
MBX_API int mbx_box_check(const float box[4], mbx_box_format fmt, const char **why);

/* ---------------------------------------------------------------- inputs */

/* One image's ground truth; all pointers caller-owned, read-only. */
typedef struct mbx_image_targets {
    const float *boxes;        /* [num_boxes][4], in cfg->box_format */
    const int64_t *labels;     /* [num_boxes], in [0, C) and != background_label */
    const uint8_t *difficult;  /* [num_boxes] 0/1, or NULL for none difficult */
    int64_t num_boxes;         /* >= 0 */
} mbx_image_targets;

/* One batch; every pointer caller-owned and left unmodified. */
typedef struct mbx_batch {
    int64_t batch;             /* B >= 1 */
    int64_t num_anchors;       /* A >= 1 */
    int64_t num_classes;       /* C >= 2, or >= 1 with background_label -1 */
    const float *loc;          /* [B][A][4] predicted offsets */
    const float *conf;         /* [B][A][C] logits */
    const float *anchors;      /* [A][4] */
    mbx_box_format anchors_format; /* format of anchors[] (generated presets are xyxy) */
    const mbx_image_targets *targets; /* [B] */
} mbx_batch;

/* ---------------------------------------------------------------- outputs */

/* Role of an anchor after matching and mining, per image and anchor. */
typedef enum mbx_anchor_role {
    MBX_ROLE_NONE = 0,      /* eligible negative not selected: no loss, zero gradient */
    MBX_ROLE_POSITIVE = 1,  /* matched to a GT */
    MBX_ROLE_NEGATIVE = 2,  /* negative that counts in the loss */
    MBX_ROLE_IGNORED = 3    /* in the ignore band */
} mbx_anchor_role;

typedef struct mbx_image_result {
    double loss, conf_loss, loc_loss; /* divided by the batch normalizer N; loss = conf + alpha*loc */
    int64_t num_positives, num_negatives;
} mbx_image_result;

/*
 * Results.  The scalar fields are always written.  Each array pointer is
 * caller-owned and optional (NULL: not computed/written).
 */
typedef struct mbx_result {
    double loss;                 /* (conf_loss + alpha * loc_loss), already divided by N */
    double conf_loss, loc_loss;  /* divided by N; loc_loss without alpha */
    double normalizer;           /* N */
    int64_t num_positives, num_negatives;
    mbx_image_result *per_image; /* [B] or NULL */
    float *grad_loc;             /* [B][A][4] or NULL: dL/dloc */
    float *grad_conf;            /* [B][A][C] or NULL: dL/dconf */
    int32_t *matches;            /* [B][A] or NULL: GT index as sent, or -1 */
    uint8_t *roles;              /* [B][A] or NULL: mbx_anchor_role */
} mbx_result;

/* ------------------------------------------------------------ computation */

/*
 * Shape limits that a loss context is sized for.  A context may run any
 * batch whose B, A, C and per-image GT count are within these.
 */
typedef struct mbx_shape {
    int64_t batch, num_anchors, num_classes;
    int64_t max_boxes;   /* largest num_boxes of any image */
    int num_slots;       /* scratch slots: at most this many threads run work units at once */
} mbx_shape;

typedef struct mbx_loss mbx_loss; /* opaque: config, workspace and per-batch state */

/*
 * Creates a loss context for cfg (copied) and shape; this is the only place
 * the core allocates.  Returns 0 and *out, or MBX_E_BAD_CONFIG,
 * MBX_E_SHAPE_OVERFLOW (workspace size overflows), MBX_E_OUT_OF_MEMORY; on
 * failure *out is NULL and nothing leaks.
 */
MBX_API int mbx_loss_new(mbx_loss **out, const mbx_config *cfg, const mbx_shape *shape,
                         mbx_detail *detail);
/* Frees a context; NULL is a no-op. */
MBX_API void mbx_loss_free(mbx_loss *loss);

/*
 * The whole computation on the calling thread: begin, every image's match
 * and gradient units, finish.  Equal bit for bit to any split across threads.
 */
MBX_API int mbx_loss_compute(mbx_loss *loss, const mbx_batch *batch, mbx_result *result,
                             mbx_detail *detail);

/*
 * The same computation split into work units, for a pool of threads:
 *
 *   mbx_loss_begin(ctx, batch, result, d)         one thread; validates inputs
 *   mbx_loss_match_image(ctx, i, slot)            for every image i, any thread
 *   mbx_loss_reduce(ctx, d)                       one thread, after all matches
 *   mbx_loss_grad_image(ctx, i, slot)             for every image i, any thread
 *   mbx_loss_finish(ctx, d)                       one thread, after all grads
 *
 * Units of one phase may run concurrently on distinct images as long as no
 * two running units share a slot (0 <= slot < shape.num_slots).  begin
 * checks shapes, the GT boxes and labels and the anchors; match checks loc and conf
 * of its image for NaN/infinity.  An error in a unit is kept and reported by
 * reduce (lowest image index first); after an error, later phases do nothing.
 * A match unit also writes its image's matches, roles and zero gradient rows
 * (grad writes the rows that count), so after a failure the result's arrays
 * may be partly written; its scalar fields are not.
 * batch and result must stay valid until finish returns.  Totals are summed
 * in image order, so the result does not depend on the split.
 *
 * The result's dense gradient arrays are optional: with grad_loc and
 * grad_conf NULL nothing of size B*A*C is written or zeroed, and
 * mbx_loss_grad_image_sparse (below) writes only the rows that count into
 * per-image arrays the caller sizes after reduce.
 */
MBX_API int mbx_loss_begin(mbx_loss *loss, const mbx_batch *batch, mbx_result *result,
                           mbx_detail *detail);
MBX_API void mbx_loss_match_image(mbx_loss *loss, int64_t image, int slot);
MBX_API int mbx_loss_reduce(mbx_loss *loss, mbx_detail *detail);
MBX_API void mbx_loss_grad_image(mbx_loss *loss, int64_t image, int slot);
MBX_API int mbx_loss_finish(mbx_loss *loss, mbx_detail *detail);

/* ------------------------------------ per-image inputs and sparse gradients */

/*
 * One image's loc and conf, given to a work unit instead of the batch's
 * slices: a caller that holds FP16 / BF16 inputs widens one image at a time
 * into a buffer of its own (A * (C + 4) floats per thread) instead of the
 * whole batch.  The values must be those the batch would hold (the result is
 * then bit-identical).  Caller-owned, read-only, needed only during the call
 * that takes it.  With such units, mbx_loss_begin() accepts a batch whose
 * loc and conf are NULL; a plain unit (mbx_loss_match_image) on such a batch
 * records MBX_E_INVALID_ARGUMENT for its image, which reduce reports.
 */
typedef struct mbx_image_input {
    const float *loc;  /* [A][4] */
    const float *conf; /* [A][C] */
    /*
     * Optional (NULL: none), for sparse gradients without a dense grad_conf:
     * the image's own [A][C] store, kept by the caller from the image's match
     * unit to its gradient unit.  Match, which has the image's conf rows in
     * cache, writes there the counted rows' conf gradients before the 1/N
     * (rows packed in anchor order, at most A of them; the rest is not
     * touched), and grad scales them instead of computing them again from
     * conf, which it then does not read.  Values are the same bits.
     */
    float *conf_rows;
} mbx_image_input;

/*
 * Sparse gradients of one image: only the rows that can be non-zero, so no
 * dense [B][A][C] array is written or zeroed.  The loc rows are the image's
 * positives (num_positives rows: dL/dloc is zero elsewhere), the conf rows
 * its positives and counted negatives (num_positives + num_negatives rows),
 * both in ascending anchor order.  Each row index written is row_base + the
 * anchor index: row_base = image * A gives the flat b*A + a rows of a whole
 * batch, 0 the anchor indices.  Every array is caller-owned, sized from
 * mbx_loss_sparse_counts(), and optional (NULL: not written).  Values are
 * bit-identical to the same rows of the dense grad_loc / grad_conf.
 */
typedef struct mbx_sparse_grad {
    int64_t row_base;    /* >= 0, row_base + A - 1 <= INT32_MAX when rows are written */
    int32_t *loc_rows;   /* [P] */
    float *loc_values;   /* [P][4] */
    int32_t *conf_rows;  /* [K] */
    float *conf_values;  /* [K][C] */
} mbx_sparse_grad;

/*
 * mbx_loss_match_image with the image's inputs given by in (not NULL; both
 * pointers set).  Returns 0, or MBX_E_INVALID_ARGUMENT (and does nothing)
 * when the context is not in the match phase or image, slot or in is bad;
 * a NaN or infinity in the inputs is reported by reduce, as for the plain
 * unit.  Same concurrency rules as mbx_loss_match_image.
 */
MBX_API int mbx_loss_match_image_input(mbx_loss *loss, int64_t image, int slot,
                                       const mbx_image_input *in);

/*
 * After reduce (and before finish): the sizes of image's sparse outputs,
 * *loc_rows = P (positives) and *conf_rows = K (positives and counted
 * negatives); either pointer may be NULL.  Reads only; any thread.
 * 0 or MBX_E_INVALID_ARGUMENT.
 */
MBX_API int mbx_loss_sparse_counts(const mbx_loss *loss, int64_t image, int64_t *loc_rows,
                                   int64_t *conf_rows);

/*
 * After reduce: writes only the row indices of out (loc_rows, conf_rows,
 * when not NULL) for image, the rows its gradient unit will read from its
 * inputs: the loc rows of the positives, and the conf rows when conf values
 * are computed there (see below).  A caller that widens its inputs on
 * demand loads exactly those rows.  Reads only; any thread.  0 or
 * MBX_E_INVALID_ARGUMENT.
 */
MBX_API int mbx_loss_sparse_rows(const mbx_loss *loss, int64_t image, const mbx_sparse_grad *out);

/*
 * The gradient unit of image with optional inputs and sparse outputs; it
 * does all that mbx_loss_grad_image does (loss sums, dense rows of the
 * result's arrays when they are set) and also writes out (when not NULL).
 * in NULL means the batch's slices.  From in, the unit reads only the loc
 * rows of the positives and, when out->conf_values is set but the result
 * has no dense grad_conf, the conf rows of the counted anchors (their
 * gradient is then computed here, since match wrote it nowhere); the other
 * rows of in's arrays are not read and may hold anything.  Returns 0, or
 * MBX_E_INVALID_ARGUMENT (nothing done) when the context is not in the grad
 * phase, image or slot is out of range, inputs are missing or row_base is
 * out of range.  Same concurrency rules as mbx_loss_grad_image.
 */
MBX_API int mbx_loss_grad_image_sparse(mbx_loss *loss, int64_t image, int slot,
                                       const mbx_image_input *in, const mbx_sparse_grad *out);

/* -------------------------------------------------------------- prior boxes */

#define MBX_PRIOR_MAX_LAYERS 16
#define MBX_PRIOR_MAX_RATIOS 8

typedef enum mbx_prior_clip {
    MBX_CLIP_NONE = 0,
    MBX_CLIP_CORNERS, /* Caffe: clip x1,y1,x2,y2 to [0,1] */
    MBX_CLIP_CENTER   /* ssd.pytorch: clip cx,cy,w,h to [0,1] */
} mbx_prior_clip;

/* Parameters of the prior-box generator (the semantics' prior_box). */
typedef struct mbx_prior_params {
    double image_size;                          /* S > 0 */
    int num_layers;                             /* 1..MBX_PRIOR_MAX_LAYERS */
    int64_t feature_maps[MBX_PRIOR_MAX_LAYERS]; /* f_k >= 1 */
    double steps[MBX_PRIOR_MAX_LAYERS];         /* s_k > 0 */
    double min_sizes[MBX_PRIOR_MAX_LAYERS];     /* m_k > 0 */
    int has_max_sizes;                          /* 0: no sqrt(m M) box */
    double max_sizes[MBX_PRIOR_MAX_LAYERS];     /* M_k > 0 */
    int num_ratios[MBX_PRIOR_MAX_LAYERS];       /* 0..MBX_PRIOR_MAX_RATIOS */
    double aspect_ratios[MBX_PRIOR_MAX_LAYERS][MBX_PRIOR_MAX_RATIOS]; /* each > 0 */
    mbx_prior_clip clip;
    double offset;                              /* 0.5 */
} mbx_prior_params;

/* Fills p with a named preset (ssd300_voc, ssd300_coco, ssd512_voc); MBX_E_UNKNOWN_PRESET otherwise. */
MBX_API int mbx_prior_preset(const char *name, mbx_prior_params *p, mbx_detail *detail);
/* Names of the presets, NULL-terminated. */
MBX_API const char *const *mbx_prior_preset_names(void);
/* Validates p and sets *count to the number of anchors; MBX_E_BAD_CONFIG or MBX_E_SHAPE_OVERFLOW. */
MBX_API int mbx_prior_count(const mbx_prior_params *p, int64_t *count, mbx_detail *detail);
/*
 * Writes the anchors, xyxy, into out[capacity][4]; MBX_E_INVALID_ARGUMENT if
 * capacity < count.  Reproduces ssd.pytorch's PriorBox bit for bit.
 */
MBX_API int mbx_prior_generate(const mbx_prior_params *p, float *out, int64_t capacity,
                               mbx_detail *detail);

#ifdef __cplusplus
}
#endif
#endif
