/* datasets/h5file.c — a failure-tolerant POSIX driver for the HDF5 files
 * edgetune writes.  See h5file.h.  The driver callbacks follow HDF5 1.10's
 * H5FDsec2.c (the default driver) in what they do; only the handling of a
 * failed write differs. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5file.h"

#if H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10

typedef struct h5w {
    H5FD_t pub;        /* HDF5's part: must come first */
    int fd;            /* what H5Fget_vfd_handle returns a pointer to (POSIX compatible) */
    haddr_t eoa, eof;  /* end of allocated space, end of the file as written */
    int failed;        /* errno of the first failed write/truncate/close, 0 when none */
    int closing;       /* set by et_h5_close: failures recorded, reported as success */
    int *report;       /* set by et_h5_close: receives `failed` when the driver closes */
    dev_t dev;
    ino_t ino;
} h5w;

#define H5W_MAXADDR (((haddr_t)1 << (8 * sizeof(off_t) - 1)) - 1)

static h5w *from_fd(void *handle) { return (h5w *)((char *)handle - offsetof(h5w, fd)); }

static void push(const char *func, int line, H5E_minor_t minor, const char *what) {
    H5Epush2(H5E_DEFAULT, __FILE__, func, (unsigned)line, H5E_ERR_CLS, H5E_IO, minor, "%s", what);
}

static H5FD_t *w_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
    (void)fapl;
    if (!name || !*name || maxaddr == 0 || maxaddr > H5W_MAXADDR) {
        push(__func__, __LINE__, H5E_BADVALUE, "bad file name or maxaddr");
        return NULL;
    }
    int o = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & H5F_ACC_TRUNC) o |= O_TRUNC;
    if (flags & H5F_ACC_CREAT) o |= O_CREAT;
    if (flags & H5F_ACC_EXCL) o |= O_EXCL;
    int fd = open(name, o | O_CLOEXEC, 0666);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        push(__func__, __LINE__, H5E_CANTOPENFILE, "unable to open file");
        return NULL;
    }
    h5w *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        push(__func__, __LINE__, H5E_CANTALLOC, "out of memory");
        return NULL;
    }
    w->fd = fd;
    w->eof = (haddr_t)st.st_size;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    return &w->pub;
}

static herr_t w_close(H5FD_t *file) {
    h5w *w = (h5w *)file;
    if (close(w->fd) != 0 && !w->failed) w->failed = errno ? errno : EIO;
    if (w->report) *w->report = w->failed;   /* et_h5_close's outcome, read after H5Fclose */
    free(w);
    return 0;
}

static int w_cmp(const H5FD_t *a, const H5FD_t *b) {
    const h5w *x = (const h5w *)a, *y = (const h5w *)b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return 0;
}

static herr_t w_query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_POSIX_COMPAT_HANDLE | H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
    return 0;
}

static haddr_t w_get_eoa(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const h5w *)file)->eoa;
}

static herr_t w_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) {
    (void)type;
    ((h5w *)file)->eoa = addr;
    return 0;
}

static haddr_t w_get_eof(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const h5w *)file)->eof;
}

static herr_t w_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
    (void)fapl;
    *handle = &((h5w *)file)->fd;
    return 0;
}

static herr_t w_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf) {
    (void)type;
    (void)dxpl;
    h5w *w = (h5w *)file;
    if (addr == HADDR_UNDEF || addr > H5W_MAXADDR || size > H5W_MAXADDR - addr || addr + size > w->eoa) {
        push(__func__, __LINE__, H5E_OVERFLOW, "read outside the allocated space");
        return -1;
    }
    uint8_t *p = buf;
    while (size > 0) {
        ssize_t n = pread(w->fd, p, size, (off_t)addr);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            push(__func__, __LINE__, H5E_READERROR, "read failed");
            return -1;
        }
        if (n == 0) {   /* past the end of the file: zeros, as sec2 */
            memset(p, 0, size);
            break;
        }
        p += n;
        addr += (haddr_t)n;
        size -= (size_t)n;
    }
    return 0;
}

