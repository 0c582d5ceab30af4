# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgeres-installed
DEMO_OUT ?= demo

.PHONY: demo test venv clean

# Host side: the package with its [train] extra (torch), pinned like CI by .ci/constraints.txt.
$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e '.[train,dev]'
	touch $(STAMP)

venv: $(STAMP)

## make demo: the main job on the embedded default (bundled fashion-mnist-mini, CPU), outputs in demo/
demo: $(STAMP)
	$(BIN)/edgeres demo --out $(DEMO_OUT)

## make test: the test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
