# Two commands set up a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PY := .venv/bin/python
APT_PACKAGES := docker-registry skopeo

.PHONY: setup demo test bench clean

setup: .stamp-apt .stamp-venv .stamp-npm

# Debian's CNCF Distribution registry and skopeo (the reference client); the packaged
# registry service is not started: tests and the demo start their own on free ports.
.stamp-apt:
	@if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	touch $@

.stamp-venv: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.stamp-npm: package.json
	npm install --no-audit --no-fund --silent
	test -x node_modules/.bin/azurite
	touch $@

demo: setup
	$(PY) scripts/demo.py

# Pyflakes-level lint and the type check first (undefined names, unused imports, None where a value
# must be): cheap, and they catch what tests miss. mypy's configuration is mypy.ini.
test: setup
	.venv/bin/ruff check --quiet --select F,E9 importcore function_app.py tests scripts bench
	.venv/bin/mypy importcore
	$(PY) -m pytest -q

# The smoke run first: the machinery end to end on tiny sizes, in seconds, before the long run.
bench: setup
	$(PY) -m pytest -q bench/test_smoke.py
	$(PY) bench/run.py

clean:
	rm -rf .venv node_modules .stamp-*
