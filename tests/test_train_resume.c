/* tests/test_train_resume.c — bit-for-bit resume after SIGKILL.
 *
 * 1. An uninterrupted run of N steps records the training loss of every step,
 *    the validation losses and the final parameters.
 * 2. The same run starts in a child process (this binary re-executed with
 *    --child, so it starts with fresh OpenMP/OpenBLAS thread pools), writing
 *    a checkpoint every K steps; as soon as it reports the checkpoint of
 *    step K the parent kills it with SIGKILL (the child keeps training,
 *    slowed down after the checkpoint so that the kill lands mid-run).
 * 3. The run resumes from the checkpoint in this process: every later step's
 *    loss, every later validation loss and the final parameters must EQUAL
 *    (==, not approximately) those of the uninterrupted run. */
#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "train_fixture.h"
#include "../train/threads.h"
#include "../train/checkpoint.h"

enum { N_STEPS = 30, K_CKPT = 10, B = 4, T = 16 };

typedef struct log {
    double loss[N_STEPS + 1];
    double val[N_STEPS + 1]; /* by step, NaN when not evaluated */
    int fd;                  /* child: where to report checkpoints, else -1 */
    int slow;                /* child: sleep per step once the checkpoint is out */
} log_t;

static int on_event(void *user, const et_train_event *ev) {
    log_t *l = user;
    if (ev->kind == ET_EV_STEP && ev->step <= N_STEPS) {
        l->loss[ev->step] = ev->loss;
        if (l->slow) usleep(100 * 1000);
    }
    if (ev->kind == ET_EV_EVAL && ev->step <= N_STEPS) l->val[ev->step] = ev->val_loss;
    if (ev->kind == ET_EV_CKPT && l->fd >= 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "ckpt %lld\n", (long long)ev->step);
        if (write(l->fd, line, (size_t)n) != n) return 1;
        l->slow = 1;
    }
    return 0;
}

static et_train_opts opts_for(log_t *l, const char *ckpt) {
    et_train_opts o = fx_opts(B, T, N_STEPS);
    o.eval_every = 5;
    o.ckpt_every = ckpt ? K_CKPT : 0;
    o.ckpt_path = ckpt;
    o.config = "{\"test\": \"resume\"}";
    o.on_event = on_event;
    o.user = l;
    return o;
}

static void log_init(log_t *l) {
    for (int i = 0; i <= N_STEPS; i++) l->loss[i] = l->val[i] = NAN;
    l->fd = -1;
    l->slow = 0;
}

/* Run (or resume) to N_STEPS; params (may be NULL) receives the final block. */
static int run(const char *data, const char *ckpt, int resume, log_t *l, float **params, size_t *n, et_err *e) {
    fx_run r;
    fx_open(&r, data, B, T, 3);
    et_train_opts o = opts_for(l, ckpt);
    o.resume = resume;
    int rc = et_train_run(&r.tm, r.train, r.valid, &o, NULL, e);
    if (params) {
        *n = r.m.n_params;
        *params = malloc(*n * sizeof(float));
        memcpy(*params, r.m.params, *n * sizeof(float));
    }
    fx_close(&r);
    return rc;
}

static char self_path[4096];

static void test_sigkill_resume_bit_exact(void **state) {
    (void)state;
    char data[512], ckpt[512];
    snprintf(data, sizeof data, "%s/resume_tokens.h5", test_tmpdir());
    snprintf(ckpt, sizeof ckpt, "%s/resume_ckpt.h5", test_tmpdir());
    fx_write_data(data, 48, 6, 40);
    et_err e = {0};

    /* 1. uninterrupted */
    static log_t ref;
    log_init(&ref);
    float *p_ref;
    size_t n_ref;
    assert_int_equal(run(data, NULL, 0, &ref, &p_ref, &n_ref, &e), 0);

    /* 2. killed child */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char fd_arg[16];
        snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
        char *argv[] = {self_path, "--child", data, ckpt, fd_arg, NULL};
        execv(self_path, argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *from_child = fdopen(fds[0], "r");
    char line[128];
    int seen = 0;
    while (!seen && fgets(line, sizeof line, from_child))
        if (!strcmp(line, "ckpt 10\n")) seen = 1;
    if (seen) kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fclose(from_child);
    assert_true(seen);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    et_ckpt st;
    assert_int_equal(et_ckpt_peek(ckpt, &st, &e), 0);
    assert_int_equal(st.step, K_CKPT);
    assert_string_equal(st.config, "{\"test\": \"resume\"}");
    et_ckpt_free(&st);

    /* 3. resume and compare */
    static log_t res;
    log_init(&res);
    float *p_res;
    size_t n_res;
    int rc = run(data, ckpt, 1, &res, &p_res, &n_res, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    for (int s = 1; s <= K_CKPT; s++) assert_true(isnan(res.loss[s])); /* not redone */
    for (int s = K_CKPT + 1; s <= N_STEPS; s++) {
        if (res.loss[s] != ref.loss[s]) {
            fprintf(stderr, "step %d: resumed loss %.17g, uninterrupted %.17g\n", s, res.loss[s], ref.loss[s]);
            fail();
        }
    }
    for (int s = K_CKPT + 1; s <= N_STEPS; s++)
        if (!isnan(ref.val[s])) assert_true(res.val[s] == ref.val[s]);
    assert_false(isnan(res.val[N_STEPS]));
    assert_int_equal(n_res, n_ref);
    assert_memory_equal(p_res, p_ref, n_ref * sizeof(float));
    fprintf(stderr, "resumed at step %d: steps %d..%d equal bit for bit (loss %.6f at step %d)\n", K_CKPT,
            K_CKPT + 1, N_STEPS, res.loss[N_STEPS], N_STEPS);
    free(p_ref);
    free(p_res);

    /* the final checkpoint is at N_STEPS; resuming it with a different T is refused */
    fx_run r;
    fx_open(&r, data, B, T + 1, 3);
    static log_t l2;
    log_init(&l2);
    et_train_opts o = opts_for(&l2, ckpt);
    o.seq_len = T + 1;
    o.resume = 1;
    rc = et_train_run(&r.tm, r.train, r.valid, &o, NULL, &e);
    assert_int_equal(rc, ET_EINPUT);
    assert_non_null(strstr(e.msg, ckpt));
    fx_close(&r);
}

/* --child DATA CKPT FD: train with checkpoints, report them on FD. */
static int child_main(char **argv) {
    static log_t l;
    log_init(&l);
    l.fd = atoi(argv[4]);
    et_err e = {0};
    int rc = run(argv[2], argv[3], 0, &l, NULL, NULL, &e);
    if (rc) fprintf(stderr, "child: %s\n", e.msg);
    return rc;
}

int main(int argc, char **argv) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    if (argc == 5 && !strcmp(argv[1], "--child")) return child_main(argv);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        fprintf(stderr, "cannot find /proc/self/exe\n");
        return 1;
    }
    self_path[n] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_resume_bit_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
