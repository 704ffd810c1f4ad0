/*
 * loc.c - encoding, decoding and the six localization losses with exact
 * gradients for one positive anchor.  Mirrors torchvision 0.14:
 * BoxCoder.encode_single/decode_single (size offsets clamped at ln(1000/16)),
 * smooth_l1_loss, and generalized_box_iou_loss, distance_box_iou_loss,
 * complete_box_iou_loss with eps 1e-7, including where eps is added and how
 * torch splits the gradient of min/max on ties (half to each side).
 * Pure: no allocation, no state.
 */
#include <math.h>

#include "loc.h"

#define IOU_EPS 1e-7
#define PI_D 3.14159265358979323846

void mbx_loc_params_init(mbx_loc_params *p, const mbx_config *cfg)
{
    const double *v = cfg->variances;
    const int four = cfg->num_variances == 4;
    p->kind = cfg->loc_loss;
    p->weights[0] = 1.0 / v[0];
    p->weights[1] = 1.0 / (four ? v[1] : v[0]);
    p->weights[2] = 1.0 / (four ? v[2] : v[1]);
    p->weights[3] = 1.0 / (four ? v[3] : v[1]);
    p->beta = cfg->smooth_l1_beta;
}

void mbx_encode(const mbx_loc_params *p, const double anchor[4], const double gt[4], double t[4])
{
    const double ew = anchor[2] - anchor[0], eh = anchor[3] - anchor[1];
    const double ecx = anchor[0] + 0.5 * ew, ecy = anchor[1] + 0.5 * eh;
    const double gw = gt[2] - gt[0], gh = gt[3] - gt[1];
    const double gcx = gt[0] + 0.5 * gw, gcy = gt[1] + 0.5 * gh;
    t[0] = p->weights[0] * (gcx - ecx) / ew;
    t[1] = p->weights[1] * (gcy - ecy) / eh;
    t[2] = p->weights[2] * log(gw / ew);
    t[3] = p->weights[3] * log(gh / eh);
}

/* Decoding with what the backward pass needs. */
typedef struct decoded {
    double box[4];
    double aw, ah, pw, ph;
    int w_clamped, h_clamped;
} decoded;

static void decode(const mbx_loc_params *p, const float loc[4], const double anchor[4],
                   decoded *d)
{
    const double clip = log(1000.0 / 16.0);
    d->aw = anchor[2] - anchor[0];
    d->ah = anchor[3] - anchor[1];
    const double cx = anchor[0] + 0.5 * d->aw, cy = anchor[1] + 0.5 * d->ah;
    const double dx = (double)loc[0] / p->weights[0];
    const double dy = (double)loc[1] / p->weights[1];
    double dw = (double)loc[2] / p->weights[2];
    double dh = (double)loc[3] / p->weights[3];
    d->w_clamped = dw > clip;
    d->h_clamped = dh > clip;
    if (d->w_clamped)
        dw = clip;
    if (d->h_clamped)
        dh = clip;
    const double pcx = dx * d->aw + cx, pcy = dy * d->ah + cy;
    d->pw = exp(dw) * d->aw;
    d->ph = exp(dh) * d->ah;
    const double hw = 0.5 * d->pw, hh = 0.5 * d->ph;
    d->box[0] = pcx - hw;
    d->box[1] = pcy - hh;
    d->box[2] = pcx + hw;
    d->box[3] = pcy + hh;
}

void mbx_decode(const mbx_loc_params *p, const float loc[4], const double anchor[4], double box[4])
{
    decoded d;
    decode(p, loc, anchor, &d);
    for (int k = 0; k < 4; k++)
        box[k] = d.box[k];
}

/* Gradient share of `self` in torch.maximum(self, other) and torch.minimum. */
static double dmax(double self, double other)
{
    return self > other ? 1.0 : self == other ? 0.5 : 0.0;
}

static double dmin(double self, double other)
{
    return self < other ? 1.0 : self == other ? 0.5 : 0.0;
}

/* atan(w / h) as torch computes it, defined (atan2) where w / h is not finite. */
static double aspect_angle(double w, double h)
{
    const double r = w / h;
    return isfinite(r) ? atan(r) : atan2(w, h);
}

