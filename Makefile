# Two commands do all set-up on a fresh machine:
#   make run    creates .venv, installs dwars[runtime], builds a scenario from bundled real data and summarises it
#   make test   installs the dev dependencies, runs ruff and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[runtime]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/dwars config check examples/home.toml
	$(BIN)/dwars scenario build --config examples/home.toml \
		--prices sample:prices_2024.json.gz --weather sample:knmi_debilt_260_2024_T_Q.csv.gz --load profile \
		--start 2024-01-01 --end 2025-01-01 --resolution 15min --out $(OUT)/scenario_2024_15min.csv

test: $(VENV)/.dev
	$(BIN)/ruff check dwars tests bench
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.dev
	$(BIN)/ruff check dwars tests bench

bench: $(VENV)/.dev
	$(BIN)/python bench/bench_scenario_build.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .hypothesis
