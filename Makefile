# pgark — top-level build.
#
#   make            build build/pgark
#   make check      unit + integration tests (as root: installs deps, runs as a test user)
#   make asan       AddressSanitizer + UBSan build in build-asan/ (with clang: SAN_CC)
#   make install    PREFIX (default /usr/local), DESTDIR honoured; the systemd units go
#                   to UNITDIR ($(PREFIX)/lib/systemd/system)
#   make deps       install missing Debian packages (root), else print the apt-get line
#   make deb        build/deb/pgark_<version>_<arch>.deb with dpkg-buildpackage (debian/)
#   make bench      benchmarks against pg_basebackup, pg_receivewal, pgbackrest
#   make demo       throwaway cluster + receiver + backup + point-in-time restore
#   make fuzz       each libFuzzer harness of tests/fuzz for FUZZ_SECONDS (default 60)
#   make layers     check that every #include points down the layers (tests/harness/layers.pl)
#   make names      check that each function prefix and struct tag has one owner (tests/harness/names.pl)
#
# BUILD selects the output directory, so several builds can live side by side.

# Every core unless a -j was given: a cold build is ~130 independent compiles.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
BUILD   ?= build
CC      ?= cc
PKGS    := yaml-0.1 jansson
# libcurl, libpq, libcrypto and libzstd: headers only. They are dlopen'ed on first use
# (src/http/curl_dl.c, src/pg/pq_dl.c, src/crypto/crypto_dl.c, src/compress/zstd_dl.c),
# so that wal-fetch, run once per WAL segment and often only renaming a file the
# read-ahead fetched, does not load them (and the ~30 libraries libcurl and libpq pull in).
DL_PKGS := libpq libcurl libcrypto libzstd

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(DL_PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O2
SANITIZE ?=
# The sanitizer build uses clang: its UBSan also stops at arithmetic on NULL (NULL + 0),
# which gcc's lets pass.
SAN_CC   ?= clang
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) $(SANITIZE) \
              -Iinclude $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(SANITIZE) $(LDFLAGS)
LIBS_ALL := $(PKG_LIBS) -lpthread -lm

