# Two commands do all set-up on a fresh machine:
#   make run    creates .venv, installs dwars, evaluates every controller on bundled real 2024 data (table + plots),
#               then runs the runtime (dwars run) for two days against the simulated inverter over Modbus TCP
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
	$(BIN)/python -m pip install --quiet -e '.[runtime,plot]'
	touch $@

# The suite covers training too, so it installs the train extra (torch==2.13.0, the CPU wheel on disk).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,train,scale]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/dwars config check examples/home.toml
	$(BIN)/dwars scenario build --config examples/home.toml \
		--prices sample:prices_2024.json.gz --weather sample:knmi_debilt_260_2024_T_Q.csv.gz --load profile \
		--start 2024-01-01 --end 2025-01-01 --resolution 60min --model-pv --out $(OUT)/scenario_2024_60min.csv
	$(BIN)/dwars evaluate --config examples/home.toml --scenario $(OUT)/scenario_2024_60min.csv \
		--controllers none,msc,rule,mpc,mpc_shield,rl,oracle --json $(OUT)/evaluation_2024.json --plots $(OUT)/plots
	$(BIN)/dwars run --config examples/home.toml --simulate --start 2024-06-01 --days 2 --minutes 15 \
		--log $(OUT)/run/decisions.jsonl --compare none,rule

test: $(VENV)/.dev
	$(BIN)/ruff check dwars tests bench
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.dev
	$(BIN)/ruff check dwars tests bench

bench: $(VENV)/.dev
	for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .hypothesis
