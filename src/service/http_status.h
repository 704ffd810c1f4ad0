/*
 * http_status.h - the one table from MBX_E_* codes to HTTP statuses.  Every
 * error answer of the service takes its status from here.
 */
#ifndef SVC_HTTP_STATUS_H
#define SVC_HTTP_STATUS_H

/* HTTP status for a negative MBX_E_* code; 500 for anything unknown. */
int svc_http_status(int mbx_code);

/* 1 when answers with this code carry Retry-After (503 class). */
int svc_http_retryable(int mbx_code);

#endif
