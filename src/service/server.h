/*
 * server.h - the libmicrohttpd daemon of multiboxd: one internal polling
 * thread with epoll, suspend/resume for requests whose work runs on the
 * pool, the access handler that drives svc_request, and the completion
 * hook that logs each request and feeds the metrics.
 */
#ifndef SVC_SERVER_H
#define SVC_SERVER_H

#include <stdint.h>

#include "app.h"

typedef struct svc_server svc_server;

/*
 * Binds app->cfg's address and starts the HTTP thread.  Returns 0 and
 * *out, or -1 after logging why (address in use, unresolvable host...).
 */
int svc_server_start(svc_server **out, svc_app *app);
/* The port actually bound (useful with port 0). */
int svc_server_port(const svc_server *s);
/* Stops accepting connections; connections already open are served, and
 * so are those still waiting in the listen backlog (accepted now). */
void svc_server_quiesce(svc_server *s);
/* Requests between their headers and the end of their answer (plus one
 * for the first 250 ms after quiesce, while requests on connections just
 * accepted arrive). */
int64_t svc_server_in_flight(const svc_server *s);
/* Stops the HTTP thread, closes every connection and frees s (no request may be suspended). */
void svc_server_stop(svc_server *s);

#endif
