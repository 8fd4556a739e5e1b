/* engine/pool.c — see pool.h. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "pool.h"

#define SPIN_ITERS 2000    /* polls (with a pause) of a counter before yielding */
#define YIELD_ITERS 200    /* sched_yield polls before sleeping on the condition variable */

struct et_pool {
    int n;                          /* threads including the caller */
    pthread_t *th;                  /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;                /* bumped once per job */
    atomic_int pending;             /* workers still running the current job */
    atomic_int quit;
    et_pool_fn fn;
    void *arg;
};

typedef struct { et_pool *p; int ith; } worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void *worker(void *v) {
    worker_arg *wa = v;
    et_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;   /* jobs started so far: the pool starts at generation 0, even if
                          * this thread starts after the first job was posted */
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->quit)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_ITERS + YIELD_ITERS) {   /* a loaded machine: let others run */
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen++;   /* exactly one new job: et_pool_run waits for every worker before the next */
        p->fn(p->arg, ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

et_pool *et_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    et_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->quit, 0);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) { et_pool_free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) { p->n = i; et_pool_free(p); return NULL; }
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->th[i - 1], NULL, worker, wa)) {
                free(wa);
                p->n = i;
                et_pool_free(p);
                return NULL;
            }
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

void et_pool_run(et_pool *p, et_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}
