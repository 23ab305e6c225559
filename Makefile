# `make demo` and `make test` do all set-up on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch goes in first with plain pip, which honours this machine's pip configuration (a local CPU
# wheel of 2.13.0 here). uv then installs the rest ~8x faster under constraints.txt, so nothing
# can pull a CUDA build. GPU users: install your own torch into .venv before `make`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-all bench bench-gpu lint clean-runs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -c constraints.txt -e ".[dev]"
	$(BIN)/python scripts/torchaudio_cpu_fallback.py
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/neuroray demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu"

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Every GPU check in one script (< 8 min on one GPU); writes benchmarks/results/gpu_training.json.
bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_training --device cuda

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean-runs:
	rm -rf runs/demo data/demo-eeg
