# `make demo` and `make test` do all the set-up they need: a .venv with the project installed.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Without an NVIDIA GPU, take PyTorch's CPU build rather than the multi-gigabyte CUDA one.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed-dev
# Every package's exact version (torch aside: TORCH_VERSION), so a fresh clone gets the tested stack.
CONSTRAINTS := constraints.txt
PYTEST_ARGS ?=

.PHONY: setup demo test lint format check-notebooks lab constraints clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"; \
	else \
		$(PY) -m pip install --quiet --retries 0 --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_VERSION)" \
		|| $(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"; \
	fi
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

setup: $(STAMP)

# The main job: the model-evaluation study on the toy world, ending in a rendered report.
demo: $(STAMP)
	$(VENV)/bin/workbench run notebooks/01_model_evaluation.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Committed notebooks carry no outputs.
check-notebooks: $(STAMP)
	git ls-files -z '*.ipynb' | xargs -0 -r $(VENV)/bin/nbstripout --verify

test: lint check-notebooks
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; exit $$rc; }

lab: $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,lab]"
	$(VENV)/bin/jupyter lab notebooks/00_explorer.ipynb

# Refreeze $(CONSTRAINTS) from what $(VENV) has now (after installing changed dependencies): its comment
# lines stay, the versions are replaced (setuptools too: packages need it at run time); torch stays out
# (TORCH_VERSION pins it), and pip (the set-up upgrades it).
constraints:
	{ grep '^#' $(CONSTRAINTS); $(PY) -m pip freeze --all --exclude-editable | grep -v '^torch==\|^pip=='; } \
		> $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
