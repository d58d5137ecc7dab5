# net2vec: `make demo` installs and runs the embedded default; `make test` installs and runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test test-all bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) train.py
	$(PY) evaluate.py runs=[$$(dirname $$(ls outputs/*/*/results.csv | sort | tail -n 1))]

test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m ""

bench: install
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf outputs multirun .cache
