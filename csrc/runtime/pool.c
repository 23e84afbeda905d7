/* pool.c: a persistent pthread pool for parallel loops (see pool.h).
 *
 * Workers start on the first parallel job.  After a job each worker spins
 * for up to KL_POOL_SPIN_NS watching for the next one, then sleeps on a
 * condition variable.  The spin is what makes a run of kernel calls fast:
 * a thread woken from sleep can take milliseconds to get a CPU again on a
 * virtual machine, and it may be woken on the CPU of the thread that posts
 * the job and share it.  One job runs at a time; the thread that posts it
 * runs chunks too, and returns when every participant is done.  A child
 * process after fork() starts its own workers afresh.
 */
#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define KL_POOL_MAX 256
#define KL_POOL_SPIN_NS 1000000     /* how long idle threads spin */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;  /* all below */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;    /* new job */
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER; /* job done */
static int wanted;          /* threads per job incl. the caller; 0: unset */
static int started;         /* worker threads running */
static int busy;            /* a job is being run */
static _Atomic uint64_t generation;    /* bumped for each job */
static int participants;    /* workers taking part in the current job */
static _Atomic int pending; /* participants not yet done */
static uint64_t born[KL_POOL_MAX]; /* generation when each worker started */

/* The current job; fields are written before `generation` is bumped. */
static KlChunkFn job_fn;
static void *job_ctx;
static int64_t job_nchunks;
static _Atomic int64_t job_next;    /* next chunk to hand out */
static _Atomic int64_t job_failed;  /* lowest failed chunk, INT64_MAX */

static _Thread_local int inside_job;   /* this thread is running chunks */

static int
default_threads(void)
{
    const char *env = getenv("KILN_NUM_THREADS");
    if (env != NULL) {
        long n = strtol(env, NULL, 10);
        if (n >= 1) {
            return n > KL_POOL_MAX ? KL_POOL_MAX : (int)n;
        }
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        return n < 1 ? 1 : n > KL_POOL_MAX ? KL_POOL_MAX : n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > KL_POOL_MAX ? KL_POOL_MAX : (int)n;
}

/* Takes chunks until none are left or one before them has failed. */
static void
run_chunks(void)
{
    inside_job = 1;
    for (;;) {
        int64_t c = atomic_fetch_add(&job_next, 1);
        if (c >= job_nchunks || c > atomic_load(&job_failed)) {
            break;
        }
        if (job_fn(job_ctx, c) != 0) {
            int64_t old = atomic_load(&job_failed);
            while (c < old
                   && !atomic_compare_exchange_weak(&job_failed, &old, c)) {
            }
        }
    }
    inside_job = 0;
}

static void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins for up to KL_POOL_SPIN_NS while *counter == value; returns
 * whether it changed. */
static int
spin_while_equal(_Atomic uint64_t *counter, uint64_t value)
{
    int64_t start = now_ns();
    for (unsigned i = 1; atomic_load(counter) == value; i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() - start > KL_POOL_SPIN_NS) {
            return 0;
        }
    }
    return 1;
}

static void *
worker(void *arg)
{
    int index = (int)(intptr_t)arg;
    pthread_mutex_lock(&lock);
    uint64_t seen = born[index];
    pthread_mutex_unlock(&lock);
    for (;;) {
        pthread_mutex_lock(&lock);
        while (atomic_load(&generation) == seen) {
            pthread_cond_wait(&wake, &lock);
        }
        seen = atomic_load(&generation);
        int take_part = index < participants;
        pthread_mutex_unlock(&lock);
        if (!take_part) {
            continue;
        }
        run_chunks();
        if (atomic_fetch_sub(&pending, 1) == 1) {
            pthread_mutex_lock(&lock);
            pthread_cond_signal(&finished);
            pthread_mutex_unlock(&lock);
        }
        spin_while_equal(&generation, seen);
    }
    return NULL;
}

/* Starts workers until `n` run; requires `lock`. */
static int
start_workers(int n)
{
    while (started < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        born[started] = generation;
        int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)started);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            return -1;
        }
        started++;
    }
    return 0;
}

static void
after_fork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&finished, NULL);
    started = 0;
    busy = 0;
    participants = 0;
    pending = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

static int64_t
run_serially(KlChunkFn fn, void *ctx, int64_t nchunks)
{
    for (int64_t c = 0; c < nchunks; c++) {
        if (fn(ctx, c) != 0) {
            return c;
        }
    }
    return -1;
}

int64_t
kl_pool_run(KlChunkFn fn, void *ctx, int64_t nchunks)
{
    pthread_once(&fork_once, register_fork_handler);
    if (nchunks <= 1 || inside_job) {
        return run_serially(fn, ctx, nchunks);
    }
    pthread_mutex_lock(&lock);
    if (wanted == 0) {
        wanted = default_threads();
    }
    int helpers = wanted - 1;
    if (helpers > nchunks - 1) {
        helpers = (int)(nchunks - 1);
    }
    if (busy || helpers <= 0 || start_workers(helpers) < 0) {
        pthread_mutex_unlock(&lock);
        return run_serially(fn, ctx, nchunks);
    }
    busy = 1;
    job_fn = fn;
    job_ctx = ctx;
    job_nchunks = nchunks;
    atomic_store(&job_next, 0);
    atomic_store(&job_failed, INT64_MAX);
    participants = helpers;
    atomic_store(&pending, helpers);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_chunks();

    int64_t start = now_ns();
    for (unsigned i = 1; atomic_load(&pending) > 0; i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() - start > KL_POOL_SPIN_NS) {
            break;
        }
    }
    pthread_mutex_lock(&lock);
    while (atomic_load(&pending) > 0) {
        pthread_cond_wait(&finished, &lock);
    }
    busy = 0;
    int64_t failed = atomic_load(&job_failed);
    pthread_mutex_unlock(&lock);
    return failed == INT64_MAX ? -1 : failed;
}

int
kl_pool_get_threads(void)
{
    pthread_mutex_lock(&lock);
    if (wanted == 0) {
        wanted = default_threads();
    }
    int n = wanted;
    pthread_mutex_unlock(&lock);
    return n;
}

int
kl_pool_set_threads(int n)
{
    if (n < 1 || n > KL_POOL_MAX) {
        return -1;
    }
    pthread_mutex_lock(&lock);
    wanted = n;
    pthread_mutex_unlock(&lock);
    return 0;
}
