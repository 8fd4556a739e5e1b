/* engine/pool.c — see pool.h.
 *
 * One 64-bit atomic word holds the current job: generation (32 bits),
 * chunk count (16) and next unclaimed chunk (16).  A chunk is claimed by a
 * compare-and-swap that also checks the generation, so a worker that wakes
 * late can never claim a chunk of a later job with an earlier job's
 * function.  The function and argument of generation g sit in slot g % 2:
 * the caller rewrites a slot only for job g+2, after job g+1 started, i.e.
 * when no chunk of g can be claimed any more. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"

#define SPIN_ITERS 2000    /* polls (with a pause) of the job word before yielding */
#define YIELD_ITERS 200    /* sched_yield polls before sleeping on the condition variable */

struct et_pool {
    int n;                          /* threads including the caller */
    pthread_t *th;                  /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t job;           /* gen << 32 | n_chunks << 16 | next */
    atomic_int done;                /* chunks finished in the current job */
    atomic_int quit;
    _Atomic(et_pool_fn) fn[2];      /* by generation % 2 (atomic: a late worker may read a slot */
    _Atomic(void *) arg[2];         /* being rewritten; its claim then fails) */
};

typedef struct { et_pool *p; int ith; } worker_arg;

static inline uint32_t job_gen(uint64_t j) { return (uint32_t)(j >> 32); }
static inline int job_n(uint64_t j) { return (int)((j >> 16) & 0xffff); }
static inline int job_next(uint64_t j) { return (int)(j & 0xffff); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Claim and run chunks of generation gen until none is left. */
static void drain(et_pool *p, uint32_t gen, int ith) {
    et_pool_fn fn = atomic_load_explicit(&p->fn[gen & 1], memory_order_relaxed);
    void *arg = atomic_load_explicit(&p->arg[gen & 1], memory_order_relaxed);
    uint64_t j = atomic_load_explicit(&p->job, memory_order_acquire);
    while (job_gen(j) == gen && job_next(j) < job_n(j)) {
        if (atomic_compare_exchange_weak_explicit(&p->job, &j, j + 1, memory_order_acq_rel, memory_order_acquire)) {
            fn(arg, ith, job_next(j));
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
            j = atomic_load_explicit(&p->job, memory_order_acquire);
        }
    }
}

static void *worker(void *v) {
    worker_arg *wa = v;
    et_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint32_t seen = 0;   /* the generation last worked on; the pool starts at 0 */
    for (;;) {
        int spins = 0;
        uint64_t j;
        while (job_gen(j = atomic_load_explicit(&p->job, memory_order_acquire)) == seen && !atomic_load(&p->quit)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_ITERS + YIELD_ITERS) {   /* a loaded machine: let others run */
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (job_gen(atomic_load(&p->job)) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = job_gen(j);
        drain(p, seen, ith);
    }
}

et_pool *et_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    et_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->job, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->quit, 0);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) { et_pool_free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) { et_pool_free(p); return NULL; }
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->th[i - 1], NULL, worker, wa)) {
                free(wa);
                et_pool_free(p);
                return NULL;
            }
            p->n = i + 1;
        }
    }
    return p;
}

void et_pool_free(et_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}

int et_pool_size(const et_pool *p) { return p ? p->n : 1; }

void et_pool_run(et_pool *p, et_pool_fn fn, void *arg, int n_chunks) {
    if (n_chunks <= 0) return;
    if (!p || p->n == 1 || n_chunks == 1) {
        for (int c = 0; c < n_chunks; c++) fn(arg, 0, c);
        return;
    }
    if (n_chunks > 0xffff) n_chunks = 0xffff;   /* callers size their chunks well below this */
    uint32_t gen = job_gen(atomic_load(&p->job)) + 1;
    atomic_store_explicit(&p->fn[gen & 1], fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg[gen & 1], arg, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->job, (uint64_t)gen << 32 | (uint64_t)n_chunks << 16, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    drain(p, gen, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks) {
        if (++spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}
