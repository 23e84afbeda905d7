/* jit.c: LLVM module -> host code (CPU backend, second half).
 *
 * One ORC LLJIT serves the whole process, created on first use with a
 * target machine for the host CPU and its features at the aggressive
 * optimisation level; process symbols (libm, through CPython) are visible to
 * compiled code, and so are the runtime helpers it calls (kl_pool_run),
 * defined by address because Python loads extensions RTLD_LOCAL, and
 * vmath.c's vector exp and log, added on first use.  Each
 * compilation builds its module in a fresh context (codegen.c), optimises
 * it with the new pass manager (PIPELINE below), adds it to the main JITDylib
 * under a unique entry name and looks the entry up, which generates the
 * machine code once.  Compiled code lives until process
 * exit.  A mutex guards the shared state.
 *
 * Code kept on disk (cache.c) takes a second road: its entry is named after
 * the key of the code (so one name always means one code), the optimised
 * module is turned into a relocatable object file whose bytes the caller
 * stores, and the JIT links that object; a later process links the same
 * bytes (kl_llvm_load_object), its calls into the runtime and libm
 * resolved by name as for fresh code.  Each such entry is linked at most
 * once per process (`loaded`).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "../../runtime/pool.h"
#include "llvm.h"

/* Process-wide backend state, guarded by `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static LLVMOrcLLJITRef jit;         /* the JIT, NULL until first use */
static LLVMTargetMachineRef tm;     /* host machine for passes and asm */
static char *triple;                /* host triple (LLVM message) */
static unsigned long serial;        /* makes entry names unique */

/* An entry of code kept on disk, linked into this process. */
typedef struct Loaded {
    char *name;                     /* entry symbol (malloc'ed) */
    LLVMOrcExecutorAddress addr;    /* its address */
} Loaded;
static Loaded *loaded;              /* malloc'ed */
static size_t nloaded, caploaded;

/* Moves LLVM error err into d as an internal error about `what`. */
static int
llvm_error(KlDiag *d, const char *what, LLVMErrorRef err)
{
    char *msg = LLVMGetErrorMessage(err);
    kl_internal_error(d, "LLVM %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return -1;
}

/* A target machine for the host CPU with all its features. */
static LLVMTargetMachineRef
host_machine(KlDiag *d)
{
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        kl_internal_error(d, "LLVM target %s: %s", triple,
                          err ? err : "unknown");
        LLVMDisposeMessage(err);
        return NULL;
    }
    char *cpu = LLVMGetHostCPUName();
    char *features = LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef m = LLVMCreateTargetMachine(
        target, triple, cpu, features, LLVMCodeGenLevelAggressive,
        LLVMRelocPIC, LLVMCodeModelSmall);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    if (m == NULL) {
        kl_internal_error(d, "LLVM: no target machine for %s", triple);
    }
    return m;
}

/* Defines the runtime helpers compiled code calls by name in the main
 * JITDylib of j, as absolute symbols at their addresses in this library. */
static int
define_runtime(LLVMOrcLLJITRef j, KlDiag *d)
{
    LLVMJITSymbolFlags flags = {
        LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable,
        0};
    LLVMOrcCSymbolMapPair syms[] = {
        {LLVMOrcLLJITMangleAndIntern(j, "kl_pool_run"),
         {(LLVMOrcExecutorAddress)(uintptr_t)kl_pool_run, flags}},
    };
    size_t n = sizeof(syms) / sizeof(syms[0]);
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, n);
    LLVMErrorRef err = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j),
                                             mu);
    if (err != NULL) {
        LLVMOrcDisposeMaterializationUnit(mu);
        return llvm_error(d, "runtime symbols", err);
    }
    return 0;
}

