# Layer Security — build, test, demo and install.
#   make            build the library, header and `layersec` (release)
#   make demo       the main job: two parties, a document sealed, opened, receipted
#   make dotnet     the .NET binding (bindings/dotnet, Mono's mcs) into $(TARGET_DIR)/dotnet
#   make test-dotnet its NUnit 2.6 tests against the debug library (in make test)
#   make example-c | example-python | example-java | example-dotnet
#                   one binding's examples over the release build: seal/open in memory, then
#                   send/poll against a throwaway local Messaging Service (scripts/example-service.sh)
#   make test-cross documents sealed by each binding (C, Python, Java, .NET) opened by every
#                   other and by openssl cms, and the other way round (bindings/cross; in make test)
#   make test       formatting and clippy first, then every test (Rust, C examples under valgrind,
#                   Python, the install, fuzzing smoke), installing what it needs; ends with the
#                   list of skipped tests (LS_REQUIRE_FIXTURES=1, as in CI: a skip is a failure)
#   make lint       cargo fmt --check and cargo clippy -D warnings (the first step of make test)
#   make java       the Java binding: $(TARGET_DIR)/java/layersec.jar (natives inside) and
#                   liblayersec_jni.so, over the debug build (bindings/java/Makefile)
#   make test-java  its JUnit 5 tests (Debian's console launcher, -Xcheck:jni; in make test)
#   make install    PREFIX=/usr/local DESTDIR=  (library, static lib, header, pkg-config, layersec,
#                   layersec-server; stripped: KEEP_DEBUG=1 keeps the debug info in <file>.debug)
#   make bench      benchmarks (criterion + the openssl cms comparison script + compression of
#                   1 GiB of generated business text beside gzip -6, pigz -6 -p 2 and zstd -3
#                   (BENCH_COMPRESS_SIZE=256M for less) + 1 GiB through the service end to end,
#                   time and peak RSS of send, poll and the service (bench-stream-e2e.sh,
#                   BENCH_STREAM_SIZE for another size) + the service, also under 10,000 idle or
#                   trickling connections + the client's latency + signed receipts:
#                   send-to-receipt latency, throughput with receipts on/off) + 1, 2 and 3
#                   service nodes on one PostgreSQL against the SQLite store (bench-cluster.sh)
#                   + keys on a SoftHSM2 token against keys in memory: 1 KiB seal+open, PKCS#11
#                   calls per round trip, the service's 10 KiB throughput (bench-pkcs11.sh)
#   make fuzz-long  every fuzz target for 10 million executions or 30 minutes (not in `make test`
#                   or CI; resumable: run it again after an interruption; `nice -n 19 make
#                   fuzz-long` on a shared machine); then minimised seeds in fuzz/seeds/<target>.
#                   See fuzz/README.md. `make test` runs each target for 25 s (test-fuzz).

SHELL   := /bin/bash
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
CARGO   ?= cargo
PYTHON  ?= python3
STRIP   ?= strip
OBJCOPY ?= objcopy
KEEP_DEBUG ?= 0
# The one place of the version: the workspace's (Cargo.toml [workspace.package]). The SONAME is
# liblayersec.so.<major>, as ls-ffi/build.rs gives it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := liblayersec.so.$(MAJOR)

TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
REL := $(TARGET_DIR)/release
DBG := $(TARGET_DIR)/debug
# What the test groups printed, read at the end for the list of skips.
TEST_LOG ?= $(TARGET_DIR)/make-test.log

.PHONY: all build debug deps lint test test-groups test-rust test-c test-python test-java java dotnet test-dotnet test-cross test-install test-fuzz fuzz-long demo install install-files uninstall bench clean example-c example-python example-java example-dotnet

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace

debug: deps
	$(CARGO) build --workspace

# Lint first (fails fast), then the test groups with their output also in $(TEST_LOG); the
# summary lists every skip found there (whether the groups passed or not).
test: deps
	@$(MAKE) --no-print-directory lint
	@mkdir -p $(TARGET_DIR); set -o pipefail; \
	$(MAKE) --no-print-directory test-groups 2>&1 | tee $(TEST_LOG); rc=$$?; \
	bash scripts/test-summary.sh $(TEST_LOG) $$rc

