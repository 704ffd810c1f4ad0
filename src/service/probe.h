/*
 * probe.h - `multiboxd --probe URL`: a plain HTTP/1.0 GET over a raw
 * socket, for container health checks where no curl is installed.
 */
#ifndef SVC_PROBE_H
#define SVC_PROBE_H

/*
 * Fetches url (http://HOST[:PORT][/PATH], HOST may be [v6]) with the given
 * timeout for connecting, sending and reading the status line.  Returns
 * the process exit status: 0 on a 2xx, 1 on any other answer or a network
 * failure, 2 for a URL it cannot parse.  Writes a one-line reason to stderr
 * on failure.
 */
int svc_probe(const char *url, double timeout_s);

#endif
