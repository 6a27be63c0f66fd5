# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create the virtual environment on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-core
STAMP_LLM := $(VENV)/.installed-llm

.PHONY: demo test install install-llm bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The suite also runs the real SmolLM2 student on CPU and LoRA training: torch, transformers, peft.
$(STAMP_LLM): $(STAMP)
	$(VENV)/bin/pip install -q -e '.[test,llm]'
	touch $@

install: $(STAMP)

install-llm: $(STAMP_LLM)

demo: $(STAMP)
	$(VENV)/bin/cmrx demo

test: $(STAMP_LLM)
	$(VENV)/bin/pytest -q -ra

bench: $(STAMP)
	$(VENV)/bin/python bench/bench_rules.py

clean:
	-$(VENV)/bin/cmrx kafka stop
	rm -rf .cmrx .pytest_cache
