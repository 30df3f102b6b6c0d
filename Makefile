# make test   : create .venv if missing, install the package with its test extra, run pytest -n auto
# make verify : create .venv if missing, install, run `mdm-props verify`
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= test

.PHONY: test verify install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# a CPU torch wheel that pip can find without the network is preferred; otherwise torch comes from the index
	if $(BIN)/pip download -q --no-index --no-deps torch==2.13.0 -d $(VENV)/wheels >/dev/null 2>&1; then \
	  $(BIN)/pip install -q $(VENV)/wheels/torch-*.whl; fi
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/pytest -n auto

verify: $(VENV)/.installed
	$(BIN)/mdm-props verify

clean:
	rm -rf $(VENV) build *.egg-info
