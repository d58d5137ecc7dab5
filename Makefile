# net2vec: `make demo` installs and runs the embedded default; `make test` installs and runs the tests.
VENV ?= .venv
DEMO_TIME := $(shell date +%Y-%m-%d_%H-%M-%S)
DEMO ?= multirun/demo/$(DEMO_TIME)
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test test-all bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# seg (top-F subsets), cls and netdissect on synthnet conv5 as one sweep (conf/experiment/demo.yaml),
# then one report over the three: $(DEMO)/report/index.html, its headline printed last.
demo: install
	$(PY) train.py -m experiment=demo hydra.sweep.dir=$(DEMO)
	$(PY) evaluate.py sweep=$(DEMO) hydra.run.dir=$(DEMO)/report

test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m ""

bench: install
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf outputs multirun .cache