LIB_SRC  := $(sort $(shell find src walreceiver -name '*.c' ! -path src/main.c 2>/dev/null))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_LIB := $(sort $(wildcard tests/unit/lib/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)
# Harnesses link libFuzzer's main (clang only: built with CC=$(SAN_CC)).
FUZZ_LINK := -fsanitize=fuzzer,address,undefined
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

.PHONY: all unit tools fuzzers fuzz check check-local asan install install-systemd uninstall clean \
        deps bench \
        demo format format-check layers names deb

all: $(BUILD)/pgark $(BUILD)/pgark.1

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libpgark.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pgark: $(BUILD)/src/main.o $(BUILD)/libpgark.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

# The man page is pgark's own help text (pgark help --man): one source.
$(BUILD)/pgark.1: $(BUILD)/pgark
	$(BUILD)/pgark help --man >$@.tmp && mv $@.tmp $@

$(BUILD)/tests/unit/%: tests/unit/%.c $(UNIT_LIB) $(BUILD)/libpgark.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit/lib $(LDFLAGS_ALL) -o $@ $< $(UNIT_LIB) \
	    $(BUILD)/libpgark.a $(LIBS_ALL) -lcmocka

# the tools may use the unit tests' fault proxy (s3proxy runs it as a process)
TOOL_LIB := tests/unit/lib/faultproxy.c

$(BUILD)/tests/tools/%: tests/tools/%.c $(TOOL_LIB) $(BUILD)/libpgark.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit/lib $(LDFLAGS_ALL) -o $@ $< $(TOOL_LIB) $(BUILD)/libpgark.a \
	    $(LIBS_ALL)

$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(BUILD)/libpgark.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(FUZZ_LINK) -o $@ $< $(BUILD)/libpgark.a $(LIBS_ALL)

unit: $(UNIT_BIN)
tools: $(TOOL_BIN)
fuzzers: $(FUZZ_BIN)

# The harnesses over a library built with coverage for libFuzzer (and
# FUZZ_SECONDS each, one after the other; FUZZ_TARGETS="tar manifest" picks some).
# Inputs found go to build-fuzz/corpus, crashes to build-fuzz/crashes.
fuzz:
	$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(SAN_CC) OPT=-O1 \
	    SANITIZE="$(SAN_FLAGS) -fsanitize=fuzzer-no-link" fuzzers
	sh tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# make check: as root, installs what is missing and re-runs itself as an
# unprivileged user (PostgreSQL refuses root); otherwise runs the suite here.
check:
	@sh tests/harness/check.sh

# The suite itself, run as the unprivileged user: one prove run over the C
# unit tests (plain and sanitizer builds) and the Perl integration tests; the
# sanitizer build of pgark itself serves the tests that look for one (016), and its
# library the fuzzing harnesses that 090_fuzz_smoke.pl runs for a few seconds each.
check-local: all unit tools
	$(MAKE) --no-print-directory BUILD=$(BUILD)-asan CC=$(SAN_CC) OPT=-O1 \
	    SANITIZE="$(SAN_FLAGS)" all unit fuzzers
	PGARK_BUILD=$(CURDIR)/$(BUILD) sh tests/harness/prove.sh

asan:
	$(MAKE) BUILD=build-asan CC=$(SAN_CC) OPT=-O1 SANITIZE="$(SAN_FLAGS)" all unit tools

install: all
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(BUILD)/pgark $(DESTDIR)$(BINDIR)/pgark
	install -d $(DESTDIR)$(PREFIX)/share/pgark
	install -m 0644 conf/pgark.yaml $(DESTDIR)$(PREFIX)/share/pgark/pgark.yaml.example
	install -m 0644 conf/drill-checks.sql $(DESTDIR)$(PREFIX)/share/pgark/drill-checks.sql.example
	install -m 0644 contrib/prometheus/pgark-alerts.yml $(DESTDIR)$(PREFIX)/share/pgark/pgark-alerts.yml
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(BUILD)/pgark.1 $(DESTDIR)$(MANDIR)/man1/pgark.1
	$(MAKE) --no-print-directory install-systemd

# The units of contrib/systemd name /usr/local/bin/pgark: installed, they name $(BINDIR)'s.
SYSTEMD_UNITS := $(sort $(wildcard contrib/systemd/*.service contrib/systemd/*.timer))

install-systemd:
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(SYSTEMD_UNITS); do \
	    sed 's|/usr/local/bin/pgark|$(BINDIR)/pgark|g' $$u >$(DESTDIR)$(UNITDIR)/$${u##*/} && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done

# The Debian package, built by dpkg-buildpackage in a copy of the tree under $(BUILD)/deb:
# it writes its outputs (.deb, .buildinfo, .changes) next to the source directory, here
# $(BUILD)/deb rather than the tree's parent. The copy leaves out build output and .git,
# as tests/harness/check.sh does, and the tests' s3rver, and is made afresh each time (a
# clean build). dpkg-buildpackage gets none of the variables given to this make (BUILD=,
# CFLAGS=, in MAKEFLAGS): debian/rules sets its own.
PGARK_VERSION := $(shell sed -n 's/^\#define PGARK_VERSION "\(.*\)"$$/\1/p' include/pgark/version.h)
DEB_SRC := $(BUILD)/deb/pgark-$(PGARK_VERSION)

deb:
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version) && [ "$$v" = "$(PGARK_VERSION)" ] || \
	    { echo "make deb: debian/changelog is at $$v, include/pgark/version.h at $(PGARK_VERSION):" \
	        "add a changelog entry (dch -v $(PGARK_VERSION))" >&2; exit 1; }
	rm -rf $(BUILD)/deb
	mkdir -p $(DEB_SRC)
	set --; for e in * .[!.]*; do \
	    case "$$e" in build | build-* | build_* | .git | tmp_check) continue ;; esac; \
	    set -- "$$@" "$$e"; \
	done; tar --anchored --exclude=tests/harness/s3 --exclude=tests/harness/node_modules \
	    -cf - "$$@" | tar -C $(DEB_SRC) -xf -
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL dpkg-buildpackage -b -us -uc
	@echo "make deb: $(BUILD)/deb/pgark_$(PGARK_VERSION)_$$(dpkg --print-architecture).deb"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pgark $(DESTDIR)$(MANDIR)/man1/pgark.1
	rm -f $(SYSTEMD_UNITS:contrib/systemd/%=$(DESTDIR)$(UNITDIR)/%)
	rm -rf $(DESTDIR)$(PREFIX)/share/pgark

deps:
	@sh tests/harness/deps.sh

bench: all tools
	@sh tests/harness/deps.sh bench
	@sh tests/bench/run.sh

demo:
	@sh contrib/demo.sh

layers:
	@perl tests/harness/layers.pl

names:
	@perl tests/harness/names.pl

FORMAT_FILES = $$(find src walreceiver include tests/unit tests/tools tests/fuzz -name '*.[ch]')

format:
	clang-format -i $(FORMAT_FILES)

# What make format would change, as errors naming file and line (tests/t/002 runs it).
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/main.d