test-groups: debug test-rust test-c test-python test-java test-dotnet test-cross test-install test-fuzz

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace --no-fail-fast

test-c: debug
	$(MAKE) -C examples-c LIBDIR=$(abspath $(DBG)) run

# -rs: the reason of every skip in pytest's summary. The temporary folders of the tests go to a
# folder of this run, removed after it.
test-python: debug
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/layersec-pytest.XXXXXX"); \
	LAYERSEC_LIB=$(abspath $(DBG))/liblayersec.so $(PYTHON) -m pytest -q -rs -p no:cacheprovider \
	    --basetemp "$$tmp/t" bindings/python/tests; rc=$$?; rm -rf "$$tmp"; exit $$rc

# The Java binding over the debug build of liblayersec (only ls-ffi is needed): javac, jar and
# gcc, nothing downloaded (scripts/deps.sh installs Debian's JDK 17 and JUnit 5).
JAVA_MAKE = $(MAKE) --no-print-directory -C bindings/java LIBDIR=$(abspath $(DBG)) OUT=$(abspath $(TARGET_DIR))/java

java: deps
	$(CARGO) build -p ls-ffi
	$(JAVA_MAKE) jar

# ClientTest needs a real service and `layersec init`: the server and the CLI are built too.
test-java: java
	$(CARGO) build -p ls-server -p ls-cli
	$(JAVA_MAKE) test

# The .NET binding (C# 7 with Mono's mcs) and its NUnit 2.6 tests (nunit-console), built in
# $(TARGET_DIR)/dotnet; see bindings/dotnet/Makefile for how the tests find the library.
DOTNET_OUT := $(abspath $(TARGET_DIR))/dotnet

dotnet: deps
	$(MAKE) -C bindings/dotnet OUT=$(DOTNET_OUT)

test-dotnet: debug
	$(MAKE) -C bindings/dotnet OUT=$(DOTNET_OUT) LIBDIR=$(abspath $(DBG)) test

# Every binding's seal/open example program (the C examples, Python's, Java's and .NET's, all
# with the C examples' command line) sealing for and opening each other's messages, and
# openssl cms on both sides (bindings/cross/test_cross.py).
CROSS_OUT := $(abspath $(TARGET_DIR))/cross
test-cross: debug java
	$(MAKE) --no-print-directory -C examples-c LIBDIR=$(abspath $(DBG)) BUILD=$(CROSS_OUT)/c all
	$(JAVA_MAKE) examples
	$(MAKE) --no-print-directory -C bindings/dotnet OUT=$(DOTNET_OUT) LIBDIR=$(abspath $(DBG)) examples
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/layersec-cross.XXXXXX"); \
	LS_CROSS_C=$(CROSS_OUT)/c LS_CROSS_JAVA=$(abspath $(TARGET_DIR))/java/examples/seal-open \
	    LS_CROSS_DOTNET=$(DOTNET_OUT)/examples/seal-open LAYERSEC_LIB=$(abspath $(DBG))/liblayersec.so \
	    $(PYTHON) -m pytest -q -rs -p no:cacheprovider --basetemp "$$tmp/t" bindings/cross; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc

# The examples of each binding, for a newcomer: one command each, over the release build (the
# library, layersec and layersec-server): seal/open in memory, then send/poll against a
# throwaway Messaging Service with parties alice and bob (scripts/example-service.sh).
EXAMPLE_DOC := $(abspath bindings/invoice.xml)
example-c: build
	$(MAKE) --no-print-directory -C examples-c LIBDIR=$(abspath $(REL)) BUILD=$(abspath $(TARGET_DIR))/examples-c run
	bash scripts/example-service.sh $(REL) sh -c '$(abspath $(TARGET_DIR))/examples-c/send_poll "$$ALICE_CONFIG" "$$BOB_CONFIG" $(EXAMPLE_DOC) bob'

example-python: build
	LAYERSEC_LIB=$(abspath $(REL))/liblayersec.so $(PYTHON) bindings/python/examples/seal_open.py
	LAYERSEC_LIB=$(abspath $(REL))/liblayersec.so bash scripts/example-service.sh $(REL) \
	    sh -c '$(PYTHON) bindings/python/examples/send_poll.py "$$ALICE_CONFIG" "$$BOB_CONFIG" $(EXAMPLE_DOC) bob'

