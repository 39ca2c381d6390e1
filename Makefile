# CloudWatchDog: `make run` serves everything, `make test` runs the whole suite.
# With DATABASE_URL / REDIS_URL unset, embedded PostgreSQL and Redis start under .data/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test test-external lint setup setup-test migrate stop clean protos

# make run installs what the stack runs on (requirements.txt) and the embedded servers; make test
# adds the test tools (requirements-test.txt), which a production host never installs.
$(VENV)/.installed: requirements.txt requirements-embedded.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-embedded.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

migrate: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py maintain_points
	$(PY) manage.py collectstatic --noinput --verbosity 0

# serve.py migrates, creates this week's partitions and the demo key, then starts the Procfile's
# roles; Ctrl-C at any point stops what it started, the embedded servers included.
run: setup
	PORT=$(PORT) $(PY) scripts/serve.py

test: setup-test
	$(PY) -m pytest -q

# Imports sorted and used, no unused or undefined names (ruff.toml); .ci/run runs it before the suite.
lint: setup-test
	$(VENV)/bin/ruff check .

# The same suite against Debian's PostgreSQL 15 and Redis 7 as real services (apt-get installs them).
test-external: setup-test
	./scripts/test-external.sh

stop: setup
	$(PY) -c "from pathlib import Path; from cloudwatchdog import embedded; embedded.stop_all(Path('.'))"

clean: stop
	rm -rf .data

# Regenerates the remote-write protobuf classes from the checked-in .proto (grpcio-tools bundles protoc;
# it is a tool for this step only, not a requirement of the service).
protos:
	test -x .data/protoc-venv/bin/python || $(PYTHON) -m venv .data/protoc-venv
	.data/protoc-venv/bin/pip install --quiet grpcio-tools==1.85.1
	.data/protoc-venv/bin/python -m grpc_tools.protoc -Imetrics/protocols --python_out=metrics/protocols \
		--pyi_out=metrics/protocols metrics/protocols/remote_write.proto metrics/protocols/remote_write_fast.proto
