"""Builds kiln: the package `kiln` (python/kiln), its kernels (kernels/ as
`kiln.kernels`) and the C extension `kiln._core` from every csrc/**/*.c
except test_*.c, linked against LLVM 19.

Environment:
  KILN_LLVM_CONFIG   llvm-config to use (default: llvm-config-19, then
                     /usr/lib/llvm-19/bin/llvm-config)
  KILN_DEBUG=1       keep asserts, -O0 -g
  KILN_SANITIZE=1    AddressSanitizer + UBSan (run Python with
                     LD_PRELOAD=$(gcc -print-file-name=libasan.so))
  KILN_LLVM_EAGER=1  link libLLVM normally instead of loading it on the
                     first compilation
  KILN_NO_VULKAN=1   build without the Vulkan runtime (also the outcome,
                     with a warning, when volk.h, the Vulkan headers or
                     glslangValidator are missing)

The Vulkan runtime compiles volk (libvulkan-volk-dev) into the extension,
which opens libvulkan at run time, so kiln._core never links libvulkan.
The GLSL compute shaders in shaders/ are compiled by glslangValidator into
build/kiln-gen/kl_shaders.h (C arrays of SPIR-V words) when they change.

Objects are rebuilt only when their source (or any header) changed, two at
a time; changing the flags above rebuilds everything.
"""

import glob
import os
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def find_llvm_config():
    """Path of the llvm-config for LLVM 19; SystemExit when there is none."""
    env = os.environ.get("KILN_LLVM_CONFIG")
    candidates = [env] if env else ["llvm-config-19",
                                    "/usr/lib/llvm-19/bin/llvm-config"]
    for c in candidates:
        path = shutil.which(c)
        if path:
            return path
    raise SystemExit(
        f"kiln: no llvm-config found (tried {', '.join(candidates)}); "
        "install llvm-19-dev (`make deps`) or set KILN_LLVM_CONFIG")


def llvm_config(tool, *args):
    out = subprocess.run([tool, *args], check=True, capture_output=True,
                         text=True).stdout
    return shlex.split(out)


def llvm_flags():
    """(include_dirs, macros, library_dirs, libraries, extra_link_args)."""
    tool = find_llvm_config()
    version = llvm_config(tool, "--version")[0]
    if not version.startswith("19."):
        raise SystemExit(f"kiln: {tool} is LLVM {version}; kiln needs LLVM 19")
    includes, macros = [], []
    for f in llvm_config(tool, "--cflags"):
        # keep what a C compiler understands; drop C++/clang-only flags
        if f.startswith("-I"):
            includes.append(f[2:])
        elif f.startswith("-D"):
            # The LLVM C headers need none of these; _GNU_SOURCE would
            # expose glibc extensions (fadd, fmul, ...) to every file, so
            # files that want it define it themselves.
            name, _, value = f[2:].partition("=")
            if name != "_GNU_SOURCE":
                macros.append((name, value or None))
    libdirs, libs, link = [], [], []
    for f in (llvm_config(tool, "--ldflags")
              + llvm_config(tool, "--link-shared", "--libs", "core", "orcjit",
                            "native", "passes")
              + llvm_config(tool, "--link-shared", "--system-libs")):
        if f.startswith("-L"):
            libdirs.append(f[2:])
        elif f.startswith("-l"):
            libs.append(f[2:])
        else:
            link.append(f)
    llvm_libs = [lib for lib in libs if lib.startswith("LLVM")]
    if len(llvm_libs) == 1 and not _flag("KILN_LLVM_EAGER"):
        # Loading libLLVM costs ~20 ms, most of `import kiln`.  So _core is
        # linked without it, its calls into LLVM bound lazily (kiln imports
        # _core with RTLD_LAZY), and dispatch.c loads the library with
        # RTLD_GLOBAL before the first compilation.
        libdir = llvm_config(tool, "--libdir")[0]
        path = os.path.join(libdir, f"lib{llvm_libs[0]}.so")
        libs.remove(llvm_libs[0])
        macros.append(("KL_LLVM_LIBRARY", f'"{path}"'))
        link.append("-Wl,-z,lazy")
    return includes, macros, libdirs, libs, link


