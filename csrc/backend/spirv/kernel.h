/* kernel.h: the SPIR-V backend's entry point and the ABI of the compute
 * kernels it emits (what the Vulkan dispatcher must bind and pass).
 *
 * A kernel is one SPIR-V 1.3 module (Shader, Logical or
 * PhysicalStorageBuffer64 addressing, GLSL450 memory model) with one
 * compute entry point "main", built from a lowered kiln module: either
 *   KL_SPV_SERIAL  function fi (normally funcs[0]) run once by a single
 *                  invocation (workgroup size 1, dispatch 1x1x1); or
 *   KL_SPV_PFOR    the body function fi of a `pfor` (params: chunk, lo,
 *                  hi, then the captured values), run once per chunk.
 * Functions it calls are emitted along (recursion is a compile error).
 *
 * Descriptor set 0 holds only storage buffers:
 *   binding 0  status: uint32 words; the first KL_SPV_STATUS_WORDS are
 *              zeroed by the dispatcher.
 *              word 0      SERIAL: 0, or 1 + the raise site (the first
 *                          raise wins, by atomic compare-exchange);
 *                          PFOR: 1 when some workgroup wrote a raising
 *                          record (below), else 0;
 *              word 1      0;
 *              words 2..7  SERIAL: the raise's int64 payload[3],
 *                          little-endian (so words 0..7 read as a
 *                          KlStatus once `site` is decremented);
 *              words 8..11 SERIAL: the scalar result, as its C type
 *                          (KlEntry's `ret`: bool as 0/1 in the first
 *                          byte, complex as {re, im}); not written on
 *                          raise.  Every kernel reads word 11 at its
 *                          start as a zero the driver cannot fold.
 *              word 12     set when an invocation hit the loop limit.
 *              PFOR kernels that can raise (KlSpirv.records) also take
 *              one record of KL_SPV_RECORD_WORDS words per dispatched
 *              workgroup w, at word KL_SPV_RECORDS_AT + w *
 *              KL_SPV_RECORD_WORDS, written by every workgroup on every
 *              dispatch (so they need no zeroing):
 *                words 0..1  uint64 1 + the workgroup's lowest raising
 *                            chunk, or 0 when none of its chunks raised;
 *                word 2      1 + that raise's site;  word 3 unused;
 *                words 4..9  its int64 payload[3].
 *              The dispatcher reports the record of lowest chunk, as
 *              CPython reports the first failing iteration.  Inside a
 *              workgroup the winner is chosen without locks: each raising
 *              invocation (which stops at its first raise, its lowest
 *              chunk) takes a rank, round * KL_SPV_PFOR_WG + local id
 *              (rounds of the grid-stride loop; chunk order within the
 *              workgroup; rounds from 2**26 - 2 on share the rank of
 *              round 2**26 - 2, so that no rank equals the 2**32 - 1
 *              that stands for "no raise"), an atomic min in
 *              workgroup memory and a barrier pick the lowest rank, and
 *              only that invocation writes the record.
 *   binding 1  params: read-only uint32 words, laid out below.
 *   binding 2+k  (storage-buffer path only) the k-th array parameter (in
 *              parameter order), then one
 *              binding per `scratch` instruction of the module's emitted
 *              functions (in the order of `bindings`): a runtime array of
 *              the element type with the element's size as stride: bool
 *              as uint8 0/1 (like NumPy), int8..int64, float32/64, complex
 *              as {re, im} pairs (8 or 16 bytes).
 *
 * Params layout: values one after another, each starting at a multiple of
 * 8 bytes, in the kernel's parameter order:
 *   bool, int*, float*   8-byte slot holding the C value (zero-padded)
 *   complex64            8 bytes {re, im}; complex128 16 bytes {re, im}
 *   array (ndim n)       int64 offset (in elements, from the start of its
 *                        binding to element [0, ..., 0]), then n int64
 *                        extents, then n int64 strides in elements (not
 *                        bytes; the dispatcher packs arrays whose byte
 *                        strides are not multiples of the itemsize).
 *                        C-layout arrays get their strides too (unused).
 *   none                 no slot
 * With buffer device addresses (KlSpirv.bda: the device has
 * bufferDeviceAddress and shaderInt64), array parameters have no bindings:
 * after the values above the params hold one uint64 per entry of
 * `bindings`, the device address of the start of that array's buffer view
 * (offsets above count from there), and the module declares
 * PhysicalStorageBufferAddresses with the PhysicalStorageBuffer64
 * addressing model; accesses are aligned to the element's scalar size.
 * So an array is not limited to maxStorageBufferRange.
 * Reductions: a PFOR body param whose KlFunc.param_reduce entry is not
 * KL_RED_NONE (passes/parallel.c) is a reduction's partials array; its
 * binding carries that KlReduceOp in `reduce` (below).  The kernel stores
 * one partial per chunk at [chunk], or, when it folds them (`per_group`,
 * loops with at most 8 reductions), one per dispatched workgroup at
 * [workgroup id]: the workgroup's chunks in order (t with t + 1, then
 * with t + 2, ... t + 32, in workgroup memory, a barrier between
 * levels).  That needs at most one chunk per invocation (nchunks <= 64 x
 * workgroups), which the dispatcher checks.
 * A PFOR kernel's params start with three int64: nchunks, cs, niters (as
 * the `pfor` instruction's %a, %b, %c), followed by its captured values
 * (body params 3, 4, ...).  The entry runs chunk c = global invocation id
 * x and then c + gridsize, c + 2 * gridsize, ... while c < nchunks
 * (gridsize = number of workgroups x KL_SPV_PFOR_WG), calling the body
 * with lo = c * cs, hi = min(lo + cs, niters).  On a GPU choose cs = 1
 * (nchunks = niters) and dispatch min(ceil(nchunks / KL_SPV_PFOR_WG),
 * maxComputeWorkGroupCount[0]) workgroups.
 *
 * Arrays bound to different bindings must not overlap (the shader
 * assumes no aliasing): the dispatcher copies an argument that overlaps
 * another.  An invocation that raises stops; other invocations of a PFOR
 * kernel run on (their writes stay), and the lowest raising chunk's raise
 * is the one reported.
 *
 * Modules declare SignedZeroInfNanPreserve (SPV_KHR_float_controls, core
 * in Vulkan 1.2) for the float widths they use.  float32 `**` and
 * abs(complex64) compute in float64.
 */
