# Two commands do all set-up on a fresh machine:  make demo  (main job)  and  make test  (tests).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.mplmm-installed
GRID    ?= papermill_runs/grids/demo.yaml
# one process on a 2-core machine: let torch use both cores, but never oversubscribe
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0

.PHONY: install browser-deps extract-deps demo test test-fast test-gpu gpu-smoke test-notebooks test-browser lab bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build on disk; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]"
	$(PY) -m ipykernel install --sys-prefix --name mplmm --display-name "Python (mplmm)" \
	    --env PLOTLY_RENDERER plotly_mimetype+notebook --env TQDM_DISABLE 1 --env PYTHONHASHSEED 0 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mplmm batch $(GRID)

# everything, the browser and extraction tests included (they skip with a reason where Chromium, the extra or
# espeak-ng cannot be installed, unless MPLMM_REQUIRE_BROWSER=1 / MPLMM_REQUIRE_EXTRACT=1 as in CI)
test: $(STAMP) browser-deps extract-deps
	$(PY) -m pytest -q tests

# Debian's chromium (apt-get, needs root or sudo) and Playwright's Python package; never fails the build itself
browser-deps: $(STAMP)
	-bash scripts/ensure_chromium.sh
	-$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet "playwright>=1.40"

# the optional extra for raw clips (mplmm extract) and espeak-ng for the test clips; never fails the build itself
extract-deps: $(STAMP)
	-$(PY) -c "import opensmile, silero_vad, av, cv2, soundfile, transformers, skimage" 2>/dev/null || \
	    $(PY) -m pip install --quiet -e ".[extract]"
	-bash scripts/ensure_espeak.sh

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not notebook and not slow and not browser"

# CUDA against CPU (tests/test_cuda.py; they skip without a CUDA device). `make install` pins the CPU build of
# torch, so these use $(VENV) only if it exists, else $(PYTHON): a python3 whose torch has CUDA (GPU_PY=... to choose)
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
test-gpu:
	CUBLAS_WORKSPACE_CONFIG=:4096:8 $(GPU_PY) -m pytest -q tests -m gpu

# the whole pipeline on one GPU in under 5 minutes, one markdown table (scripts/gpu_smoke.sh)
gpu-smoke:
	PY=$(GPU_PY) bash scripts/gpu_smoke.sh

test-notebooks: $(STAMP)
	$(PY) -m pytest -q --nbval-lax --nbval-kernel-name mplmm notebooks/

# real-browser tests (JupyterLab + widgets, offline HTML reports) in Debian's headless chromium
test-browser: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet "playwright>=1.40"
	MPLMM_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/browser -m browser

# the notebooks are the source: run this before committing one you ran in JupyterLab (outputs are not committed)
strip-notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# the documentation site, offline, warnings are errors (tests/test_docs_build.py runs the same build)
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_curve.py

clean:
	rm -rf papermill_runs/demo papermill_runs/tiny runs .pytest_cache docs/_build
