/* datasets/h5file.h — HDF5 files that edgetune WRITES (tokens.h5, teacher
 * logits, checkpoints) survive a failed write.
 *
 * Why: with HDF5 1.10 a write error (disk full, quota, RLIMIT_FSIZE) makes
 * H5Fclose fail while flushing its metadata; the library then frees the file
 * but keeps its id (HDFGroup/hdf5 issue #2257, fixed in 1.14.1 by PR #2291),
 * and its atexit clean-up crashes in H5F__close_cb (issue 11: `lora` and
 * `data` ended with SIGSEGV after a correct "disk full" message).
 *
 * How: files are written through a small POSIX driver (pread/pwrite) that
 * records the first failed write or truncate.  Before the file is closed,
 * et_h5_close marks it as closing: failures during the close's own flush are
 * recorded and reported to HDF5 as success, so H5Fclose always completes
 * and frees every object; et_h5_close then returns -1 and the caller
 * deletes the (incomplete) temporary file.  Outside the close every failure
 * is returned to HDF5 as usual (H5Dwrite fails, the caller stops early).
 * With another HDF5 version the default driver (sec2) is used and
 * et_h5_close is H5Fclose.
 *
 *   hid_t fapl = et_h5_fapl();                 // + the caller's own settings
 *   hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
 *   H5Pclose(fapl);
 *   int bad = write everything, closing every dataset/space/attribute;
 *   if (et_h5_close(f) || bad) unlink(tmp);   // never a crash at exit
 */
#ifndef ET_H5FILE_H
#define ET_H5FILE_H

#include <hdf5.h>

/* A new file-access property list using the failure-tolerant driver, close
 * degree H5F_CLOSE_STRONG (the caller closes the list), or -1 when HDF5
 * cannot make one. */
hid_t et_h5_fapl(void);

/* Close a file opened or created with et_h5_fapl() (any other file: plain
 * H5Fclose).  Every object of the file must already be closed.  0 when the
 * file was closed and every write reached it; -1 when a write failed (now
 * or earlier) or the close failed: the file on disk is incomplete. */
int et_h5_close(hid_t f);

#endif
