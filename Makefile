# Layer Security — build, test, demo and install.
#   make            build the library, header and `layersec` (release)
#   make demo       the main job: two parties, a document sealed, opened, receipted
#   make test       every test (Rust, C examples under valgrind, Python), installing what it needs
#   make install    PREFIX=/usr/local DESTDIR=  (library, static lib, header, pkg-config, layersec)
#   make bench      benchmarks (criterion + the openssl cms comparison script + the service,
#                   also under 10,000 idle or trickling connections)
#   make fuzz-long  every fuzz target for 10 million executions or 30 minutes (not in `make test`
#                   or CI; resumable: run it again after an interruption; `nice -n 19 make
#                   fuzz-long` on a shared machine); then minimised seeds in fuzz/seeds/<target>.
#                   See fuzz/README.md. `make test` runs each target for 25 s (test-fuzz).

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
CARGO   ?= cargo
PYTHON  ?= python3
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))

TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
REL := $(TARGET_DIR)/release
DBG := $(TARGET_DIR)/debug

.PHONY: all build debug deps test test-rust test-c test-python test-install test-fuzz fuzz-long demo install install-files uninstall bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace

debug: deps
	$(CARGO) build --workspace

test: deps debug test-rust test-c test-python test-install test-fuzz
	@echo "make test: all test groups passed"

test-rust:
	$(CARGO) test --workspace --no-fail-fast

test-c: debug
	$(MAKE) -C examples-c LIBDIR=$(abspath $(DBG)) run

test-python: debug
	LAYERSEC_LIB=$(abspath $(DBG))/liblayersec.so $(PYTHON) -m pytest -q bindings/python/tests

# Install the debug build into a temporary prefix; build and run the C examples against it
# through pkg-config.
test-install: debug
	bash scripts/test-install.sh $(abspath $(DBG))

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
	bash scripts/bench-server.sh
	bash scripts/bench-client.sh
	bash scripts/bench-lockout.sh

install: build install-files

# The files only, from $(REL) (override REL to install another build).
install-files:
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 $(REL)/liblayersec.so $(DESTDIR)$(LIBDIR)/liblayersec.so.$(VERSION)
	ln -sf liblayersec.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblayersec.so.$(MAJOR)
	ln -sf liblayersec.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/liblayersec.so
	install -m 0644 $(REL)/liblayersec.a $(DESTDIR)$(LIBDIR)/liblayersec.a
	install -m 0644 include/layersec.h $(DESTDIR)$(INCDIR)/layersec.h
	install -m 0755 $(REL)/layersec $(DESTDIR)$(BINDIR)/layersec
	install -m 0755 $(REL)/layersec-server $(DESTDIR)$(BINDIR)/layersec-server
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' layersec.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/layersec.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/liblayersec.so* $(DESTDIR)$(LIBDIR)/liblayersec.a \
	      $(DESTDIR)$(INCDIR)/layersec.h $(DESTDIR)$(BINDIR)/layersec $(DESTDIR)$(BINDIR)/layersec-server \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/layersec.pc

clean:
	$(CARGO) clean
	$(MAKE) -C examples-c clean
	rm -rf fuzz/target fuzz/artifacts
