# Two commands, each setting itself up from nothing on a fresh machine:
#   make test   create .venv, install hybrid_jax with its test extras, run the tests
#   make demo   create .venv, install, train and compare the three tiny models
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= test,oracle,analysis,convert,dev
STAMP  := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')

.PHONY: test demo lint clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests

demo: $(STAMP)
	$(PY) -m hybrid_jax.apps.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check hybrid_jax tests configs benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
