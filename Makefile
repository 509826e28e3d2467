# motionclr — every target is a thin wrapper over the `motionclr` CLI.
# Variables: DATASET DATA_ROOT CACHE METHOD RUN DEVICE WORKERS ARGS (dotted overrides).
# DEVICE: auto (CUDA when present) | cpu | cuda | cuda:N; eval targets default to auto.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
DATASET  ?= synthetic
DATA_ROOT ?= data/$(DATASET)
CACHE    ?= cache
METHOD   ?= moco
RUN      ?= runs/$(DATASET)-$(METHOD)
DEVICE   ?= cpu
WORKERS  ?= 2
ARGS     ?=
CONFIGS  := configs/datasets/$(DATASET).yaml configs/methods/$(METHOD).yaml
COMMON   := data.dataset=$(DATASET) data.root=$(DATA_ROOT) data.cache=$(CACHE) \
            pipeline.workers=$(WORKERS) flow.device=$(DEVICE)
MOTIONCLR := $(BIN)/motionclr

.PHONY: setup demo generate flow index pretrain eval-retrieval eval-linear eval-knn finetune \
        retrieval-figure report bench bench-methods bench-gpu test lint clean

$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(MOTIONCLR) demo --config configs/datasets/synthetic.yaml configs/methods/moco.yaml \
	    configs/demo.yaml data.cache=$(CACHE) pipeline.workers=$(WORKERS) \
	    train.device=$(DEVICE) train.run=runs/demo-moco $(ARGS)

generate: setup
	$(MOTIONCLR) generate --config configs/datasets/$(DATASET).yaml data.root=$(DATA_ROOT) $(ARGS)

flow: setup
	$(MOTIONCLR) flow --config configs/datasets/$(DATASET).yaml $(COMMON) $(ARGS)

index: setup
	$(MOTIONCLR) index --config $(CONFIGS) $(COMMON) $(ARGS)

pretrain: setup
	$(MOTIONCLR) pretrain --config $(CONFIGS) $(COMMON) train.device=$(DEVICE) \
	    train.run=$(RUN) $(ARGS)

# Eval reads the run's own config and flow stage: pass only what the user set (make VAR=..
# or the environment), never a default. `given` = $(2) when $(1) was set by the user.
given = $(if $(filter-out default file undefined,$(origin $(1))),$(2))
EVAL_COMMON = --run $(RUN) $(call given,DEVICE,--device $(DEVICE)) \
              $(call given,DATA_ROOT,data.root=$(DATA_ROOT)) $(call given,CACHE,data.cache=$(CACHE))

eval-retrieval: setup
	$(MOTIONCLR) eval retrieval $(EVAL_COMMON) $(ARGS)

eval-linear: setup
	$(MOTIONCLR) eval linear $(EVAL_COMMON) $(ARGS)

eval-knn: setup
	$(MOTIONCLR) eval knn $(EVAL_COMMON) $(ARGS)

finetune: setup
	$(MOTIONCLR) eval finetune $(EVAL_COMMON) $(ARGS)

retrieval-figure: setup
	$(MOTIONCLR) eval retrieval-figure $(EVAL_COMMON) $(ARGS)

report: setup
	$(MOTIONCLR) eval report --run $(RUN)

bench: setup
	$(MOTIONCLR) bench flow --device $(DEVICE) $(ARGS)
	$(MOTIONCLR) bench io $(ARGS)

bench-methods: setup
	$(MOTIONCLR) bench methods $(ARGS)

# One GPU (cuda unless ARGS="--device cuda:1"), <= 8 minutes: JSON + docs/benchmarks.md section.
bench-gpu: setup
	$(MOTIONCLR) bench gpu $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf runs/demo-moco cache/synthetic data/synthetic
