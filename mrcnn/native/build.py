"""Build mrcnn's native TensorFlow kernels: ``python -m mrcnn.native.build``.

Compiles :data:`mrcnn.native.SOURCES` against the installed TensorFlow (``tf.sysconfig``'s
compile and link flags) into :data:`mrcnn.native.LIBRARY`, for x86-64 with AVX2 and FMA, and
checks that it loads. Without a C++ compiler (``$CXX``, else ``g++``) or on another
architecture it says so and exits 0: mrcnn then runs without the library (slower Winograd
transforms); ``--require`` makes that an error. A failed compilation is always an error.
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile


def compile_command(compiler, output):
    import tensorflow as tf

    from mrcnn.native import SOURCES
    return ([compiler, "-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-std=c++17",
             "-Wno-deprecated-declarations", "-Wno-interference-size"]
            + [str(source) for source in SOURCES] + ["-o", str(output)]
            + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--require", action="store_true",
                    help="fail (exit 1) where the library cannot be built")
    args = ap.parse_args(argv)
    from mrcnn.native import LIBRARY
    compiler = os.environ.get("CXX") or "g++"
    problem = None
    if platform.machine() not in ("x86_64", "AMD64"):
        problem = f"the native kernels are written for x86-64, not {platform.machine()}"
    elif shutil.which(compiler) is None:
        problem = f"no C++ compiler {compiler!r} on PATH (set CXX)"
    if problem:
        print(f"mrcnn.native.build: not built: {problem}; mrcnn runs without it (slower "
              "Winograd transforms).", file=sys.stderr)
        return 1 if args.require else 0
    # Written beside the target and renamed: a process loading the library never sees half a
    # file, and a failed build leaves the previous one.
    fd, partial = tempfile.mkstemp(suffix=".so", dir=LIBRARY.parent)
    os.close(fd)
    command = compile_command(compiler, partial)
    print("mrcnn.native.build: " + " ".join(command[:9]) + " ...", file=sys.stderr)
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-4000:], file=sys.stderr)
            print(f"mrcnn.native.build: compilation failed ({compiler}, exit "
                  f"{result.returncode})", file=sys.stderr)
            return 1
        os.chmod(partial, 0o755)  # mkstemp made it 0600
        os.replace(partial, LIBRARY)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    check = subprocess.run([sys.executable, "-c", "import tensorflow as tf; "
                            f"tf.load_op_library({str(LIBRARY)!r})"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        print(check.stderr[-2000:], file=sys.stderr)
        print(f"mrcnn.native.build: {LIBRARY} was built but does not load", file=sys.stderr)
        return 1
    print(f"mrcnn.native.build: built {LIBRARY}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
