/* pool.h: the persistent thread pool that runs parallel loops.
 *
 * A job is a range of chunk numbers [0, nchunks); workers (and the calling
 * thread) take chunks one at a time from an atomic counter, so unbalanced
 * loops spread evenly.  Chunk boundaries depend only on the loop, never on
 * the thread count, which is what makes reductions deterministic: each
 * chunk writes its own partial and the caller combines them in order.
 */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include <stdint.h>

/* Runs one chunk; returns 0, or nonzero when the loop body raised (the
 * body has then recorded its error in its own per-chunk slot). */
typedef int32_t (*KlChunkFn)(void *ctx, int64_t chunk);

/* Runs fn(ctx, c) for every c in [0, nchunks) on the pool and returns the
 * lowest chunk number whose fn failed, or -1 when all succeeded.  Once a
 * chunk fails, chunks after it are skipped but chunks before it still
 * run, so the reported failure is the one a serial loop meets first.
 * Safe to call from any thread; a call made while the pool is busy (from
 * another thread or from inside a chunk) runs serially in the caller. */
int64_t kl_pool_run(KlChunkFn fn, void *ctx, int64_t nchunks);

/* Number of threads (the caller included) that run a job; >= 1. */
int kl_pool_get_threads(void);
/* Sets it (n >= 1); returns -1 when threads cannot be started. */
int kl_pool_set_threads(int n);

#endif /* KILN_POOL_H */
