/* cli/outdir.c — an output directory is locked for the run (issue 11:
 * two runs on the same --out both "succeeded" and left a directory mixing
 * one run's adapter with the other's checkpoint and recipe).  See cli.h
 * cli_lock_outdir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../eval/report.h"
#include "cli.h"

#define LOCK_NAME ".edgetune.lock"

static int lock_fd = -1;   /* held (open, flocked) until the process exits */

/* 1 when name ends in ".tmp.<digits>" (et_commit_tmp's temporary names). */
static int is_tmp_name(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    while (strstr(t + 1, ".tmp.")) t = strstr(t + 1, ".tmp.");
    const char *d = t + 5;
    if (!*d) return 0;
    for (; *d; d++)
        if (*d < '0' || *d > '9') return 0;
    return 1;
}

/* Remove the plain files in dir (a stale temporary folder has no subfolders). */
static void remove_files_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p)
            unlink(p);
    closedir(d);
}

/* Remove the temporary files (and folders) of writes a killed run left in
 * dir: under the lock nothing else writes there. */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        if (!is_tmp_name(de->d_name) || snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p) continue;
        struct stat st;
        if (lstat(p, &st)) continue;
        if (S_ISDIR(st.st_mode)) {   /* a folder written as a unit (peft/): its files, then itself */
            remove_files_in(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

int cli_lock_outdir(const char *dir, et_err *e) {
    if (!dir || !*dir) return et_fail(e, ET_EUSAGE, "no output directory given");
    if (lock_fd >= 0) return 0;   /* one run per process: already held */
    int rc = et_mkdir_p(dir, e);   /* eval/report.h */
    if (rc) return rc;
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return et_fail(e, ET_EUSAGE, "%s: not a directory (--out names a directory)", dir);
    if (access(dir, W_OK)) return et_fail(e, ET_ERUN, "%s: the output directory is not writable", dir);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, LOCK_NAME) >= (int)sizeof path)
        return et_fail(e, ET_EUSAGE, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return et_fail(e, ET_ERUN, "%s: cannot create the lock file (%s)", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int err = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (err != EWOULDBLOCK)
            return et_fail(e, ET_ERUN, "%s: cannot lock %s (%s)", dir, path, strerror(err));
        if (pid > 0)
            return et_fail(e, ET_EUSAGE, "%s is in use by another edgetune run (pid %ld, lock %s): wait for it "
                           "to finish or choose another output directory", dir, pid, path);
        return et_fail(e, ET_EUSAGE, "%s is in use by another edgetune run (lock %s): wait for it to finish or "
                       "choose another output directory", dir, path);
    }
    /* ours: record the pid for the message another run prints */
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, buf, (size_t)len, 0) != len) {
        /* the lock holds anyway; only the pid in the message is missing */
    }
    lock_fd = fd;
    remove_stale_tmp(dir);
    char peft[4096];
    if (snprintf(peft, sizeof peft, "%s/peft", dir) < (int)sizeof peft) remove_stale_tmp(peft);
    return 0;
}
