# Every target that runs code sets up what it needs itself: .venv, Python packages and
# the Debian packages (a JDK and libfreemarker-java for the FreeMarker parity test, tmux,
# hyperfine, faketime for the as-of tests that run a year ahead of the machine's clock,
# chromium and chromium-driver for the browser test of `serve`, systemd for
# `systemd-analyze verify` of deploy/systemd, openssl for the SMTP STARTTLS test).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PKGS := default-jdk-headless libfreemarker-java tmux hyperfine faketime chromium chromium-driver \
	systemd openssl

.PHONY: all setup apt demo test lint typecheck unit chaos bench clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# apt-get only where something is missing; failures are reported but the tests that need
# a package skip with a reason saying so.
apt:
	@missing=""; \
	test -f /usr/share/java/freemarker.jar || missing="$$missing libfreemarker-java"; \
	command -v javac >/dev/null 2>&1 || missing="$$missing default-jdk-headless"; \
	command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v hyperfine >/dev/null 2>&1 || missing="$$missing hyperfine"; \
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing="$$missing faketime"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing" >&2; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing) >&2 \
	    || echo "warning: could not install$$missing" >&2; \
	fi

demo: setup
	$(BIN)/ml-console demo

lint: setup
	$(BIN)/ruff check console screens tests bench
	$(BIN)/ruff format --check console screens tests bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

unit: setup apt
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

# -k: a lint or type error still lets the test suite run, so one run reports everything.
test: setup apt
	$(MAKE) -k lint typecheck unit

chaos: setup apt
	$(BIN)/python -m pytest -q -n 2 -m chaos -p no:cacheprovider tests
	$(BIN)/python -m bench.chaos_table

bench: setup apt
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
