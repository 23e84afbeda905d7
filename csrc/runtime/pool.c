/* pool.c: a persistent pthread pool for parallel loops (see pool.h).
 *
 * Workers start on the first parallel job.  One job runs at a time; the
 * thread that posts it runs chunks too.  Two things keep a job from
 * waiting on a thread that is slow to wake, which on a virtual machine can
 * take a millisecond or more:
 *   - after a job each worker that took part spins for up to
 *     KL_POOL_SPIN_NS watching for the next one before it sleeps on a
 *     condition variable, so a run of kernel calls finds it awake;
 *   - a worker joins a job only while it is open.  The posting thread
 *     closes the job when it finds no chunk left, and then waits only for
 *     the workers that joined: a worker that wakes later skips the job.
 * A child process after fork() starts its own workers afresh.
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
#define KL_POOL_SPIN_NS 3000000     /* how long idle threads spin */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;  /* all below */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;    /* new job */
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER; /* job done */
static int wanted;          /* threads per job incl. the caller; 0: unset */
static int started;         /* worker threads running */
static int busy;            /* a job is being run */
/* The current job's number and its count of participating workers, in
 * one word so that a worker reads both at once: job << TICKET_SHIFT |
 * participants. */
#define TICKET_SHIFT 9          /* KL_POOL_MAX < 1 << TICKET_SHIFT */
static _Atomic uint64_t ticket;
static uint64_t born[KL_POOL_MAX]; /* job number when each worker started */
/* The current job's state: the low 32 bits of its number, whether it is
 * closed, and how many workers run it: job << 32 | closed | active. */
#define STATE_CLOSED ((uint64_t)1 << 31)
#define STATE_ACTIVE (STATE_CLOSED - 1)
static _Atomic uint64_t job_state;

/* The current job; fields are written before `ticket` is. */
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

/* Joins job `job` if it is still open; 1 when joined. */
static int
join(uint64_t job)
{
    uint64_t s = atomic_load(&job_state);
    while (s >> 32 == (job & 0xffffffffu) && !(s & STATE_CLOSED)) {
        if (atomic_compare_exchange_weak(&job_state, &s, s + 1)) {
            return 1;
        }
    }
    return 0;
}

/* Leaves the job joined; the last worker out of a closed job tells the
 * posting thread. */
static void
leave(void)
{
    uint64_t s = atomic_fetch_sub(&job_state, 1) - 1;
    if ((s & STATE_CLOSED) && (s & STATE_ACTIVE) == 0) {
        pthread_mutex_lock(&lock);
        pthread_cond_signal(&finished);
        pthread_mutex_unlock(&lock);
    }
}

/* The ticket of the first job after job `seen`: spins for up to
 * KL_POOL_SPIN_NS when `spin`, then sleeps until it is posted. */
static uint64_t
next_ticket(uint64_t seen, int spin)
{
    int64_t start = now_ns();
    uint64_t t;
    for (unsigned i = 1; ((t = atomic_load(&ticket)) >> TICKET_SHIFT) == seen;
         i++) {
        cpu_relax();
        if (!spin || (i % 64 == 0 && now_ns() - start > KL_POOL_SPIN_NS)) {
            pthread_mutex_lock(&lock);
            while (((t = atomic_load(&ticket)) >> TICKET_SHIFT) == seen) {
                pthread_cond_wait(&wake, &lock);
            }
            pthread_mutex_unlock(&lock);
            break;
        }
    }
    return t;
}

static void *
worker(void *arg)
{
    int index = (int)(intptr_t)arg;
    pthread_mutex_lock(&lock);
    uint64_t seen = born[index];
    pthread_mutex_unlock(&lock);
    int took_part = 1;      /* only workers that took part spin */
    for (;;) {
        uint64_t t = next_ticket(seen, took_part);
        seen = t >> TICKET_SHIFT;
        took_part = index < (int)(t & ((1u << TICKET_SHIFT) - 1));
        if (!took_part || !join(seen)) {
            continue;
        }
        run_chunks();
        leave();
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
        born[started] = atomic_load(&ticket) >> TICKET_SHIFT;
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
    job_state = 0;
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
    uint64_t job = (atomic_load(&ticket) >> TICKET_SHIFT) + 1;
    atomic_store(&job_state, (job & 0xffffffffu) << 32);
    atomic_store(&ticket, job << TICKET_SHIFT | (uint64_t)helpers);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_chunks();

    atomic_fetch_or(&job_state, STATE_CLOSED);
    int64_t start = now_ns();
    for (unsigned i = 1; atomic_load(&job_state) & STATE_ACTIVE; i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() - start > KL_POOL_SPIN_NS) {
            break;
        }
    }
    pthread_mutex_lock(&lock);
    while (atomic_load(&job_state) & STATE_ACTIVE) {
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
