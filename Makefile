# The only install path: `make test` and `make demo` build the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo notebooks install clean

# The demo trains a fixed number of steps, so that its result does not depend on the machine's
# speed (1,700 steps of 4 images: classic mAP@0.5 about 0.9 on the measured curve,
# docs/shapes_curve_2026-11-26.json). DEMO_STEPS=300 shortens it; DEMO_MINUTES=5 caps it in time.
DEMO_STEPS ?= 1700
DEMO_MINUTES ?=

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,augment]'
	touch $(STAMP)

# mrcnn's native TensorFlow kernels (mrcnn/native), compiled against the installed TensorFlow;
# without a C++ compiler the build says so and mrcnn runs without them (slower inference).
NATIVE_LIB := mrcnn/native/_mrcnn_native_ops.so
$(NATIVE_LIB): $(STAMP) mrcnn/native/winograd_transforms.cc mrcnn/native/build.py
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m mrcnn.native.build

install: $(STAMP) $(NATIVE_LIB)

# One pytest worker per CPU core, each taking whole test files (module-scoped models are built
# once per file). The suite: 10.5 minutes on the 2-core AVX-512 host (2026-12-02); 10.3-14.7
# minutes on a Zen 4 host whose speed drifted during the day (1,099 tests, 2026-12-07); 8.5
# minutes with the native Winograd transforms (1,143 tests, same host, same day).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP) $(NATIVE_LIB)
	$(PY) -m pytest -q tests -n $(PYTEST_WORKERS) --dist loadfile

demo: $(STAMP) $(NATIVE_LIB)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m samples.shapes.shapes demo --total-steps $(DEMO_STEPS) \
		$(if $(DEMO_MINUTES),--minutes $(DEMO_MINUTES)) \
		--steps 100 --train-images 1000 --limit 100 --pictures 8 \
		--logs logs/demo --output demo_output

# Execute every notebook from a fresh kernel into notebooks/executed/ (with outputs, for reading).
# NOTEBOOK_FLAGS=--quick runs the short CI version.
NOTEBOOK_FLAGS ?=
notebooks: $(STAMP) $(NATIVE_LIB)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) notebooks/execute.py --out notebooks/executed $(NOTEBOOK_FLAGS)

clean:
	rm -rf $(VENV) build *.egg-info $(NATIVE_LIB)
