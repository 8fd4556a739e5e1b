/* engine/pool.h — a small pthreads pool: split a job into chunks that the
 * caller and the workers claim from one atomic counter, and wait until
 * every chunk is done.
 *
 *   static void work(void *arg, int ith, int chunk) { ... rows of `chunk` ... }
 *   et_pool *p = et_pool_new(4);            // NULL on failure
 *   et_pool_run(p, work, &args, 32);        // work() runs once per chunk 0..31
 *   et_pool_free(p);
 *
 * ith (0 = the caller) identifies the thread, for per-thread scratch.  The
 * caller never waits for a worker to arrive: a worker that is not running
 * (a loaded machine) simply claims no chunk, and the caller does the work.
 * Which thread runs a chunk never changes a result as long as chunks write
 * disjoint outputs.  Workers spin briefly, then yield, then sleep on a
 * condition variable between jobs.
 */
#ifndef ET_ENGINE_POOL_H
#define ET_ENGINE_POOL_H

typedef struct et_pool et_pool;
typedef void (*et_pool_fn)(void *arg, int ith, int chunk);

/* n_threads >= 1 (1: no worker threads, et_pool_run runs every chunk itself).
 * NULL on out of memory or when a thread cannot be started. */
et_pool *et_pool_new(int n_threads);
/* Stop and join the workers; NULL is fine. */
void et_pool_free(et_pool *p);
/* Threads including the caller. */
int et_pool_size(const et_pool *p);
/* Run fn(arg, ith, c) once for every c in [0, n_chunks) (n_chunks <= 65535)
 * and return when all are done. */
void et_pool_run(et_pool *p, et_pool_fn fn, void *arg, int n_chunks);

#endif
