# Two commands for a newcomer: `make run` (default job) and `make test`.
# Both create .venv and install gankit into it on first use.
PYTHON ?= python3
VENV   ?= .venv
# CPU build of torch where no GPU build is present (this wheel lies on disk on our machines).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: run test venv lint bench clean

$(BIN)/gankit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/gankit

run: venv
	$(BIN)/gankit train --out runs/default

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) runs
