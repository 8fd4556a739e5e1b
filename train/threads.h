/* train/threads.h — how the two thread pools of training share the cores.
 *
 * OpenBLAS (the pthreads build Debian ships) runs the GEMMs on its own
 * worker threads; OpenMP runs every other loop (DESIGN §2: never nested).
 * By default libgomp's workers spin (GOMP_SPINCOUNT 300000) after each
 * parallel region; as the ops alternate between OpenMP loops and GEMMs, the
 * spinning workers hold the cores OpenBLAS's workers (and, on a shared
 * machine, everyone else) need.  Measured on the 2 shared cores here: a
 * stories260K-shape training step 3-5x slower, the tiny-model trainer test
 * 0.2 s -> 3-14 s.  With OMP_WAIT_POLICY=PASSIVE idle OpenMP workers sleep
 * at once — but waking a sleeping worker costs tens of microseconds, paid by
 * every parallel region: the stories260K step opens ~166 (108 of them the
 * small GEMMs split over the OpenMP threads, train/sgemm_omp.h; counted
 * 2026-11-21 with an LD_PRELOAD wrapper of GOMP_parallel).  So
 * GOMP_SPINCOUNT=3000 as well (libgomp counts ~100 spins per microsecond:
 * ~30 us of spinning before sleeping; it takes precedence over the policy):
 * a stories260K step 10-15% faster (3 interleaved pairs of runs, 34.0 /
 * 36.5 / 31.9 ms -> 30.2 / 31.4 / 27.9 ms), and at most ~30 us of a core
 * per region taken from OpenBLAS's workers on the large shapes.  Rechecked
 * 2026-11-21 (alternating runs in one lock hold): GOMP_SPINCOUNT 1000,
 * 10000, 30000 and OMP_WAIT_POLICY=ACTIVE none better than 3000 beyond the
 * noise of the shared machine.
 *
 * libgomp reads OMP_WAIT_POLICY once, in its own initializer, before main
 * (and before the executable's .preinit_array on glibc 2.36: tried), so a
 * program cannot set it for itself; it can only run itself again with it.
 */
#ifndef ET_THREADS_H
#define ET_THREADS_H

/* If OMP_WAIT_POLICY is unset: set it to PASSIVE (and GOMP_SPINCOUNT to
 * 3000 unless set) and execv /proc/self/exe
 * with the same arguments (read from /proc/self/cmdline), so this call does
 * not return.  Returns 0 when the variable was already set (a user's choice
 * is kept), -1 when the re-execution failed (the program goes on, only
 * slower).  Call it first thing in main(), before any thread exists. */
int et_omp_passive_reexec(void);

#endif
