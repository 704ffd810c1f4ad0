/*
 * procstat.c - reads /proc/self/stat, /proc/self/fd and /proc/stat for the
 * process_* metrics (the Prometheus client conventions).  It never fails
 * loudly: unreadable values are simply left out.
 */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a small file into buf (NUL-terminated); returns its length or -1. */
static long read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (long)n;
}

/* System boot time from /proc/stat's btime line (after the long intr line), or -1. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    double btime = -1;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    }
    free(line);
    fclose(f);
    return btime;
}

void svc_procstat_read(svc_procstat *st)
{
    char buf[4096];
    memset(st, 0, sizeof *st);
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);

    if (read_small("/proc/self/stat", buf, sizeof buf) > 0 && ticks > 0) {
        /* Fields after the command name, which may itself hold spaces and ')'. */
        char *p = strrchr(buf, ')');
        if (p) {
            p++;
            unsigned long long field[24] = {0};
            int idx = 3; /* p points at field 3 (state) */
            char *save = NULL;
            for (char *tok = strtok_r(p, " ", &save); tok && idx <= 24;
                 tok = strtok_r(NULL, " ", &save), idx++) {
                if (idx >= 14)
                    field[idx - 1] = strtoull(tok, NULL, 10);
            }
            if (idx > 24) {
                /* 14 utime, 15 stime, 22 starttime (ticks since boot), 24 rss (pages) */
                st->cpu_seconds = (double)(field[13] + field[14]) / (double)ticks;
                st->ok_cpu = 1;
                if (page > 0) {
                    st->resident_bytes = (double)field[23] * (double)page;
                    st->ok_rss = 1;
                }
                double btime = boot_time();
                if (btime > 0) {
                    st->start_time_seconds = btime + (double)field[21] / (double)ticks;
                    st->ok_start = 1;
                }
            }
        }
    }

    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        st->open_fds = (double)(n > 0 ? n - 1 : 0); /* minus the directory's own fd */
        st->ok_fds = 1;
    }
}
