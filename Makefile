# The only install path: `make test` and `make demo` build the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo notebooks install clean

# The demo's training budget in minutes (on 2 CPU cores the whole demo takes about 2 more).
DEMO_MINUTES ?= 10

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,augment]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m samples.shapes.shapes demo --minutes $(DEMO_MINUTES) \
		--epochs 100 --steps 100 --train-images 1000 --limit 100 --pictures 8 \
		--logs logs/demo --output demo_output

# Execute every notebook from a fresh kernel into notebooks/executed/ (with outputs, for reading).
# NOTEBOOK_FLAGS=--quick runs the short CI version.
NOTEBOOK_FLAGS ?=
notebooks: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) notebooks/execute.py --out notebooks/executed $(NOTEBOOK_FLAGS)

clean:
	rm -rf $(VENV) build *.egg-info
