# Berth: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
# Tests run several berthd instances in parallel; two threads suit the 2-core CI machine.
TEST_THREADS ?= 2

.PHONY: run setup build test check unit fuzz e2e test-rig bench images corpus fmt clippy shellcheck clean-test

## run: install dependencies and a default CNI network if none exists, build, and run berthd (as root)
run: setup build
	exec target/release/berthd

setup:
	hack/install-deps.sh
	hack/install-cni-config.sh

# berth-init is a workspace of its own (no std, panic = abort): built into the same target dir, so
# it sits beside berthd, where berthd looks for it.
INIT := --locked --manifest-path cmd/berth-init/Cargo.toml --target-dir target
# berth-monitor (one per pod) is a workspace of its own too, built static and non-PIE so that it
# idles in well under 1 MB (see cmd/berth-monitor/src/trim.rs). The explicit --target keeps these
# RUSTFLAGS off build scripts and proc macros. Always a release build, installed beside berthd.
MONITOR := --locked --manifest-path cmd/berth-monitor/Cargo.toml --target x86_64-unknown-linux-gnu --target-dir target/monitor
MONITOR_BIN := target/monitor/x86_64-unknown-linux-gnu/release/berth-monitor
BUILD_MONITOR := RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" $(CARGO) build --release $(MONITOR)

build:
	$(CARGO) build --release --locked --bins
	$(CARGO) build --release $(INIT)
	$(BUILD_MONITOR)
	install -D -m 0755 $(MONITOR_BIN) target/release/berth-monitor

## test: everything CI runs: format, lint, unit tests, then e2e tests against a real berthd
test: test-rig check unit fuzz e2e

test-rig:
	hack/install-deps.sh
	hack/test-images.sh --with-auth
	hack/layer-corpus.sh
	hack/peers.sh python >/dev/null

check: fmt clippy shellcheck

shellcheck:
	shellcheck -x hack/*.sh hack/bench/*.sh .ci/run

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path cmd/berth-init/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path cmd/berth-monitor/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path pkg/spdy/fuzz/Cargo.toml -- --check

clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(INIT) -- -D warnings
	$(CARGO) clippy $(MONITOR) --all-targets -- -D warnings

# berth-monitor-api's tests run the real monitor from target/release, so it is built first.
unit:
	$(CARGO) test $(MONITOR) -- --test-threads=$(TEST_THREADS)
	$(BUILD_MONITOR)
	install -D -m 0755 $(MONITOR_BIN) target/release/berth-monitor
	$(CARGO) test --locked --workspace --exclude berth-e2e -- --test-threads=$(TEST_THREADS)

# The SPDY frame parser and session, fed by libFuzzer for a bounded time per target (nightly).
FUZZ_SECONDS ?= 30
fuzz:
	hack/fuzz.sh $(FUZZ_SECONDS)

e2e:
	$(CARGO) build --locked --bins
	$(CARGO) build $(INIT)
	$(BUILD_MONITOR)
	install -D -m 0755 $(MONITOR_BIN) target/debug/berth-monitor
	$(CARGO) test --locked -p berth-e2e -- --test-threads=$(TEST_THREADS); \
	status=$$?; \
	find /sys/fs/cgroup -maxdepth 2 -type d -name berth-e2e.kubepods -exec rmdir {} + 2>/dev/null; \
	exit $$status

## bench: Berth and containerd side by side (hack/bench/README.md)
bench:
	hack/bench/run.sh

images:
	hack/test-images.sh

## corpus: layers written by other tools (umoci, buildah, skopeo, Python tarfile) for e2e/tests/layer_corpus.rs
corpus:
	hack/layer-corpus.sh

clean-test:
	hack/registry.sh stop || true
	rm -rf /var/tmp/berth-e2e