/* Creates the target machine and the LLJIT on first use (lock held). */
static int
init_jit(KlDiag *d)
{
    LLVMErrorRef err;
    if (jit != NULL) {
        return 0;
    }
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        return kl_internal_error(d, "LLVM: the host target is unavailable");
    }
    /* A float reduction in strict mode may vectorise with its additions
     * kept in order (one lane after another): same bits, and the rest of
     * the loop (loads, math calls) runs on vectors. */
    static const char *const argv[] = {"kiln", "-force-ordered-reductions"};
    LLVMParseCommandLineOptions(2, argv, NULL);
    if (triple == NULL) {
        triple = LLVMGetDefaultTargetTriple();
    }
    if (tm == NULL && (tm = host_machine(d)) == NULL) {
        return -1;
    }
    LLVMTargetMachineRef jtm = host_machine(d);
    if (jtm == NULL) {
        return -1;
    }
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    LLVMOrcLLJITRef j;
    err = LLVMOrcCreateLLJIT(&j, builder);
    if (err != NULL) {
        return llvm_error(d, "JIT creation", err);
    }
    LLVMOrcDefinitionGeneratorRef gen;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(j), NULL, NULL);
    if (err != NULL) {
        llvm_error(d, "process symbols", err);
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        return -1;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j), gen);
    if (define_runtime(j, d) < 0) {
        LLVMConsumeError(LLVMOrcDisposeLLJIT(j));
        return -1;
    }
    jit = j;
    return 0;
}

int
kl_llvm_vmath_width(KlVmath fn)
{
    static int width[KL_VMATH__COUNT] = {-1, -1};   /* -1: not tried yet */
    if (width[fn] < 0) {
        LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
        width[fn] = kl_vmath_init(jit, triple, layout, fn);
        LLVMDisposeTargetData(layout);
    }
    return width[fn];
}

/* malloc'ed copy of n bytes at s plus a NUL; NULL with d filled. */
static char *
copy_text(const char *s, size_t n, KlDiag *d)
{
    char *t = malloc(n + 1);
    if (t == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        return NULL;
    }
    memcpy(t, s, n);
    t[n] = '\0';
    return t;
}

/* Fills text with the IR of optimised module mod and the host assembly of
 * a clone of it (code generation changes the module it runs on). */
static int
module_text(LLVMModuleRef mod, KlLlvmText *text, KlDiag *d)
{
    char *ir = LLVMPrintModuleToString(mod);
    text->llvm_ir = copy_text(ir, strlen(ir), d);
    LLVMDisposeMessage(ir);
    if (text->llvm_ir == NULL) {
        return -1;
    }
    LLVMModuleRef clone = LLVMCloneModule(mod);
    LLVMMemoryBufferRef buf = NULL;
    char *err = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, clone, LLVMAssemblyFile, &err,
                                            &buf)) {
        kl_internal_error(d, "LLVM assembly: %s", err ? err : "unknown");
        LLVMDisposeMessage(err);
        LLVMDisposeModule(clone);
        return -1;
    }
    text->asm_text = copy_text(LLVMGetBufferStart(buf),
                               LLVMGetBufferSize(buf), d);
    LLVMDisposeMemoryBuffer(buf);
    LLVMDisposeModule(clone);
    return text->asm_text == NULL ? -1 : 0;
}

/* default<O3>, after inductive range check elimination (irce): a loop
 * whose index checks (lower's bounds checks, `i < extent`) may fail only in
 * its first or last iterations is split so that its main part has no
 * check, hence one exit, and vectorises without a scalar tail.  irce wants
 * rotated loops with invariants hoisted and canonical induction variables,
 * hence the passes before it. */
#define PIPELINE "function(sroa,loop-mssa(licm),loop(loop-rotate,indvars)," \
                 "irce),default<O3>"

