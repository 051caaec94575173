# make demo: set up .venv if needed and run the main job.   make test: set up .venv if needed and run every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# `make demo PY=python` (or bench, checkpoints) runs in the environment you already have, without .venv/.
ifeq ($(origin PY),command line)
SETUP :=
else
SETUP := venv
endif
# The torch build to install; this default matches the wheels cached on the project's CI machines.
ifeq ($(shell uname -m),x86_64)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
else
TORCH_SPEC ?= torch torchvision
endif

.PHONY: venv demo test lint exercises notebooks notebooks-test bench checkpoints clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[course,dev,hf]"
	touch $@

demo: $(SETUP)
	$(PY) -m mae.demo --output-dir output/demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/make_exercises.py --check
	$(PY) scripts/check_imports.py
	$(PY) scripts/sync_notebooks.py --check
	$(PY) scripts/translate_notebooks.py --check
	$(PY) scripts/translate_messages.py --check

test: lint
	OMP_NUM_THREADS=2 $(PY) -m pytest
	OMP_NUM_THREADS=2 $(PY) -m pytest -m integration
	$(MAKE) notebooks-test

# Every notebook, twice: nbval compares the committed outputs, then papermill runs them with other parameters.
# The Vietnamese notebooks have the English ones' code (lint checks that) and their own outputs, run in Vietnamese
# from notebooks/vi/: nbval compares those too.
notebooks-test: venv
	MAE_IMPL=solutions MAE_LANG=en OMP_NUM_THREADS=2 $(PY) -m pytest --nbval notebooks/[0-9][0-9]_*.ipynb \
		notebooks/vi/[0-9][0-9]_*.ipynb --nbval-cell-timeout=180 -p no:cacheprovider
	mkdir -p output/papermill
	for nb in notebooks/[0-9][0-9]_*.ipynb; do \
		MAE_LANG=en OMP_NUM_THREADS=2 $(PY) -m papermill --cwd notebooks -k python3 --log-level WARNING --no-progress-bar --execution-timeout 180 \
			-p impl solutions -p seed 1 $$nb output/papermill/$$(basename $$nb) || exit 1; \
	done

# Training-step speed and the host data path per core, side by side (see docs/performance.md).
bench: $(SETUP)
	$(PY) benchmarks/pretrain_speed.py
	$(PY) benchmarks/data_path.py

# Re-execute the notebooks in place (after changing them or the package), with the reference solutions; then the
# Vietnamese ones take the new code and run in Vietnamese.
notebooks: venv
	$(PY) scripts/run_notebooks.py
	$(PY) scripts/translate_notebooks.py
	$(PY) scripts/translate_messages.py  # a notebook's new tr("...") needs its Vietnamese before the Vietnamese run
	$(PY) scripts/run_notebooks.py notebooks/vi/[0-9][0-9]_*.ipynb

# Remake the small checkpoints shipped in checkpoints/ (see checkpoints/README.md); about 80 minutes on 2 cores.
checkpoints: $(SETUP)
	OMP_NUM_THREADS=2 $(PY) scripts/make_checkpoints.py

exercises: venv
	$(PY) scripts/make_exercises.py

clean:
	rm -rf output .pytest_cache .ruff_cache
