# kiln: `make demo` and `make test` install what is missing, build, and run.
#
#   deps    Debian packages (apt-get, as root) and Python packages (pip)
#   build   kiln._core in place + an editable install of kiln (incremental)
#   demo    the Mandelbrot kernel: CPython vs kiln
#   test    the test suite
#   bench   bench/bench_foundation.py (installs numba to compare with)
#   clean   remove build products
#
# KILN_DEBUG=1 / KILN_SANITIZE=1 / KILN_LLVM_CONFIG=... select the build
# (see setup.py).

PYTHON ?= python3

.PHONY: all deps build demo test bench clean

all: build

deps:
	@bash scripts/install-deps $(PYTHON)

# The editable install points `kiln` at python/kiln and `kiln.kernels` at
# kernels/; it is redone only when kiln does not resolve to this tree.
build:
	@KILN_DISABLE_JIT=1 $(PYTHON) -c "import os, sys, kiln.kernels as k; \
	sys.exit(os.path.dirname(os.path.realpath(k.__file__)) != os.path.realpath('kernels'))" \
	2>/dev/null || { echo "kiln: editable install"; \
	$(PYTHON) -m pip install -q --no-build-isolation --no-deps -e . ; }
	@PYTHONWARNINGS=ignore $(PYTHON) setup.py -q build_ext --inplace
	@$(PYTHON) -c "import kiln._core"

demo: deps build
	$(PYTHON) -m kiln.kernels.mandelbrot

test: deps build
	$(PYTHON) -m pytest -q tests

bench: deps build
	$(PYTHON) bench/bench_foundation.py --install-numba

clean:
	rm -rf build dist *.egg-info python/*.egg-info
	rm -f python/kiln/_core*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
