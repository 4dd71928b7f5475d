"""Build edgesmith's native code another way and run its tests against that build (issue 27).

    python scripts/native_check.py --sanitize        # gcc with AddressSanitizer + UndefinedBehaviorSanitizer
    python scripts/native_check.py --compiler clang  # clang++ (or zig's clang: pip install ziglang), no OpenMP

The binary-network kernel (``bnn.cpp``, loaded with ctypes) and the OpenVINO BinaryConv extension (built on
first use) are compiled into a scratch copy of the project, and the native tests run there: every kernel
path forced (portable, AVX2, AVX-512) against a reference, the hypothesis fuzz of malformed nodes through
ONNX Runtime, OpenVINO and the packing code, the MST tree kernel. ``--sanitize`` preloads the sanitizer
runtimes into Python (leak checks off: CPython's own allocations are not ours) and stops at the first
error; any report fails the run. With clang, zig's toolchain links its own libc++ and has no OpenMP, so the
OpenVINO extension (libstdc++ ABI) stays on gcc and the kernels run single-threaded.

Exit status: pytest's. Nothing in the working tree is touched.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/runtime/test_binary_kernels.py", "tests/runtime/test_native_hardening.py", "tests/compress/test_mst.py"]
# oneTBB (under OpenVINO) dlopens its NUMA binding with RTLD_DEEPBIND, which AddressSanitizer refuses
# (google/sanitizers#611); this shim, preloaded first, drops the flag before the sanitizer's dlopen sees it
NO_DEEPBIND = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
void* dlopen(const char* file, int flags) {
    static void* (*next)(const char*, int);
    if (!next) next = (void* (*)(const char*, int))dlsym(RTLD_NEXT, "dlopen");
    return next(file, flags & ~RTLD_DEEPBIND);
}
"""
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]


def _clang() -> list[str]:
    if shutil.which("clang++"):
        return ["clang++"]
    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "c++", "-target", "x86_64-linux-gnu.2.36"]
    sys.exit("native_check: no clang++ on PATH and no ziglang module (hint: pip install ziglang, or install clang)")


def _copy(dest: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.so", ".pytest_cache", ".hypothesis")
    for name in ("edgesmith", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=skip)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _build_kernel(dest: Path, compiler: list[str], flags: list[str]) -> None:
    src = dest / "edgesmith" / "runtime" / "kernels" / "bnn.cpp"
    out = src.with_name("_bnn" + importlib.machinery.EXTENSION_SUFFIXES[0])
    cmd = [*compiler, "-std=c++17", "-fno-strict-aliasing", "-shared", "-fPIC", *flags, str(src), "-o", str(out)]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", choices=["gcc", "clang"], default="gcc")
    ap.add_argument("--sanitize", action="store_true", help="AddressSanitizer + UndefinedBehaviorSanitizer (gcc)")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments (e.g. -k fuzz)")
    args = ap.parse_args()
    if args.sanitize and args.compiler != "gcc":
        sys.exit("native_check: --sanitize builds with gcc (zig's clang has no AddressSanitizer runtime)")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="edgesmith-native-") as tmp:
        dest = Path(tmp)
        _copy(dest)
        env["EDGESMITH_CACHE_DIR"] = str(dest / "cache")  # the OpenVINO extension is built afresh for this run
        if args.compiler == "clang":
            _build_kernel(dest, _clang(), ["-O3", "-Wall", "-Wno-unused-parameter", "-Wno-unknown-pragmas"])
        else:
            flags = SANITIZE if args.sanitize else ["-O3", "-Wall"]
            _build_kernel(dest, ["g++"], [*flags, "-fopenmp"])
        if args.sanitize:
            wrapper = dest / "g++-sanitized"  # the extension's builder reads CXX
            wrapper.write_text('#!/bin/sh\nexec g++ "$@" ' + " ".join(SANITIZE) + "\n")
            wrapper.chmod(0o700)
            env["CXX"] = str(wrapper)
            runtimes = [
                subprocess.run(["g++", f"-print-file-name={lib}"], capture_output=True, text=True, check=True).stdout.strip()
                for lib in ("libasan.so", "libubsan.so")
            ]
            shim = dest / "no_deepbind.so"
            (dest / "no_deepbind.c").write_text(NO_DEEPBIND)
            subprocess.run(["gcc", "-shared", "-fPIC", str(dest / "no_deepbind.c"), "-o", str(shim), "-ldl"], check=True)
            env["LD_PRELOAD"] = " ".join([str(shim), *runtimes])
            env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:abort_on_error=1:verify_asan_link_order=0"
            env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
        env["PYTHONPATH"] = str(dest)
        where = subprocess.run([sys.executable, "-c", "import edgesmith; print(edgesmith.__file__)"], cwd=dest, env=env, capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(dest)):
            sys.exit(f"native_check: the copy's edgesmith is not the one imported ({where.stdout.strip() or where.stderr.strip()[-300:]})")
        if args.sanitize:  # the sanitizer must be live: a read past a buffer through the raw C ABI has to be caught
            canary = (
                "import ctypes, numpy as np; from edgesmith.runtime.kernels import binary as B; "
                "a = np.zeros((1, 1), np.uint64); out = np.zeros((1, 1), np.int32); "
                "B.library().bnn_gemm(a.ctypes.data_as(B._u64p), a.ctypes.data_as(B._u64p), 1, 1, 64, 4096, out.ctypes.data_as(B._i32p), 1, 1)"
            )
            proc = subprocess.run([sys.executable, "-c", canary], cwd=dest, env=env, capture_output=True, text=True)
            if "AddressSanitizer" not in proc.stderr:
                sys.exit(f"native_check: the sanitizer did not catch a planted overflow (exit {proc.returncode}); the build is not sanitized")
            print("sanitizer live: a planted out-of-bounds read was caught", flush=True)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *args.pytest_args]
        print("running:", " ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=dest, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