/* CIoU's trade-off factor alpha = v / (1 - iou + v + eps) of box b against g. */
static double ciou_alpha(const double b[4], const double g[4])
{
    const double xk1 = fmax(b[0], g[0]), yk1 = fmax(b[1], g[1]);
    const double xk2 = fmin(b[2], g[2]), yk2 = fmin(b[3], g[3]);
    const double inter = (yk2 > yk1 && xk2 > xk1) ? (xk2 - xk1) * (yk2 - yk1) : 0.0;
    const double uni = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter;
    const double iou = inter / (uni + IOU_EPS);
    const double dv =
        aspect_angle(g[2] - g[0], g[3] - g[1]) - aspect_angle(b[2] - b[0], b[3] - b[1]);
    const double v = (4.0 / (PI_D * PI_D)) * dv * dv;
    return v / (1.0 - iou + v + IOU_EPS);
}

/*
 * GIoU / DIoU / CIoU loss of predicted box b against g, and gb[k] = d loss /
 * d b[k].  alpha_box (may be NULL) is the box that sets CIoU's alpha.
 */
static double iou_loss(mbx_loc_loss kind, const double b[4], const double g[4], double gb[4],
                       const double *alpha_box)
{
    const double x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
    const double X1 = g[0], Y1 = g[1], X2 = g[2], Y2 = g[3];
    double g1 = 0.0, h1 = 0.0, g2 = 0.0, h2 = 0.0; /* d loss / d x1, y1, x2, y2 */

    /* _loss_inter_union */
    const double xk1 = fmax(x1, X1), yk1 = fmax(y1, Y1);
    const double xk2 = fmin(x2, X2), yk2 = fmin(y2, Y2);
    const int overlap = (yk2 > yk1) && (xk2 > xk1);
    const double iw = xk2 - xk1, ih = yk2 - yk1;
    const double inter = overlap ? iw * ih : 0.0;
    const double wp = x2 - x1, hp = y2 - y1;
    const double uni = wp * hp + (X2 - X1) * (Y2 - Y1) - inter;
    const double ue = uni + IOU_EPS;
    const double iou = inter / ue;

    /* Enclosing box. */
    const double xc1 = fmin(x1, X1), yc1 = fmin(y1, Y1);
    const double xc2 = fmax(x2, X2), yc2 = fmax(y2, Y2);
    const double cw = xc2 - xc1, ch = yc2 - yc1;

    double loss;
    /* Every variant has the term -iou: d/d inter = 1/ue directly, and via union. */
    double g_inter = -1.0 / ue;
    double g_union = inter / (ue * ue);
    double g_cw = 0.0, g_ch = 0.0; /* d loss / d (xc2 - xc1), (yc2 - yc1) */

    if (kind == MBX_LOC_GIOU) {
        const double area_c = cw * ch;
        const double ce = area_c + IOU_EPS;
        loss = 1.0 - (iou - (area_c - uni) / ce);
        const double g_ac = (IOU_EPS + uni) / (ce * ce);
        g_union += -1.0 / ce;
        g_cw = g_ac * ch;
        g_ch = g_ac * cw;
    } else {
        const double diag = cw * cw + ch * ch + IOU_EPS;
        const double xp = (x2 + x1) / 2.0, yp = (y2 + y1) / 2.0;
        const double xg = (X1 + X2) / 2.0, yg = (Y1 + Y2) / 2.0;
        const double cd = (xp - xg) * (xp - xg) + (yp - yg) * (yp - yg);
        loss = 1.0 - iou + cd / diag;
        const double g_cd = 1.0 / diag, g_diag = -cd / (diag * diag);
        const double g_xp = g_cd * 2.0 * (xp - xg), g_yp = g_cd * 2.0 * (yp - yg);
        g1 += 0.5 * g_xp;
        g2 += 0.5 * g_xp;
        h1 += 0.5 * g_yp;
        h2 += 0.5 * g_yp;
        g_cw = g_diag * 2.0 * cw;
        g_ch = g_diag * 2.0 * ch;
        if (kind == MBX_LOC_CIOU) {
            const double k4 = 4.0 / (PI_D * PI_D);
            const double dv = aspect_angle(X2 - X1, Y2 - Y1) - aspect_angle(wp, hp);
            const double v = k4 * dv * dv;
            const double alpha =
                alpha_box ? ciou_alpha(alpha_box, g) : v / (1.0 - iou + v + IOU_EPS);
            loss += alpha * v;
            const double den = wp * wp + hp * hp;
            if (den > 0.0) {
                /* d v / d atan(wp/hp) = -2 k4 dv; d atan/d wp = hp/den, d/d hp = -wp/den */
                const double g_at = alpha * (-2.0 * k4 * dv);
                const double g_wp = g_at * hp / den, g_hp = -g_at * wp / den;
                g2 += g_wp;
                g1 -= g_wp;
                h2 += g_hp;
                h1 -= g_hp;
            }
        }
    }
    /* Union = wp hp + area_g - inter. */
    g_inter -= g_union;
    g2 += g_union * hp;
    g1 -= g_union * hp;
    h2 += g_union * wp;
    h1 -= g_union * wp;
    if (overlap) {
        const double g_iw = g_inter * ih, g_ih = g_inter * iw;
        g2 += g_iw * dmin(x2, X2);
        g1 -= g_iw * dmax(x1, X1);
        h2 += g_ih * dmin(y2, Y2);
        h1 -= g_ih * dmax(y1, Y1);
    }
    g2 += g_cw * dmax(x2, X2);
    g1 -= g_cw * dmin(x1, X1);
    h2 += g_ch * dmax(y2, Y2);
    h1 -= g_ch * dmin(y1, Y1);
    gb[0] = g1;
    gb[1] = h1;
    gb[2] = g2;
    gb[3] = h2;
    return loss;
}