# shaders/<name>.comp -> variants compiled from it: (suffix, -D macros).
# A shader not listed here is compiled once, as <name>, without macros.
SHADER_VARIANTS = {
    "reduce": [
        ("i32", ["KL_T=int", "KL_INTEGER"]),
        ("u32", ["KL_T=uint", "KL_INTEGER"]),
        ("i64", ["KL_T=int64_t", "KL_INT64", "KL_INTEGER"]),
        ("u64", ["KL_T=uint64_t", "KL_INT64", "KL_INTEGER"]),
        ("f32", ["KL_T=float"]),
        ("f64", ["KL_T=double", "KL_FLOAT64"]),
        ("c64", ["KL_T=vec2", "KL_COMPLEX"]),
        ("c128", ["KL_T=dvec2", "KL_FLOAT64", "KL_COMPLEX"]),
        # 32-bit integers through subgroup arithmetic (order-independent;
        # 64-bit ones would need shaderSubgroupExtendedTypes)
        ("i32_sg", ["KL_T=int", "KL_INTEGER", "KL_SUBGROUP", "KL_NBITS=32",
                    "KL_SIGNED=1"]),
        ("u32_sg", ["KL_T=uint", "KL_INTEGER", "KL_SUBGROUP", "KL_NBITS=32",
                    "KL_SIGNED=0"]),
    ],
}
GEN_DIR = os.path.join(ROOT, "build", "kiln-gen")


def vulkan_flags():
    """(include_dirs, macros) of the Vulkan runtime; ([], []) when it is
    left out (KILN_NO_VULKAN=1 or a build dependency missing)."""
    if _flag("KILN_NO_VULKAN"):
        return [], []
    missing = []
    volk_dir = next((d for d in (os.environ.get("KILN_VOLK_INCLUDE"),
                                 "/usr/include", "/usr/local/include")
                     if d and os.path.exists(os.path.join(d, "volk.c"))),
                    None)
    if volk_dir is None:
        missing.append("volk (libvulkan-volk-dev)")
    if not any(os.path.exists(os.path.join(d, "vulkan", "vulkan_core.h"))
               for d in filter(None, (volk_dir, "/usr/include",
                                      "/usr/local/include"))):
        missing.append("Vulkan headers (libvulkan-dev)")
    glslang = shutil.which("glslangValidator")
    if glslang is None:
        missing.append("glslangValidator (glslang-tools)")
    if missing:
        print("kiln: WARNING: building without the Vulkan runtime; missing "
              + ", ".join(missing), flush=True)
        return [], []
    compile_shaders(glslang)
    includes = [GEN_DIR]
    if volk_dir not in ("/usr/include",):
        includes.append(volk_dir)
    return includes, [("KL_HAVE_VULKAN", "1")]


def compile_shaders(glslang):
    """Compiles shaders/*.comp into GEN_DIR/kl_shaders.h, a table of
    static SPIR-V arrays (KlVkShaderSource) that csrc/runtime/vulkan.c
    includes; redone only when a shader or this file changed."""
    shaders = sorted(glob.glob(os.path.join(ROOT, "shaders", "*.comp")))
    out = os.path.join(GEN_DIR, "kl_shaders.h")
    newest = max([os.path.getmtime(p) for p in shaders]
                 + [os.path.getmtime(os.path.abspath(__file__))])
    if os.path.exists(out) and os.path.getmtime(out) >= newest:
        return
    os.makedirs(GEN_DIR, exist_ok=True)
    arrays, table = [], []
    for path in shaders:
        base = os.path.splitext(os.path.basename(path))[0]
        for suffix, defines in SHADER_VARIANTS.get(base, [(None, [])]):
            name = f"{base}_{suffix}" if suffix else base
            spv = os.path.join(GEN_DIR, name + ".spv")
            cmd = [glslang, "-V", "--target-env", "vulkan1.1", "-S", "comp",
                   *(f"-D{d}" for d in defines), "-o", spv, path]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"kiln: glslangValidator failed on "
                                 f"{path} ({name}):\n{r.stdout}{r.stderr}")
            with open(spv, "rb") as f:
                data = f.read()
            words = [int.from_bytes(data[i:i + 4], "little")
                     for i in range(0, len(data), 4)]
            body = ",\n".join(
                "    " + ", ".join(f"0x{w:08x}u" for w in words[i:i + 6])
                for i in range(0, len(words), 6))
            arrays.append(f"static const uint32_t kl_spv_{name}[] = {{\n"
                          f"{body}\n}};\n")
            table.append(f"    {{\"{name}\", kl_spv_{name}, "
                         f"{len(words)}}},\n")
    text = ("/* Generated by setup.py from the GLSL in shaders/: do not "
            "edit. */\n"
            "#include <stddef.h>\n#include <stdint.h>\n\n"
            "typedef struct KlVkShaderSource {\n"
            "    const char *name;       /* file name [_variant] */\n"
            "    const uint32_t *words;  /* SPIR-V */\n"
            "    size_t nwords;\n"
            "} KlVkShaderSource;\n\n"
            + "\n".join(arrays)
            + "\nstatic const KlVkShaderSource kl_vk_shader_sources[] = {\n"
            + "".join(table) + "    {NULL, NULL, 0},\n};\n")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)


