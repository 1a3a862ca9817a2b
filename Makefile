# Two commands work on a fresh machine with only Python 3:
#   make run   -> set up .venv, then train the default CNN on the bundled MNIST digits
#   make test  -> set up .venv (with the test extras and, where it installs, PyTorch), run every test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH_SPEC := torch==2.13.0

.PHONY: run test fuzz bench accuracy setup setup-dev clean docs-pictures generate

$(VENV)/.stamp-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e ".[all]"
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -q -e ".[dev]"
	@# PyTorch is a test and benchmark reference only; parity tests skip where it is absent.
	$(PIP) install -q "$(TORCH_SPEC)" || echo "note: $(TORCH_SPEC) did not install; PyTorch parity tests will be skipped"
	touch $@

setup: $(VENV)/.stamp-base
setup-dev: $(VENV)/.stamp-dev

run: setup
	$(PY) -m convkit.cli train

test: setup-dev
	$(PY) -m pytest -q -n 2 tests

# 10,000 mutated files per loader, each in a memory- and time-limited child; prints the counts
fuzz: setup-dev
	$(PY) -m tests.fuzz.run --cases 10000

# Rewrite the generated kernels in convkit/fast/_generated/ from their generators in tools/
# (tests/ops_fast checks that the committed modules are what the generators write).
generate:
	cd tools && $(PYTHON) gen_conv_regs.py && $(PYTHON) gen_dw_kgrad.py

bench: setup-dev
	$(PY) -m benchmarks.run

accuracy: setup
	$(PY) -m benchmarks.accuracy

docs-pictures: setup
	$(PY) examples/make_readme_pictures.py

clean:
	rm -rf $(VENV) build *.egg-info
