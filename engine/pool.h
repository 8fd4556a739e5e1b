/* engine/pool.h — a small pthreads pool: run one function on n threads
 * (the caller is thread 0) and wait for all of them.
 *
 *   static void work(void *arg, int ith, int nth) { ... rows ith*N/nth .. }
 *   et_pool *p = et_pool_new(4);       // NULL on failure
 *   et_pool_run(p, work, &args);
 *   et_pool_free(p);
 *
 * Workers spin briefly on an atomic generation counter, then yield, before
 * sleeping on a condition variable, so that the many short jobs of one
 * forward pass (a few per layer) do not each pay a wake-up.
 */
#ifndef ET_ENGINE_POOL_H
#define ET_ENGINE_POOL_H

typedef struct et_pool et_pool;
typedef void (*et_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1: no worker threads, et_pool_run calls fn directly). */
et_pool *et_pool_new(int n_threads);
void et_pool_free(et_pool *p);
int et_pool_size(const et_pool *p);
/* Run fn(arg, ith, nth) for ith = 0..nth-1 concurrently; returns when all are done. */
void et_pool_run(et_pool *p, et_pool_fn fn, void *arg);

#endif