example-java: build
	$(MAKE) --no-print-directory -C bindings/java LIBDIR=$(abspath $(REL)) OUT=$(abspath $(TARGET_DIR))/java-release example

example-dotnet: build
	$(MAKE) --no-print-directory -C bindings/dotnet LIBDIR=$(abspath $(REL)) OUT=$(abspath $(TARGET_DIR))/dotnet-release example

# Install the debug build into a temporary prefix; build and run the C examples against it
# through pkg-config.
test-install: debug
	SONAME=$(SONAME) VERSION=$(VERSION) bash scripts/test-install.sh $(abspath $(DBG))

# Smoke-run the cargo-fuzz targets of fuzz/ (libFuzzer + ASan; RUSTC_BOOTSTRAP=1 on stable) for a
# short time each on generated and fixture seeds; fails on any crash. FUZZ_SECONDS=N per target.
test-fuzz: debug
	bash scripts/fuzz-smoke.sh $(abspath $(DBG))/layersec

# The long fuzzing run: every target for 10 million executions or 30 minutes, corpus kept in
# fuzz/corpus (ignored), resumable, seeds of fuzz/seeds/<target> refreshed at the end.
fuzz-long: deps
	$(CARGO) build -p ls-cli
	bash scripts/fuzz-long.sh $(abspath $(DBG))/layersec

demo: build
	@bash scripts/demo.sh $(REL)

bench: deps
	bash scripts/bench.sh
	bash scripts/bench-compress.sh
	bash scripts/bench-stream.sh
	bash scripts/bench-stream-e2e.sh
	bash scripts/bench-server.sh
	bash scripts/bench-client.sh
	bash scripts/bench-email.sh
	bash scripts/bench-bindings.sh
	bash scripts/bench-receipts.sh
	bash scripts/bench-lockout.sh
	bash scripts/bench-cluster.sh
	bash scripts/bench-pkcs11.sh

install: build install-files

# $(call install_stripped,FILE,DEST): FILE installed as DEST without its symbol table and debug
# info; with KEEP_DEBUG=1 the debug info goes to DEST.debug first, linked from DEST by
# .gnu_debuglink (gdb finds it beside DEST).
define install_stripped
install -m 0755 $(1) $(2)
$(if $(filter 1,$(KEEP_DEBUG)),$(OBJCOPY) --only-keep-debug $(2) $(2).debug && chmod 0644 $(2).debug)
$(STRIP) --strip-unneeded $(2)
$(if $(filter 1,$(KEEP_DEBUG)),$(OBJCOPY) --add-gnu-debuglink=$(2).debug $(2))
endef

# The files only, from $(REL) (override REL to install another build).
install-files:
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	$(call install_stripped,$(REL)/liblayersec.so,$(DESTDIR)$(LIBDIR)/liblayersec.so.$(VERSION))
	ln -sf liblayersec.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/liblayersec.so
	install -m 0644 $(REL)/liblayersec.a $(DESTDIR)$(LIBDIR)/liblayersec.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/liblayersec.a
	install -m 0644 include/layersec.h $(DESTDIR)$(INCDIR)/layersec.h
	$(call install_stripped,$(REL)/layersec,$(DESTDIR)$(BINDIR)/layersec)
	$(call install_stripped,$(REL)/layersec-server,$(DESTDIR)$(BINDIR)/layersec-server)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' layersec.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/layersec.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/liblayersec.so* $(DESTDIR)$(LIBDIR)/liblayersec.a \
	      $(DESTDIR)$(INCDIR)/layersec.h $(DESTDIR)$(BINDIR)/layersec $(DESTDIR)$(BINDIR)/layersec-server \
	      $(DESTDIR)$(BINDIR)/layersec.debug $(DESTDIR)$(BINDIR)/layersec-server.debug \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/layersec.pc

clean:
	$(CARGO) clean
	$(MAKE) -C examples-c clean
	$(MAKE) -C bindings/java OUT=$(abspath $(TARGET_DIR))/java clean
	$(MAKE) -C bindings/dotnet clean
	rm -rf fuzz/target fuzz/artifacts
