# Two commands, each setting itself up from nothing on a fresh machine:
#   make test   create .venv, install hybrid_jax with its test extras, run the tests
#   make demo   create .venv, install, run the study at CPU scale (runs/demo/report/)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TEST_EXTRAS := test,oracle,analysis,convert,train,dev
DEMO_EXTRAS := analysis,train

.PHONY: test demo lint clean

# One stamp per set of extras; setup.py changes reinstall.
$(VENV)/.installed-%: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(subst -,$(comma),$*)]"
	touch $@

comma := ,
TEST_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(TEST_EXTRAS))
DEMO_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(DEMO_EXTRAS))

test: $(TEST_STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=20 tests

demo: $(DEMO_STAMP)
	$(PY) -m hybrid_jax.apps.demo

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check hybrid_jax tests configs benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
