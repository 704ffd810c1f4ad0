/*
 * procstat.h - the standard process_* metrics read from /proc for the
 * calling process.  Read-only, allocation-free, thread-safe.
 */
#ifndef SVC_PROCSTAT_H
#define SVC_PROCSTAT_H

typedef struct svc_procstat {
    double cpu_seconds;        /* user + system CPU time */
    double resident_bytes;     /* resident set size */
    double open_fds;           /* entries of /proc/self/fd */
    double start_time_seconds; /* process start, seconds since the Unix epoch */
    int ok_cpu, ok_rss, ok_fds, ok_start; /* 1 when the value was read */
} svc_procstat;

/* Fills st; a value that cannot be read has its ok_ flag 0. */
void svc_procstat_read(svc_procstat *st);

#endif
