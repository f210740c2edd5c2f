# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_N ?= 4000

.PHONY: setup demo test lint ext bench-cpu gpu-suite clean-demo demo-downstream

$(STAMP): requirements.txt setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

data/synth-mimic/.done: | $(STAMP)
	$(BIN)/medtrain data synth --layout mimic-cxr-jpg --n $(DEMO_N) --image-size 256 --seed 0 --out data/synth-mimic
	touch $@

data/tokenizer/tokenizer.json: data/synth-mimic/.done
	$(BIN)/medtrain tokenizer train --root data/synth-mimic --vocab-size 2048 --out data/tokenizer

# Synthetic data -> tokenizer -> pretraining (DeepSpeed, tiny-cpu preset) -> held-out evaluation.
# Re-running resumes from the latest checkpoint (a finished run only re-evaluates).
demo: setup data/tokenizer/tokenizer.json
	$(BIN)/medtrain pretrain --preset tiny-cpu --resume
	$(BIN)/medtrain eval --run runs/tiny-cpu --split test

# Downstream transfer from the demo's pretrained run (make demo first): fine-tunes classification
# (pretrained vs random init at 1%/10% labels), RSNA pneumonia, VQA and report generation on the
# synthetic data (made when missing); tables in benchmarks/results/downstream_tiny-cpu.md.
demo-downstream: setup data/tokenizer/tokenizer.json
	@if [ ! -d runs/tiny-cpu/checkpoints ]; then echo "runs/tiny-cpu/checkpoints not found: run make demo first"; exit 1; fi
	$(BIN)/python benchmarks/downstream/transfer.py --init runs/tiny-cpu

lint: setup
	$(BIN)/ruff check .

# JIT-build the C++ contrastive-loss extension once (cached under ~/.cache/torch_extensions).
ext: setup
	CUDA_HOME=$${CUDA_HOME:-/usr/local/cuda} $(BIN)/python -c "from medtrain.kernels import native; assert native.load() is not None, native.load_error()"

test: lint ext
	CUDA_HOME=$${CUDA_HOME:-/usr/local/cuda} $(BIN)/python -m pytest -q tests

# CPU benchmarks (minutes); results in benchmarks/results/.
bench-cpu: ext
	$(BIN)/python benchmarks/throughput/pretrain_step.py --preset tiny-cpu
	$(BIN)/python benchmarks/kernels/bench_contrastive.py --mode single --batches 4096 8192
	$(BIN)/python benchmarks/data/bench_deid.py

gpu-suite: ext
	bash benchmarks/gpu_suite.sh

clean-demo:
	rm -rf data/synth-mimic data/tokenizer runs/tiny-cpu
