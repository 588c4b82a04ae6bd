# lba: install, test, demo, benchmarks.  `make help` lists the targets.
#
# Variables (override on the command line, e.g. `make demo DATA=~/atom3d/split-by-sequence-identity-30`):
PYTHON     ?= python3
VENV       ?= .venv
TORCH      ?= torch==2.13.0
SHARED     ?= ../shared/data
DATA       ?= $(SHARED)/atom3d_lba_demo/split-by-protein
STRUCTURES ?= $(SHARED)/proteins_bm5
DEMO_DIR   ?= demo
DEMO_ARCH  ?= resnet-bottleneck
PRETRAIN_EPOCHS ?= 4
FINETUNE_EPOCHS ?= 15

BIN := $(VENV)/bin
LBA := $(BIN)/lba
STAMP := $(VENV)/.installed

.PHONY: help install test test-slow lint demo bench gpu-check-prepare gpu-check clean

help:
	@echo "make install    virtual environment in $(VENV) with $(TORCH) (CPU build by default) and lba"
	@echo "make demo       the whole pipeline on the demo data (DATA=$(DATA))"
	@echo "make test       the test suite (CI runs this)"
	@echo "make test-slow  the slow tests too"
	@echo "make lint       ruff (style and static checks; CI runs this)"
	@echo "make bench      benchmarks"
	@echo "make gpu-check-prepare  here: data, structures and wheels for the GPU check in .gpu-check/ (< 64 MiB)"
	@echo "make gpu-check  on a GPU machine: CUDA voxelizer, training, display, NCCL (README: GPU check)"

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check lba_cli tests benchmarks

# The main job. It starts from an empty $(DEMO_DIR)/runs so that the run names below are unique.
demo: install
	rm -rf $(DEMO_DIR)/runs
	mkdir -p $(DEMO_DIR)
	$(LBA) voxelize $(DATA) -o $(DEMO_DIR)/lba_demo.h5 --report $(DEMO_DIR)/skipped.csv
	$(LBA) corpus $(STRUCTURES) -o $(DEMO_DIR)/corpus.h5 --report $(DEMO_DIR)/corpus_left_out.csv
	$(LBA) pretrain --structures $(DEMO_DIR)/corpus.h5 --exclude-similar-to $(DEMO_DIR)/lba_demo.h5 \
		--arch $(DEMO_ARCH) --pad 1 2 --angle 20 \
		--epochs $(PRETRAIN_EPOCHS) --epoch-size 1024 --val-size 256 --batch-size 32 \
		--name pretrain-1-2-20 --runs-dir $(DEMO_DIR)/runs
	$(LBA) finetune $(DEMO_DIR)/lba_demo.h5 --init random --arch $(DEMO_ARCH) --epochs $(FINETUNE_EPOCHS) \
		--name finetune-random --runs-dir $(DEMO_DIR)/runs
	$(LBA) finetune $(DEMO_DIR)/lba_demo.h5 --init pretrain-1-2-20 --epochs $(FINETUNE_EPOCHS) \
		--name finetune-pretrained --runs-dir $(DEMO_DIR)/runs
	$(LBA) evaluate finetune-random finetune-pretrained --split test --runs-dir $(DEMO_DIR)/runs
	$(LBA) plot $(DEMO_DIR)/runs/* -o $(DEMO_DIR)/curves.png --runs-dir $(DEMO_DIR)/runs
	$(LBA) plot finetune-random finetune-pretrained --kind scatter -o $(DEMO_DIR)/test_scatter.png --runs-dir $(DEMO_DIR)/runs
	$(LBA) compare $(DEMO_DIR)/runs/* --sort val/rmse --runs-dir $(DEMO_DIR)/runs
	@echo "figures: $(DEMO_DIR)/curves.png $(DEMO_DIR)/test_scatter.png"

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/corpus_bench.py

# The GPU check (README, "GPU check"). The GPU machine has no .venv: there python3 runs it.
gpu-check-prepare: install
	$(BIN)/python benchmarks/gpu_check.py prepare --source $(DATA) --structures $(STRUCTURES)

gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) benchmarks/gpu_check.py run

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
