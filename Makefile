# Two entry points: `make demo` and `make test`. Both build .venv from the
# pinned constraints first, so a fresh machine needs only Python 3.11, pip, make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: install
	$(BIN)/fedsyft demo

test: install
	$(BIN)/python -m pytest -q -n logical --dist loadfile --durations=15

bench: install
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf $(VENV) .pytest_cache runs .fedsyft
