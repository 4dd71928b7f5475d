# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install edgesmith (with OpenVINO + NNCF, Neural Compressor, MLflow, asyncssh) with torch held at the 2.13.0 CPU build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgesmith-installed

.PHONY: demo test lint bench browser clean
demo: $(STAMP)
	$(BIN)/edgesmith demo

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# lint and types: ruff (rules and format) and mypy (settings in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check edgesmith tests benchmarks scripts
	$(BIN)/ruff format --check edgesmith tests benchmarks scripts
	$(BIN)/mypy

# the HTML report is checked in a real headless browser: Debian's chromium (installed when root)
browser:
	@sh scripts/ensure-chromium.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/int8_speedup.py

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[build,openvino,inc,mlflow,search,ray,hf,data,ocr,device,dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) edgesmith-out .pytest_cache