/* Checks and optimises mod in place with PIPELINE for the host. */
static int
optimise(LLVMModuleRef mod, KlDiag *d)
{
    char *msg = NULL;
    if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
        kl_internal_error(d, "invalid LLVM IR: %s", msg ? msg : "");
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(mod, PIPELINE, tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (err != NULL) {
        return llvm_error(d, "optimisation", err);
    }
    return 0;
}

/* Is store st one of passes/stream.c's, vectorised at a known alignment
 * of 16 bytes or more: a vector store whose address is a chain of GEPs
 * from llvm.ptrmask (which only that pass's `alignptr` makes)? */
static int
streaming_store(LLVMValueRef st, unsigned ptrmask)
{
    LLVMValueRef v = LLVMGetOperand(st, 0), p = LLVMGetOperand(st, 1);
    if (LLVMGetTypeKind(LLVMTypeOf(v)) != LLVMVectorTypeKind
        || LLVMGetAlignment(st) < 16) {
        return 0;
    }
    while (LLVMIsAGetElementPtrInst(p)) {
        p = LLVMGetOperand(p, 0);
    }
    if (!LLVMIsACallInst(p)) {
        return 0;
    }
    LLVMValueRef callee = LLVMGetCalledValue(p);
    return LLVMIsAFunction(callee) && LLVMGetIntrinsicID(callee) == ptrmask;
}

/* Marks passes/stream.c's vector stores non-temporal, after optimisation
 * (LLVM does not vectorise a loop whose scalar stores are marked), and
 * fences each function holding one before it returns: streaming stores
 * are weakly ordered, and must be visible once the pool's job is done. */
static void
mark_streams(LLVMModuleRef mod)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    unsigned kind = LLVMGetMDKindIDInContext(ctx, "nontemporal", 11);
    unsigned ptrmask = LLVMLookupIntrinsicID("llvm.ptrmask", 12);
    LLVMMetadataRef one = LLVMValueAsMetadata(
        LLVMConstInt(LLVMInt32TypeInContext(ctx), 1, 0));
    LLVMValueRef node = LLVMMetadataAsValue(ctx,
                                            LLVMMDNodeInContext2(ctx, &one, 1));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    for (LLVMValueRef fn = LLVMGetFirstFunction(mod); fn != NULL;
         fn = LLVMGetNextFunction(fn)) {
        int marked = 0;
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb != NULL;
             bb = LLVMGetNextBasicBlock(bb)) {
            for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i != NULL;
                 i = LLVMGetNextInstruction(i)) {
                if (LLVMIsAStoreInst(i) && streaming_store(i, ptrmask)) {
                    LLVMSetMetadata(i, kind, node);
                    marked = 1;
                }
            }
        }
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn);
             marked && bb != NULL; bb = LLVMGetNextBasicBlock(bb)) {
            LLVMValueRef t = LLVMGetBasicBlockTerminator(bb);
            if (t != NULL && LLVMIsAReturnInst(t)) {
                LLVMPositionBuilderBefore(b, t);
                LLVMBuildFence(b, LLVMAtomicOrderingSequentiallyConsistent, 0,
                               "");
            }
        }
    }
    LLVMDisposeBuilder(b);
}

/* Translates m into a new module of a new context (*tsc, *mod) with the
 * entry `name`, optimised, and fills text when non-NULL (lock held, JIT
 * initialised).  0, or -1 with d filled and nothing left to dispose. */
static int
build_module(KlModule *m, const char *name, KlLlvmText *text,
             LLVMOrcThreadSafeContextRef *tsc, LLVMModuleRef *mod, KlDiag *d)
{
    *tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(*tsc);
    *mod = LLVMModuleCreateWithNameInContext("kiln", ctx);
    LLVMSetTarget(*mod, triple);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(*mod, layout);
    LLVMDisposeTargetData(layout);
    if (kl_llvm_codegen(m, *mod, name, d) < 0 || optimise(*mod, d) < 0) {
        LLVMDisposeModule(*mod);
        LLVMOrcDisposeThreadSafeContext(*tsc);
        return -1;
    }
    if (m->options.stream) {
        mark_streams(*mod);
    }
    if (text != NULL && module_text(*mod, text, d) < 0) {
        LLVMDisposeModule(*mod);
        LLVMOrcDisposeThreadSafeContext(*tsc);
        return -1;
    }
    return 0;
}

