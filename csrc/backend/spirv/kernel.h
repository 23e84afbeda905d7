/* kernel.h: the SPIR-V backend's entry point and the ABI of the compute
 * kernels it emits (what the Vulkan dispatcher must bind and pass).
 *
 * A kernel is one SPIR-V 1.3 module (Shader, Logical addressing,
 * GLSL450 memory model) with one compute entry point "main", built from a
 * lowered kiln module: either
 *   KL_SPV_SERIAL  function fi (normally funcs[0]) run once by a single
 *                  invocation (workgroup size 1, dispatch 1x1x1); or
 *   KL_SPV_PFOR    the body function fi of a `pfor` (params: chunk, lo,
 *                  hi, then the captured values), run once per chunk.
 * Functions it calls are emitted along (recursion is a compile error).
 *
 * Descriptor set 0 holds only storage buffers:
 *   binding 0  status: 12 uint32 words, zeroed by the dispatcher.
 *              word 0      0, or 1 + the raise site of the reported raise:
 *                          SERIAL the first (atomic compare-exchange);
 *                          PFOR the lowest chunk's, as CPython reports
 *                          the first failing iteration;
 *              word 1      PFOR: a spin lock guarding words 0 and 2..9
 *                          (0 when the dispatch ends); SERIAL: 0;
 *              words 2..7  the raise's int64 payload[3], little-endian;
 *              words 8..11 SERIAL: the scalar result, as its C type
 *                          (KlEntry's `ret`: bool as 0/1 in the first
 *                          byte, complex as {re, im}); not written on
 *                          raise.  PFOR: words 8..9 the reported chunk
 *                          + 1 (uint64), word 10 2**32 - 1 - the lowest
 *                          raising chunk + 1 (a lock-free filter), word
 *                          11 stays 0.  Every kernel reads word 11 at
 *                          its start as a zero the driver cannot fold.
 *              So words 0..7 read as a KlStatus once `site` is decremented.
 *   binding 1  params: read-only uint32 words, laid out below.
 *   binding 2+k  the k-th array parameter (in parameter order), then one
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
 * in Vulkan 1.2) for the float widths they use, and GroupNonUniform
 * (subgroup elect, in every Vulkan 1.1 compute stage) when a PFOR kernel
 * can raise.  float32 `**` and abs(complex64) compute in float64.
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
} KlSpirv;

/* Emits the kernel of kind `kind` running lowered function m->funcs[fi].
 * 0, or -1 with d filled: a compile error for what the Vulkan target
 * cannot run yet (recursion, float64 transcendental functions, array
 * values chosen at run time, a nested prange reduction of more than 65536
 * chunks), naming it. */
int kl_spirv_emit(KlModule *m, int32_t fi, KlSpvKind kind, KlSpirv *out,
                  KlDiag *d);
void kl_spirv_free(KlSpirv *k);

#endif /* KILN_SPIRV_KERNEL_H */
