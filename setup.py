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


def sources():
    found = glob.glob("csrc/**/*.c", root_dir=ROOT, recursive=True)
    return sorted(s for s in found if not os.path.basename(s).startswith("test_"))


def headers():
    return sorted(glob.glob("csrc/**/*.h", root_dir=ROOT, recursive=True))


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