/* Translates, optimises and JIT-compiles m (lock held); the entry address
 * or 0 with d filled. */
static LLVMOrcExecutorAddress
compile_locked(KlModule *m, KlLlvmText *text, KlDiag *d)
{
    char name[48];
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err;
    LLVMOrcThreadSafeContextRef tsc;
    LLVMModuleRef mod;
    if (init_jit(d) < 0) {
        return 0;
    }
    snprintf(name, sizeof(name), "kl_entry_%lu", ++serial);
    if (build_module(m, name, text, &tsc, &mod, d) < 0) {
        return 0;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod,
                                                                      tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    err = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit),
                                      tsm);
    if (err != NULL) {
        llvm_error(d, "adding a module", err);
        return 0;
    }
    err = LLVMOrcLLJITLookup(jit, &addr, name);
    if (err != NULL) {
        llvm_error(d, "code generation", err);
        return 0;
    }
    if (addr == 0) {
        kl_internal_error(d, "LLVM: entry %s has no address", name);
    }
    return addr;
}

KlEntry
kl_llvm_compile(KlModule *m, KlLlvmText *text, KlDiag *d)
{
    if (text != NULL) {
        text->llvm_ir = NULL;
        text->asm_text = NULL;
    }
    pthread_mutex_lock(&lock);
    LLVMOrcExecutorAddress addr = compile_locked(m, text, d);
    pthread_mutex_unlock(&lock);
    if (addr == 0 && text != NULL) {
        free(text->llvm_ir);
        free(text->asm_text);
        text->llvm_ir = NULL;
        text->asm_text = NULL;
    }
    /* An executor address is a host function address in-process. */
    return addr == 0 ? NULL : (KlEntry)(uintptr_t)addr;
}

/* ---- code kept on disk ---------------------------------------------- */

/* Do the n bytes at data contain string s (a symbol name)? */
static int
mentions(const void *data, size_t n, const char *s)
{
    size_t len = strlen(s);
    const char *p = data, *end = p + n;
    while (p != NULL && (size_t)(end - p) >= len) {
        if (memcmp(p, s, len) == 0) {
            return 1;
        }
        p = memchr(p + 1, s[0], (size_t)(end - p) - 1);
    }
    return 0;
}

/* Address of the on-disk entry `name` linked earlier, or 0 (lock held). */
static LLVMOrcExecutorAddress
find_loaded(const char *name)
{
    for (size_t i = 0; i < nloaded; i++) {
        if (strcmp(loaded[i].name, name) == 0) {
            return loaded[i].addr;
        }
    }
    return 0;
}

/* Remembers that entry `name` is linked at addr (lock held); on failure to
 * remember, a later load of the same name fails cleanly in ORC instead. */
static void
note_loaded(const char *name, LLVMOrcExecutorAddress addr)
{
    if (nloaded == caploaded) {
        size_t cap = caploaded ? 2 * caploaded : 16;
        Loaded *p = realloc(loaded, sizeof(Loaded) * cap);
        if (p == NULL) {
            return;
        }
        loaded = p;
        caploaded = cap;
    }
    size_t n = strlen(name) + 1;
    char *copy = malloc(n);
    if (copy != NULL) {
        memcpy(copy, name, n);
        loaded[nloaded++] = (Loaded){copy, addr};
    }
}

/* Links object file buf (ownership taken) into the main JITDylib and
 * returns the address of `name` (lock held); 0 with d filled. */
