# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create the virtual environment on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-core
STAMP_LLM := $(VENV)/.installed-llm

.PHONY: demo test install install-llm bench compile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,fast]'
	touch $@

# The suite also runs the real SmolLM2 student on CPU and LoRA training: torch, transformers, peft.
$(STAMP_LLM): $(STAMP)
	$(VENV)/bin/pip install -q -e '.[test,llm,fast]'
	touch $@

install: $(STAMP)

install-llm: $(STAMP_LLM)

# The rules backend's hot modules compiled with mypyc (~1 min, once per change of their sources) into
# .cmrx/compiled/rules-<source hash>/; a second run with the same sources does nothing. Without a C
# compiler it says so and the pure-Python modules run (same results, slower): never a failed target.
compile: $(STAMP)
	-$(VENV)/bin/python -m extraction.backends.rules.build

demo: $(STAMP) compile
	$(VENV)/bin/cmrx demo

test: $(STAMP_LLM) compile
	$(VENV)/bin/pytest -q -ra

bench: $(STAMP) compile
	$(VENV)/bin/python bench/bench_rules.py

clean:
	-$(VENV)/bin/cmrx kafka stop
	rm -rf .cmrx .pytest_cache
