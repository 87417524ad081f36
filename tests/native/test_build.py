"""Tests for mrcnn.native.build: what it does without a compiler, and with a broken one."""
import os
import stat
import sys

import pytest

from mrcnn import native
from mrcnn.native import build


def test_without_a_compiler_it_says_so_and_succeeds_unless_required(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-mrcnn")
    assert build.main([]) == 0
    assert "no C++ compiler 'no-such-compiler-mrcnn'" in capsys.readouterr().err
    assert build.main(["--require"]) == 1


def test_a_failed_compilation_is_an_error_and_keeps_the_previous_library(monkeypatch, tmp_path,
                                                                         capsys):
    """The compiler's output is shown, nothing half-written is left beside the library."""
    compiler = tmp_path / "failing-cxx"
    compiler.write_text("#!/bin/sh\necho 'error: something the compiler said' >&2\nexit 3\n")
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    library = tmp_path / "lib" / "_mrcnn_native_ops.so"
    library.parent.mkdir()
    library.write_bytes(b"previous build")
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setattr(native, "LIBRARY", library)
    assert build.main([]) == 1
    err = capsys.readouterr().err
    assert "something the compiler said" in err and "compilation failed" in err
    assert library.read_bytes() == b"previous build"
    assert os.listdir(library.parent) == [library.name]


@pytest.mark.skipif(sys.platform != "linux", reason="the build targets Linux x86-64")
def test_compile_command_targets_avx2_and_the_installed_tensorflow(tmp_path):
    import tensorflow as tf
    command = build.compile_command("g++", tmp_path / "out.so")
    assert command[0] == "g++" and "-mavx2" in command and "-mfma" in command
    assert str(native.SOURCES[0]) in command
    assert any(flag.startswith("-I") and tf.sysconfig.get_include() in flag for flag in command)
