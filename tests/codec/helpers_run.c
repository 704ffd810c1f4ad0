/*
 * helpers_run.c - the whole parse -> compute -> render path in one call for
 * the codec tests that need the core's loss (kept apart from helpers.c so
 * the parse-only tests link without it).
 */
#include <string.h>

#include "helpers.h"

int th_run_request(const char *body, size_t len, char **response, size_t *response_len,
                   mbx_detail *detail)
{
    mbx_request *req = NULL;
    mbx_loss *loss = NULL;
    mbx_result res;
    memset(&res, 0, sizeof res);
    *response = NULL;
    int rc = mbx_request_parse_json(body, len, &req, detail);
    if (rc)
        return rc;
    mbx_shape shape = mbx_request_shape(req, 1);
    rc = mbx_loss_new(&loss, &req->config, &shape, detail);
    if (rc == 0)
        rc = mbx_result_alloc(req, &res, detail);
    if (rc == 0)
        rc = mbx_loss_compute(loss, &req->batch, &res, detail);
    if (rc == 0)
        rc = mbx_response_render_json(req, &res, response, response_len, detail);
    mbx_result_release(&res);
    mbx_loss_free(loss);
    mbx_request_free(req);
    return rc;
}