static LLVMOrcExecutorAddress
link_object(LLVMMemoryBufferRef buf, const char *name, KlDiag *d)
{
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITAddObjectFile(
        jit, LLVMOrcLLJITGetMainJITDylib(jit), buf);
    if (err != NULL) {
        llvm_error(d, "adding an object file", err);
        return 0;
    }
    err = LLVMOrcLLJITLookup(jit, &addr, name);
    if (err != NULL) {
        llvm_error(d, "linking an object file", err);
        return 0;
    }
    if (addr == 0) {
        kl_internal_error(d, "LLVM: entry %s has no address", name);
        return 0;
    }
    note_loaded(name, addr);
    return addr;
}

/* kl_llvm_compile_object with the lock held. */
static LLVMOrcExecutorAddress
compile_object_locked(KlModule *m, const char *name, KlObjCode *obj,
                      KlDiag *d)
{
    LLVMOrcThreadSafeContextRef tsc;
    LLVMModuleRef mod;
    LLVMMemoryBufferRef buf = NULL;
    char *msg = NULL;
    if (init_jit(d) < 0 || build_module(m, name, NULL, &tsc, &mod, d) < 0) {
        return 0;
    }
    LLVMBool failed = LLVMTargetMachineEmitToMemoryBuffer(
        tm, mod, LLVMObjectFile, &msg, &buf);
    LLVMDisposeModule(mod);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (failed) {
        kl_internal_error(d, "LLVM object file: %s", msg ? msg : "unknown");
        LLVMDisposeMessage(msg);
        return 0;
    }
    size_t size = LLVMGetBufferSize(buf);
    obj->data = malloc(size > 0 ? size : 1);
    if (obj->data == NULL) {
        LLVMDisposeMemoryBuffer(buf);
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        return 0;
    }
    memcpy(obj->data, LLVMGetBufferStart(buf), size);
    obj->size = size;
    LLVMOrcExecutorAddress addr = find_loaded(name);
    if (addr != 0) {
        LLVMDisposeMemoryBuffer(buf);
        return addr;
    }
    return link_object(buf, name, d);
}

KlEntry
kl_llvm_compile_object(KlModule *m, const char *entry_name, KlObjCode *obj,
                       KlDiag *d)
{
    obj->data = NULL;
    obj->size = 0;
    pthread_mutex_lock(&lock);
    LLVMOrcExecutorAddress addr = compile_object_locked(m, entry_name, obj,
                                                        d);
    pthread_mutex_unlock(&lock);
    if (addr == 0) {
        free(obj->data);
        obj->data = NULL;
        obj->size = 0;
    }
    return addr == 0 ? NULL : (KlEntry)(uintptr_t)addr;
}

KlEntry
kl_llvm_load_object(const char *entry_name, const void *data, size_t size,
                    KlDiag *d)
{
    LLVMOrcExecutorAddress addr = 0;
    pthread_mutex_lock(&lock);
    if (init_jit(d) == 0 && (addr = find_loaded(entry_name)) == 0) {
        /* kept code may call vmath.c's functions */
        if (mentions(data, size, "kl_exp")) {
            kl_llvm_vmath_width(KL_VMATH_EXP);
        }
        if (mentions(data, size, "kl_log")) {
            kl_llvm_vmath_width(KL_VMATH_LOG);
        }
        LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(
            data, size, "kiln-cache");
        if (buf == NULL) {
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        else {
            addr = link_object(buf, entry_name, d);
        }
    }
    pthread_mutex_unlock(&lock);
    return addr == 0 ? NULL : (KlEntry)(uintptr_t)addr;
}

char *
kl_llvm_host_id(void)
{
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    char *trip = LLVMGetDefaultTargetTriple();
    char *cpu = LLVMGetHostCPUName();
    char *features = LLVMGetHostCPUFeatures();
    size_t n = strlen(trip) + strlen(cpu) + strlen(features) + 64;
    char *id = malloc(n);
    if (id != NULL) {
        snprintf(id, n, "LLVM %u.%u.%u\n%s\n%s\n%s\n%s", major, minor, patch,
                 trip, cpu, features, PIPELINE);
    }
    LLVMDisposeMessage(trip);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return id;
}
