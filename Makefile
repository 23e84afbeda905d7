# kiln: `make demo` and `make test` install what is missing, build, and run.
#
#   deps    Debian packages (apt-get, as root) and Python packages (pip)
#   build   kiln._core in place + an editable install of kiln (incremental)
#   demo    the Mandelbrot kernel: CPython vs kiln
#   test    the test suite
#   bench   bench/bench_foundation.py, bench/vulkan_overhead.py and
#           bench/run.py (installs numba and matplotlib to compare and plot)
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
	@$(PYTHON) scripts/check-link

demo: deps build
	$(PYTHON) -m kiln.kernels.mandelbrot

test: deps build
	$(PYTHON) -m pytest -q tests

# BENCH_ARGS passes options to bench/run.py (e.g. --threads 4, --quick).
bench: deps build
	@$(PYTHON) -c "import numba" 2>/dev/null || { echo "installing numba"; \
	$(PYTHON) -m pip install -q numba \
	"numpy==$$($(PYTHON) -c 'import numpy; print(numpy.__version__)')"; }
	@$(PYTHON) -c "import matplotlib" 2>/dev/null || { \
	echo "installing matplotlib"; $(PYTHON) -m pip install -q matplotlib; }
	$(PYTHON) bench/bench_foundation.py
	$(PYTHON) bench/vulkan_overhead.py
	$(PYTHON) bench/run.py $(BENCH_ARGS)
	$(PYTHON) bench/plot.py $(if $(filter --quick,$(BENCH_ARGS)),bench/results/bench-quick.json)

clean:
	rm -rf build dist *.egg-info python/*.egg-info
	rm -f python/kiln/_core*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