def sources():
    found = glob.glob("csrc/**/*.c", root_dir=ROOT, recursive=True)
    return sorted(s for s in found if not os.path.basename(s).startswith("test_"))


def headers():
    found = sorted(glob.glob("csrc/**/*.h", root_dir=ROOT, recursive=True))
    generated = os.path.join(GEN_DIR, "kl_shaders.h")
    return found + ([generated] if os.path.exists(generated) else [])


class BuildExt(build_ext):
    """build_ext that recompiles only stale objects, in parallel."""

    def build_extension(self, ext):
        import numpy
        ext.include_dirs.append(numpy.get_include())
        self._force_if_flags_changed(ext)
        compiler = self.compiler
        whole = compiler.compile

        def compile_stale(srcs, output_dir=None, depends=None, **kw):
            objs = compiler.object_filenames(srcs, strip_dir=0,
                                             output_dir=output_dir)
            newest_dep = max((os.path.getmtime(d) for d in depends or ()),
                             default=0)
            stale = [s for s, o in zip(srcs, objs)
                     if self.force or not os.path.exists(o)
                     or os.path.getmtime(o) < max(os.path.getmtime(s),
                                                  newest_dep)]
            jobs = max(1, min(len(stale), os.cpu_count() or 1))
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(lambda s: whole([s], output_dir=output_dir,
                                              depends=depends, **kw), stale))
            return objs

        compiler.compile = compile_stale
        try:
            super().build_extension(ext)
        finally:
            del compiler.compile

    def copy_file(self, src, dst, *args, **kwargs):
        """Installs a built extension by rename, so that processes which
        have the old one loaded keep a valid file."""
        if not str(dst).endswith(".so"):
            return super().copy_file(src, dst, *args, **kwargs)
        tmp = f"{dst}.tmp{os.getpid()}"
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        os.replace(tmp, dst)
        return dst, 1

    def _force_if_flags_changed(self, ext):
        stamp = os.path.join(self.build_temp, "kiln-flags.txt")
        flags = repr((ext.extra_compile_args, ext.extra_link_args,
                      ext.define_macros, ext.include_dirs))
        try:
            with open(stamp) as f:
                old = f.read()
        except OSError:
            old = None
        if old != flags:
            self.force = True
            os.makedirs(self.build_temp, exist_ok=True)
            with open(stamp, "w") as f:
                f.write(flags)


def extension():
    includes, macros, libdirs, libs, link = llvm_flags()
    vk_includes, vk_macros = vulkan_flags()
    includes += vk_includes
    macros += vk_macros
    cflags = ["-std=c11", "-fvisibility=hidden", "-Wall",
              "-Wno-unused-parameter"]
    ldflags = list(link)
    if _flag("KILN_DEBUG"):
        cflags += ["-UNDEBUG", "-O0", "-g"]
    if _flag("KILN_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += san
        ldflags += san
    return Extension(
        "kiln._core",
        sources=sources(),
        depends=headers(),
        include_dirs=["csrc"] + includes,
        define_macros=macros,
        library_dirs=libdirs,
        libraries=libs,
        runtime_library_dirs=libdirs,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )


setup(
    packages=["kiln", "kiln.kernels"],
    package_dir={"kiln": "python/kiln", "kiln.kernels": "kernels"},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
