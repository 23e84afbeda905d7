/* vkexec.h: running kiln's SPIR-V kernels (backend/spirv/kernel.h) on the
 * Vulkan runtime (runtime/vulkan.h).
 *
 * A KlVkKernel is one emitted kernel with its pipeline and what is needed
 * to call it: the types of the values it takes (in params order), its
 * array bindings and, for a pfor body with reductions, the pipelines that
 * combine their partials.  A call gives every array a buffer (importing
 * the caller's memory when the device allows it and the array overlaps no
 * other binding, else copying it in before and, when the kernel may write
 * it, out after the dispatch; a reduction's partials get a device buffer
 * of one element per chunk), packs the params buffer (with buffer device
 * addresses, the arrays' addresses follow the values: kernel.h), and
 * records one batch: the kernel's dispatch, then per reduction the
 * dispatches that combine its partials on the device and the download of
 * the result into element 0 of the caller's partials array (no other
 * element is written).  The status buffer is read back into a KlStatus.
 *
 * Two entry shapes:
 *   kl_vk_serial  a KL_SPV_SERIAL kernel, called like a KlEntry;
 *   kl_vk_pfor    a KL_SPV_PFOR kernel, run for each `pfor` a step of
 *                 the entry suspends at (kl_vk_steps_run).
 * Arrays whose data lives in a device buffer (DeviceArray) are recognised
 * by their data address (kl_vk_devmem_*) and bound without transfers.
 */
#ifndef KILN_VKEXEC_H
#define KILN_VKEXEC_H

#include "../compile.h"
#include "../backend/spirv/kernel.h"

typedef struct KlVkKernel KlVkKernel;

/* Emits the kernel of `kind` for m->funcs[fi], checks that the device has
 * every feature it needs (a CompileError naming the missing ones) and
 * builds its pipeline.  Requires kl_vk_init to have succeeded.  NULL with
 * d filled on failure. */
KlVkKernel *kl_vk_kernel_new(KlModule *m, int32_t fi, KlSpvKind kind,
                             KlDiag *d);
void kl_vk_kernel_free(KlVkKernel *k);

/* The kernel's SPIR-V words (count in *nwords), for inspection. */
const uint32_t *kl_vk_kernel_words(const KlVkKernel *k, size_t *nwords);

/* Runs serial kernel k on arguments args (KlEntry's ABI: scalars as their
 * C type, arrays as KlArrayArg).  0 with the scalar result in ret (16
 * bytes), 1 when the kernel raised (st filled, site an index into the
 * raise table), -1 with d filled when the device failed.  Call without
 * the GIL. */
int32_t kl_vk_serial(const KlVkKernel *k, void **args, void *ret,
                     KlStatus *st, KlDiag *d);

/* Runs `pfor` on the device: k is the body's kernel (KL_SPV_PFOR),
 * nchunks, cs and niters the pfor's operands, captured[i] points to the
 * i-th captured value (KlEntry's ABI: a scalar as its C type, an array
 * as a KlArrayArg; NULL for None).  One dispatch of
 * min(ceil(nchunks / KL_SPV_PFOR_WG), max_workgroup_count[0]) workgroups
 * runs the chunks, followed by the combination of each reduction's
 * partials, whose result goes to element 0 of that captured partials
 * array (only element 0 is written; passes/parallel.c gives it one
 * element).  Returns 0, 1 with st filled when the body raised (the
 * lowest raising chunk's raise), or -1 with d filled when the device
 * failed. */
int32_t kl_vk_pfor(const KlVkKernel *k, int64_t nchunks, int64_t cs,
                   int64_t niters, void **captured, KlStatus *st, KlDiag *d);

/* ---- entries split into steps (passes/steps.h) ------------------------ */

typedef struct KlSteps KlSteps;
typedef struct KlVkSteps KlVkSteps;

/* The runner of module m's entry split by kl_steps into `plan`:
 * kernels[fi] is the KlVkKernel of module function fi for every step
 * (KL_SPV_SERIAL) and every pfor body (KL_SPV_PFOR); the runner keeps
 * pointers to them (they must outlive it).  NULL with d filled. */
KlVkSteps *kl_vk_steps_new(const KlModule *m, const KlSteps *plan,
                           KlVkKernel *const *kernels, KlDiag *d);
void kl_vk_steps_free(KlVkSteps *s);

/* Runs the split entry on args (KlEntry's ABI), as kl_vk_serial: step 0,
 * then while a step suspends at a pfor, that pfor's dispatch (kl_vk_pfor)
 * and the step after it.  The steps' state and scratch arrays live in
 * host memory allocated for the call.  0 with the result in ret, 1 when
 * it raised (st filled), -1 with d filled.  Call without the GIL. */
int32_t kl_vk_steps_run(const KlVkSteps *s, void **args, void *ret,
                        KlStatus *st, KlDiag *d);

/* ---- device memory standing for arrays (DeviceArray) ----------------- */

/* Reserves an address range of `size` bytes that no host memory will ever
 * occupy and backs it by a new device buffer: arrays whose data points
 * into the range are bound to that buffer without transfers.  The range
 * must never be dereferenced on the host.  NULL with d filled. */
void *kl_vk_devmem_new(uint64_t size, KlDiag *d);
/* Frees the buffer and the range (base as returned above). */
void kl_vk_devmem_free(void *base);
/* The buffer of the device range holding address p, and the byte offset
 * of p in it; NULL when p is ordinary host memory. */
struct KlVkBuffer *kl_vk_devmem_find(const void *p, uint64_t *offset);

#endif /* KILN_VKEXEC_H */
