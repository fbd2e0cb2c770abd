# wattwise's commands. Each installs what a fresh machine lacks.
#   make run    the local endpoint (SQLite) with the what-if page, on 127.0.0.1:8080
#   make test   every test (what CI runs)
#   make wheel  the `pip install`able wheels (x86_64, aarch64) into dist/
# And for before a commit: make check (format, clippy, static checks, unit tests).

export CARGO_TARGET_DIR ?= $(HOME)/.cache/wattwise-target
LISTEN ?= 127.0.0.1:8080
DB ?= wattwise.db

.PHONY: run test check bench wheel

run:
	bash .ci/run-main.sh "$(LISTEN)" "$(DB)"

test:
	bash .ci/test.sh

wheel:
	bash .ci/wheel.sh

check:
	bash .ci/check.sh

bench:
	cargo bench -p wattwise-core
