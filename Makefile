# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv, install the project, and start a private PostgreSQL in
# .data/pg (unless DATABASE_URL is set).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The tests run in file order; `make test PYTEST_ORDER=` shuffles them (pytest-randomly,
# its seed printed first; `PYTEST_ARGS=--randomly-seed=N` repeats an order).
PYTEST_ORDER ?= -p no:randomly
BENCH_ARGS ?=

.PHONY: run ha test lint bench backup-drill openapi devdb stop-devdb clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m mpp_server stack

# The high-availability topology (docs/high-availability.md): etcd, two Patroni nodes,
# HAProxy, the simulator and HA_SERVERS servers; Ctrl-C stops it all.
HA_SERVERS ?= 2
ha: $(STAMP)
	$(PY) -m mpp_server ha --servers $(HA_SERVERS)

test: $(STAMP)
	$(PY) -m ruff check mpp_server tests bench
	$(PY) -m mypy
	@# A private PostgreSQL that fails to start stops here, not in every test.
	dsn="$${DATABASE_URL:-$$($(PY) -m mpp_server devdb)}" && \
	  DATABASE_URL="$$dsn" $(PY) -m pytest --durations=15 $(PYTEST_ORDER) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check mpp_server tests bench
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# A point-in-time restore with pgBackRest, proved on a cluster of its own
# (docs/operations.md): the last line is JSON, the exit status 0 when it matched.
backup-drill: $(STAMP)
	$(PY) -m mpp_server backup-drill

openapi: $(STAMP)
	$(PY) -m mpp_server openapi > docs/openapi.json

devdb: $(STAMP)
	$(PY) -m mpp_server devdb

stop-devdb: $(STAMP)
	$(PY) -m mpp_server devdb stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