double mbx_loc_loss_grad(const mbx_loc_params *p, const float loc[4], const double anchor[4],
                    const double gt[4], double grad[4], const float *alpha_loc)
{
    double gr[4];
    double loss = 0.0;
    if (p->kind == MBX_LOC_SMOOTH_L1 || p->kind == MBX_LOC_L1 || p->kind == MBX_LOC_L2) {
        double t[4];
        mbx_encode(p, anchor, gt, t);
        for (int k = 0; k < 4; k++) {
            const double x = (double)loc[k] - t[k];
            const double ax = fabs(x);
            const double sg = x > 0.0 ? 1.0 : x < 0.0 ? -1.0 : 0.0;
            if (p->kind == MBX_LOC_SMOOTH_L1) {
                if (ax < p->beta) {
                    loss += 0.5 * x * x / p->beta;
                    gr[k] = x / p->beta;
                } else {
                    loss += ax - 0.5 * p->beta;
                    gr[k] = sg;
                }
            } else if (p->kind == MBX_LOC_L1) {
                loss += ax;
                gr[k] = sg;
            } else {
                loss += 0.5 * x * x;
                gr[k] = x;
            }
        }
    } else {
        decoded d, da;
        double gb[4];
        decode(p, loc, anchor, &d);
        if (alpha_loc)
            decode(p, alpha_loc, anchor, &da);
        loss = iou_loss(p->kind, d.box, gt, gb, alpha_loc ? da.box : NULL);
        /* x1 = cx - pw/2, x2 = cx + pw/2; cx = dx aw + acx; pw = e^min(dw, clip) aw. */
        const double g_cx = gb[0] + gb[2], g_cy = gb[1] + gb[3];
        const double g_pw = 0.5 * (gb[2] - gb[0]), g_ph = 0.5 * (gb[3] - gb[1]);
        gr[0] = g_cx * d.aw / p->weights[0];
        gr[1] = g_cy * d.ah / p->weights[1];
        gr[2] = d.w_clamped ? 0.0 : g_pw * d.pw / p->weights[2];
        gr[3] = d.h_clamped ? 0.0 : g_ph * d.ph / p->weights[3];
    }
    if (grad)
        for (int k = 0; k < 4; k++)
            grad[k] = gr[k];
    return loss;
}
