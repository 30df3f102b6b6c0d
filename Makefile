# make test     : create .venv if missing, install the package with its test extra, run pytest -n auto
# make verify   : create .venv if missing, install, run `mdm-props verify`
# make lint     : ruff check, ruff format --check, mypy mdm_props (installs the lint extra)
# make thorough : the whole suite under the `thorough` Hypothesis profile (2,000 examples, random seeds)
# make bench    : per-draw loop against the batched path per claim, 10,000 draws (not run by CI; docs/performance.md)
# make cuda     : on a GPU machine, every cuda parameter (a skip is a failure) and C0.5 via the command
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= test
# one stamp per set of extras: `make install EXTRAS=test,plot` after `make verify` installs the new extras
# (a stamp only for pyproject.toml said "Nothing to be done"); a set installed before stays done
comma := ,
INSTALLED = $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: test verify install lint thorough cuda bench clean mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	# a CPU torch wheel that pip can find without the network is preferred; otherwise torch comes from the index
	if $(BIN)/pip download -q --no-index --no-deps torch==2.13.0 -d $(VENV)/wheels >/dev/null 2>&1; then \
	  $(BIN)/pip install -q $(VENV)/wheels/torch-*.whl; fi
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

$(VENV)/.lint-installed: $(INSTALLED)
	$(BIN)/pip install -q -e ".[test,lint]"
	touch $@

install: $(INSTALLED)

test: $(INSTALLED)
	$(BIN)/pytest -n auto

verify: $(INSTALLED)
	$(BIN)/mdm-props verify

lint: $(VENV)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy mdm_props

thorough: $(INSTALLED)
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -n auto

bench: $(INSTALLED)
	$(BIN)/mdm-props bench --draws 10000 --per-draw 200 --sizes 4,16,64,250,1000 --sweep C3 --plot docs/figures/bench.png

cuda: $(INSTALLED)
	PYTHON=$(BIN)/python scripts/cuda_check.sh

clean:
	rm -rf $(VENV) build *.egg-info

# make mutants : plant each bug of tests/mutation/mutants.py in a scratch copy; pytest's and verify's kill rates (slow; not CI)
mutants: $(INSTALLED)
	$(BIN)/python tests/mutation/mutants.py
