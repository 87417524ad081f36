"""Packaging for mrcnn: Mask R-CNN for TensorFlow 2 and Keras 3."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="mrcnn",
    version="0.1.0",
    description="Mask R-CNN instance segmentation for TensorFlow 2 and Keras 3, "
                "compatible with the classic Keras mrcnn API and weights.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["mrcnn", "mrcnn.*"]),
    install_requires=read_requirements(),
    # The native kernels' C++ source, built on the installing machine (python -m
    # mrcnn.native.build; make install runs it).
    package_data={"mrcnn.native": ["*.cc"]},
    extras_require={
        # nbclient, nbformat, ipykernel: the notebooks run in CI (tests/notebooks).
        # tensorflow-serving-api: the gRPC PredictRequest test of docs/deploy.md.
        # pytest-xdist: `make test` runs one test file per CPU core at once.
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "nbclient>=0.10",
                 "nbformat>=5.9", "ipykernel>=6.0", "tensorflow-serving-api>=2.21,<2.22"],
        # gRPC client; ONNX conversion and check (scripts/onnx_check.py).
        "deploy": ["tensorflow-serving-api>=2.21,<2.22", "tf2onnx>=1.17", "onnxruntime>=1.20"],
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "ruff"],
        "augment": ["albumentations>=1.4"],
    },
)