#ifndef KILN_SPIRV_KERNEL_H
#define KILN_SPIRV_KERNEL_H

#include "../../ir/ir.h"

/* Workgroup size (x) of PFOR kernels. */
#define KL_SPV_PFOR_WG 64
/* Words of the status buffer (binding 0).  Word 12 is set when an
 * invocation ran KL_SPV_LOOP_LIMIT loop steps on a device that stops loops
 * there (Mesa's lavapipe): its results are then incomplete. */
#define KL_SPV_STATUS_WORDS 13
/* PFOR raise records: first word and words per workgroup. */
#define KL_SPV_RECORDS_AT 16
#define KL_SPV_RECORD_WORDS 10
#define KL_SPV_LOOP_LIMIT 65535
/* First buffer binding of the array parameters. */
#define KL_SPV_FIRST_ARRAY 2

typedef enum KlSpvKind {
    KL_SPV_SERIAL,      /* one invocation runs the function */
    KL_SPV_PFOR,        /* one invocation per chunk of a pfor body */
} KlSpvKind;

/* Device features a kernel needs (bits of KlSpirv.features). */
enum {
    KL_SPV_INT64 = 1,       /* shaderInt64 */
    KL_SPV_FLOAT64 = 2,     /* shaderFloat64 */
    KL_SPV_INT8 = 4,        /* shaderInt8 + storageBuffer8BitAccess */
    KL_SPV_INT16 = 8,       /* shaderInt16 + storageBuffer16BitAccess */
};

/* One array binding of a kernel (bindings[k] is binding 2 + k). */
typedef struct KlSpvBinding {
    int32_t param;          /* kernel parameter number, or -1: scratch */
    const KlType *elem;     /* element type */
    int64_t count;          /* scratch: number of elements; else 0 */
    uint8_t written;        /* the kernel may store into it */
    uint8_t reduce;         /* PFOR: a reduction's partials (KlReduceOp):
                               the body stores its chunk's partial at
                               [chunk]; the dispatcher binds a device
                               buffer of nchunks elements instead of the
                               caller's array, combines it on the device
                               and stores the result in the caller's
                               element 0 */
    uint8_t per_group;      /* PFOR partials folded in the kernel: it
                               stores one partial per dispatched workgroup
                               at [workgroup id], not one per chunk */
} KlSpvBinding;

/* An emitted kernel; free with kl_spirv_free. */
typedef struct KlSpirv {
    uint32_t *words;        /* the SPIR-V module (malloc'ed) */
    size_t nwords;
    KlSpvKind kind;         /* entry shape */
    int32_t func;           /* the module function it runs */
    uint32_t local_size;    /* workgroup size x: 1 or KL_SPV_PFOR_WG */
    uint32_t params_bytes;  /* size of the params buffer */
    uint32_t features;      /* KL_SPV_* bits the device must have */
    KlSpvBinding *bindings; /* array bindings 2, 3, ... (malloc'ed) */
    int32_t nbindings;
    const KlType *ret_type; /* SERIAL: what words 8..11 receive */
    uint8_t records;        /* PFOR that can raise: the status buffer
                               holds a record per workgroup */
    uint8_t bda;            /* arrays are reached through buffer device
                               addresses in the params, not bindings */
} KlSpirv;

/* Emits the kernel of kind `kind` running lowered function m->funcs[fi].
 * 0, or -1 with d filled: a compile error for what the Vulkan target
 * cannot run yet (recursion, array values chosen at run time, float64
 * math functions when kiln._devmath, which implements those the device
 * has no instruction for, could not be imported), naming it. */
int kl_spirv_emit(KlModule *m, int32_t fi, KlSpvKind kind, KlSpirv *out,
                  KlDiag *d);
void kl_spirv_free(KlSpirv *k);

#endif /* KILN_SPIRV_KERNEL_H */
