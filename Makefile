# Two commands for a newcomer: `make run` (default job) and `make test`.
# Both create .venv and install gankit into it on first use.
PYTHON ?= python3
VENV   ?= .venv
# CPU build of torch where no GPU build is present (this wheel lies on disk on our machines).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: run test venv browser lint bench clean

$(BIN)/gankit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/gankit

# Train the default preset on the embedded MNIST digits, then sample a class grid and score it.
RUN ?= runs/default
run: venv
	$(BIN)/gankit train --out $(RUN)
	$(BIN)/gankit sample $(RUN) --n 80 --classes 0,1,2,3,4,5,6,7,8,9 --out $(RUN)/final_grid.png
	$(BIN)/gankit eval $(RUN) --metrics class_acc,cfid,swd,cprdc --n 1000

# Headless Chromium + chromedriver from Debian for the browser test of `gankit serve`; installed
# when missing and apt-get is usable (as root, e.g. CI). Elsewhere that test skips (fails in CI).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and chromium-driver (Debian) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; \
	else echo "note: chromium/chromedriver missing and apt-get unusable: browser test skips"; fi

test: venv browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) runs
