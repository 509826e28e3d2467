# motionclr — every target is a thin wrapper over the `motionclr` CLI.
# Variables: DATASET DATA_ROOT CACHE METHOD RUN DEVICE WORKERS PROFILE ARGS; `make help`.
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
# PROFILE=cpu adds the CPU sizes of configs/demo.yaml (small3d, 12 epochs, batch 16).
PROFILE  ?=
PROFILES := cpu=configs/demo.yaml
PROFILE_CONFIG = $(if $(PROFILE),$(or $(patsubst $(PROFILE)=%,%,$(filter $(PROFILE)=%,$(PROFILES))),$(error unknown PROFILE=$(PROFILE); known: $(PROFILES))))
CONFIGS  = configs/datasets/$(DATASET).yaml configs/methods/$(METHOD).yaml $(PROFILE_CONFIG)
COMMON   := data.dataset=$(DATASET) data.root=$(DATA_ROOT) data.cache=$(CACHE) \
            pipeline.workers=$(WORKERS) flow.device=$(DEVICE)
MOTIONCLR := $(BIN)/motionclr

.PHONY: help setup demo generate flow index pretrain eval-retrieval eval-linear eval-knn \
        eval-val-retrieval \
        finetune retrieval-figure report bench bench-methods bench-gpu test lint clean

help:
	@echo 'motionclr: every target wraps the `motionclr` CLI (see README.md).'
	@echo '  make demo            generate the embedded dataset, run every stage on CPU'
	@echo '  make flow            decode + TV-L1 flow + HDF5 shards (cached; resumes)'
	@echo '  make index           motion index (MDS, tubelets, segments) beside the shards'
	@echo '  make pretrain        pretrain METHOD on the cached shards into RUN'
	@echo '  make eval-retrieval  video retrieval R@k of RUN'
	@echo '  make eval-linear     linear probe (SVM / softmax) of RUN'
	@echo '  make eval-knn        kNN classification of RUN'
	@echo '  make eval-val-retrieval  retrieval inside the train split by held-out groups (choose knobs)'
	@echo '  make finetune        end-to-end finetuning of RUN'
	@echo '  make retrieval-figure  query/top-k figure of RUN'
	@echo '  make report          one page of everything measured for RUN'
	@echo '  make bench           flow engines + clip reading -> docs/benchmarks.md'
	@echo '  make bench-methods   every method, one budget -> docs/benchmarks.md'
	@echo '  make bench-gpu       GPU flow, reader and training throughput (one GPU, <= 8 min)'
	@echo '  make generate        write the embedded DATASET (synthetic | synthetic-objects)'
	@echo '  make test            the test suite;  make setup  the .venv;  make clean'
	@echo 'Variables: DATASET=$(DATASET) DATA_ROOT=$(DATA_ROOT) CACHE=$(CACHE) METHOD=$(METHOD)'
	@echo '  RUN=$(RUN) DEVICE=$(DEVICE) WORKERS=$(WORKERS) PROFILE=$(PROFILE) (cpu: configs/demo.yaml)'
	@echo '  ARGS="section.key=value ..." dotted config overrides, passed to the CLI'
	@echo 'CLI: motionclr --help; motionclr config show --config FILE... [overrides];'
	@echo '  motionclr cache ls|gc [CACHE]'

$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,bench]'
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

eval-val-retrieval: setup
	$(MOTIONCLR) eval val-retrieval $(EVAL_COMMON) $(ARGS)

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
