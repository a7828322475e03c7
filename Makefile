# Berth: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
# Tests run several berthd instances in parallel; two threads suit the 2-core CI machine.
TEST_THREADS ?= 2

.PHONY: run setup build test check unit e2e test-rig bench images fmt clippy shellcheck clean-test

## run: install dependencies and a default CNI network if none exists, build, and run berthd (as root)
run: setup build
	exec target/release/berthd

setup:
	hack/install-deps.sh
	hack/install-cni-config.sh

# berth-init is a workspace of its own (no std, panic = abort): built into the same target dir, so
# it sits beside berthd, where berthd looks for it.
INIT := --locked --manifest-path cmd/berth-init/Cargo.toml --target-dir target

build:
	$(CARGO) build --release --locked --bins
	$(CARGO) build --release $(INIT)

## test: everything CI runs: format, lint, unit tests, then e2e tests against a real berthd
test: test-rig check unit e2e

test-rig:
	hack/install-deps.sh
	hack/test-images.sh --with-auth

check: fmt clippy shellcheck

shellcheck:
	shellcheck -x hack/*.sh hack/bench/*.sh .ci/run

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path cmd/berth-init/Cargo.toml -- --check

clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(INIT) -- -D warnings

unit:
	$(CARGO) test --locked --workspace --exclude berth-e2e -- --test-threads=$(TEST_THREADS)

e2e:
	$(CARGO) build --locked --bins
	$(CARGO) build $(INIT)
	$(CARGO) test --locked -p berth-e2e -- --test-threads=$(TEST_THREADS); \
	status=$$?; \
	find /sys/fs/cgroup -maxdepth 2 -type d -name berth-e2e.kubepods -exec rmdir {} + 2>/dev/null; \
	exit $$status

## bench: Berth and containerd side by side (hack/bench/README.md)
bench:
	hack/bench/run.sh

images:
	hack/test-images.sh

clean-test:
	hack/registry.sh stop || true
	rm -rf /var/tmp/berth-e2e
