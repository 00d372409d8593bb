# Two commands do all the set-up on a fresh machine:
#   make test   install into .venv, then lint and run the test suite
#   make demo   install into .venv, then run the end-to-end demo on the built-in dataset
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the wheels that lie on these machines' disk; override for other machines,
# e.g. make test TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: install test test-all lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'  # dev includes the train extra
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/pytest

test-all: lint
	$(BIN)/pytest -m ''

demo: install
	$(BIN)/clinfonce demo --out $(DEMO_OUT)

bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_loss.py
	$(BIN)/python benchmarks/bench_attribute_clusters.py
	$(BIN)/python benchmarks/bench_tags.py
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_loading.py
	$(BIN)/python benchmarks/bench_kmeans.py
	if [ -d /usr/share/datasets/fashion-mnist ]; then $(BIN)/python benchmarks/bench_probe.py --fashion-mnist; \
	else echo 'bench_probe --fashion-mnist skipped: apt-get install dataset-fashion-mnist'; fi

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
