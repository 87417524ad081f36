"""Which CPU and which oneDNN code path a benchmark ran on, for every figure we record.

oneDNN (TensorFlow's CPU kernels for convolutions and matrix products) picks its kernels by the
instruction set the CPU offers, capped by ``ONEDNN_MAX_CPU_ISA``: the same model can be several
times slower on an AVX2-only CPU than on an AVX-512 one. ``onednn_isa()`` asks oneDNN itself
(its verbose mode prints the ISA it dispatches to) in a child process with this process's
environment, so the answer reflects ``ONEDNN_MAX_CPU_ISA`` too.
"""
import os
import re
import subprocess
import sys

__all__ = ["onednn_isa", "cpu_summary", "pin_to"]

_PROBE = (
    "import os\n"
    "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
    "import tensorflow as tf\n"
    "x = tf.random.normal([1, 16, 16, 8])\n"
    "k = tf.random.normal([3, 3, 8, 8])\n"
    "tf.nn.conv2d(x, k, 1, 'SAME').numpy()\n"
)


def onednn_isa():
    """The ISA string oneDNN reports (e.g. ``Intel AVX2``), or ``unknown``."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"isa:([^,\n]+)", out.stdout + out.stderr)
    return match.group(1).strip() if match else "unknown"


def cpu_summary():
    """``model name; avx512f yes/no; ONEDNN_MAX_CPU_ISA=...; affinity`` of this host."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "unset")
    cpus = sorted(os.sched_getaffinity(0))
    return (f"{model}; avx512f {'yes' if 'avx512f' in flags else 'no'}; "
            f"avx2 {'yes' if 'avx2' in flags else 'no'}; ONEDNN_MAX_CPU_ISA={cap}; "
            f"cpus {','.join(map(str, cpus))}")


def configure_threads(threads):
    """Import TensorFlow (quiet) with ``threads`` intra- and inter-op threads; returns it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def pin_to(cpu_list):
    """Pin this process (and the threads it starts later) to ``"0"`` or ``"0,1"`` style CPUs."""
    if cpu_list:
        os.sched_setaffinity(0, {int(c) for c in str(cpu_list).split(",")})