/* A failed write or truncate: recorded; an error for HDF5 unless closing. */
static herr_t failure(h5w *w, int err, const char *func, int line, H5E_minor_t minor, const char *what) {
    if (!w->failed) w->failed = err ? err : EIO;
    if (w->closing) return 0;
    push(func, line, minor, what);
    return -1;
}

static herr_t w_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf) {
    (void)type;
    (void)dxpl;
    h5w *w = (h5w *)file;
    if (addr == HADDR_UNDEF || addr > H5W_MAXADDR || size > H5W_MAXADDR - addr || addr + size > w->eoa) {
        push(__func__, __LINE__, H5E_OVERFLOW, "write outside the allocated space");
        return -1;
    }
    if (w->failed && w->closing) return 0;   /* the file is lost anyway: let the close finish */
    const uint8_t *p = buf;
    haddr_t a = addr;
    size_t left = size;
    while (left > 0) {
        ssize_t n = pwrite(w->fd, p, left, (off_t)a);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return failure(w, n < 0 ? errno : ENOSPC, __func__, __LINE__, H5E_WRITEERROR, "write failed");
        p += n;
        a += (haddr_t)n;
        left -= (size_t)n;
    }
    if (a > w->eof) w->eof = a;
    return 0;
}

static herr_t w_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl;
    (void)closing;
    h5w *w = (h5w *)file;
    if (w->eoa == w->eof) return 0;
    if (w->failed && w->closing) return 0;
    if (ftruncate(w->fd, (off_t)w->eoa) != 0)
        return failure(w, errno, __func__, __LINE__, H5E_SEEKERROR, "unable to set the file's length");
    w->eof = w->eoa;
    return 0;
}

static const H5FD_class_t h5w_class = {
    .name = "edgetune_posix",
    .maxaddr = H5W_MAXADDR,
    .fc_degree = H5F_CLOSE_WEAK,
    .open = w_open,
    .close = w_close,
    .cmp = w_cmp,
    .query = w_query,
    .get_eoa = w_get_eoa,
    .set_eoa = w_set_eoa,
    .get_eof = w_get_eof,
    .get_handle = w_get_handle,
    .read = w_read,
    .write = w_write,
    .truncate = w_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

static hid_t driver_id = -1;

hid_t et_h5_fapl(void) {
    if (driver_id < 0 || H5Iis_valid(driver_id) <= 0) driver_id = H5FDregister(&h5w_class);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    /* strong: H5Fclose closes any object still open, so the driver always
     * closes (and reports) within et_h5_close */
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        (driver_id >= 0 && H5Pset_driver(fapl, driver_id, NULL) < 0)) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

int et_h5_close(hid_t f) {
    if (f < 0) return -1;
    h5w *w = NULL;
    hid_t fapl = H5Fget_access_plist(f);
    if (fapl >= 0) {
        if (driver_id >= 0 && H5Pget_driver(fapl) == driver_id) {
            void *h = NULL;
            if (H5Fget_vfd_handle(f, H5P_DEFAULT, &h) >= 0 && h) w = from_fd(h);
        }
        H5Pclose(fapl);
    }
    if (!w) return H5Fclose(f) < 0 ? -1 : 0;
    /* From here on the driver records failures and reports success, so
     * H5Fclose completes its flush and frees every object.  (No H5Fflush
     * first: in 1.10.8 a flush that fails half-way leaves the metadata cache
     * in a state the close's own flush then refuses, "slist already
     * enabled?", and the crash at exit is back.) */
    int failed = 0, bad = 0;
    w->closing = 1;
    w->report = &failed;
    if (H5Fclose(f) < 0) bad = 1;
    return bad || failed ? -1 : 0;
}

#else /* another HDF5: the default driver */

hid_t et_h5_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

int et_h5_close(hid_t f) { return f >= 0 && H5Fclose(f) >= 0 ? 0 : -1; }

#endif
