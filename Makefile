# agentsession: build, test, demo, bench.
#   make          build build/agentsession/core.so (for Lua 5.4)
#   make LUA=luajit   the module for another Lua: lua5.1, lua5.2, lua5.3 or luajit, in build/<lua>/
#   make modules  the module for every Lua the module supports
#   make test     install missing Debian packages, build, lint, run every test
#   make demo     install missing Debian packages, build, run the quickstart, show its store
#   make bench    the benchmark (ratios against lua-cjson and a plain-Lua manager), the command's, float-proof
#   make float-proof  the float writer against an exact shortest search, FLOAT_PROOF_COUNT values
#   make sanitize the C tests and every spec with AddressSanitizer and UBSan
#   make valgrind the C tests and every spec under valgrind memcheck
#   make fuzz     the libFuzzer targets, each for FUZZ_SECONDS (default 60)
#   make dist     build/dist/agentsession-VERSION.tar.gz (HEAD's tracked files) and its rockspec
#   make docs     the reference (LDoc) in build/docs/; any LDoc warning fails it
#   make lib      the C library without Lua: build/lib/libagentsession.a and .so
#   make lua-lib  build/lib/libagentsession_lua.a: the Lua module, for hosts that embed Lua
#   make install PREFIX=/usr/local [DESTDIR=]   the C library, agentsession.h, agentsession.pc
#   make install-lua PREFIX=… [DESTDIR=]       libagentsession_lua.a, agentsession_lua.h, agentsession-lua.pc
#   make uninstall PREFIX=… [DESTDIR=]         removes what both installed
#   make host-examples  the C hosts of examples/host, built with pkg-config against an installed copy

# The library's version: init.lua, the release rockspec, CHANGELOG.md and the C header must
# agree with it (make version-check, part of make test).
VERSION = 0.1.0

LUA ?= lua5.4
# Every Lua the module builds for; make test runs the specs on each of LUAS (make spec
# LUAS=luajit: on one), and needs every build (a spec loads each build into each Lua).
ALL_LUAS = lua5.1 lua5.2 lua5.3 lua5.4 luajit
LUAS = $(ALL_LUAS)
# Each Lua's module and binding objects in a directory of their own: Lua 5.4's in build/,
# the others' in build/<lua>/. The core has no Lua in it: its objects serve every build.
LUA_BUILD = $(if $(filter lua5.4,$(LUA)),build,build/$(LUA))
LUA_INC ?= $(if $(filter luajit,$(LUA)),/usr/include/luajit-2.1,/usr/include/$(LUA))
CC ?= gcc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) $(CFLAGS)
LDLIBS = -luuid -lsqlite3 -lhiredis

CORE_SRC = $(wildcard csrc/core/*.c)
LUA_SRC = $(wildcard csrc/lua/*.c)
CORE_OBJ = $(CORE_SRC:csrc/%.c=build/obj/%.o)
LUA_OBJ = $(LUA_SRC:csrc/%.c=$(LUA_BUILD)/obj/%.o)
MODULE = $(LUA_BUILD)/agentsession/core.so
# The agentsession command of this checkout: bin/agentsession run by $(LUA) with this build.
CLI = $(LUA_BUILD)/bin/agentsession

# Debian packages: what the build, the tests and the tools need.
DEBS = git gcc g++ make pkg-config lua5.4 liblua5.4-dev lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev \
	lua5.3 liblua5.3-dev luajit libluajit-5.1-dev lua-compat53-dev neovim love lua-cjson uuid-dev libsqlite3-dev \
	lua-sql-sqlite3 lua-busted lua-check luarocks libhiredis-dev redis-server lua-ldoc lua-argparse

# The C library: the core and csrc/lib (agentsession.h), without Lua.
SOVERSION = $(firstword $(subst ., ,$(VERSION)))
LIB_SRC = csrc/lib/agentsession.c csrc/lib/agentsession_read.c
LIB_OBJ = $(LIB_SRC:csrc/%.c=build/obj/%.o)
LIB_A = build/lib/libagentsession.a
LIB_SONAME = libagentsession.so.$(SOVERSION)
LIB_SO_FILE = libagentsession.so.$(VERSION)
LIB_SO = build/lib/libagentsession.so
# The Lua module for hosts that embed Lua: the binding, the core and the Lua layer in one archive.
LUALIB_OBJ = $(LUA_BUILD)/obj/lib/agentsession_lua.o
LUALIB_A = $(LUA_BUILD)/lib/libagentsession_lua.a
LUA_CHUNKS = build/gen/agentsession_lua_chunks.h
LD ?= ld
OBJCOPY ?= objcopy
AR ?= ar
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL ?= install
CAPI_TEST = build/capi_test

RUN_ENV = LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/?.so;;'

CORE_TEST = build/core_test
FAULT_TEST = build/fault_test
FLOAT_TEST = build/float_test
# Random doubles float_test checks in make test, and in make float-proof; FLOAT_SEED picks others.
FLOAT_COUNT ?= 100000
FLOAT_PROOF_COUNT ?= 1000000
FLOAT_SEED ?= 0

# Extra Debian packages of the hardening targets.
VALGRIND_DEBS = valgrind
FUZZ_DEBS = clang libclang-rt-14-dev
FUZZ_SECONDS ?= 60

.PHONY: all modules deps test check lint docs spec ctest rock dist version-check demo bench float-proof \
	clean sanitize valgrind fuzz lib install uninstall lua-lib install-lua host-examples

all: $(MODULE) $(CLI)

$(MODULE): $(CORE_OBJ) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

build/obj/core/%.o: csrc/core/%.c $(wildcard csrc/core/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LUA_BUILD)/obj/lua/%.o: csrc/lua/%.c $(wildcard csrc/core/*.h csrc/lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(LUA_INC) -c -o $@ $<

$(CLI): tools/cli-wrapper.sh
	sh tools/cli-wrapper.sh $@ $(LUA) $(LUA_BUILD)

modules:
	@for l in $(ALL_LUAS); do $(MAKE) --no-print-directory LUA=$$l all || exit 1; done

build/obj/lib/%.o: csrc/lib/%.c $(wildcard csrc/core/*.h csrc/lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LUALIB_OBJ): csrc/lib/agentsession_lua.c csrc/lib/agentsession_lua.h $(LUA_CHUNKS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(LUA_INC) -I$(dir $(LUA_CHUNKS)) -c -o $@ $<

LUA_LAYER = $(sort $(wildcard lua/agentsession/*.lua lua/agentsession/*/*.lua))

$(LUA_CHUNKS): $(LUA_LAYER) tools/embed-lua.sh
	@mkdir -p $(dir $@)
	sh tools/embed-lua.sh $@ $(LUA_LAYER)

lib: $(LIB_A) $(LIB_SO)

lua-lib: $(LUALIB_A)

# An archive holds one object linked from all of its own, in which every
# symbol but the public ones is made local: a host linking both archives, or
# code of its own named like an internal function, meets no clash.
define prelink
	@mkdir -p $(dir $@) build/obj/prelink
	$(LD) -r -o build/obj/prelink/$(notdir $@).o $^
	$(OBJCOPY) --localize-hidden build/obj/prelink/$(notdir $@).o
	rm -f $@
	$(AR) rcs $@ build/obj/prelink/$(notdir $@).o
endef

$(LIB_A): $(CORE_OBJ) $(LIB_OBJ)
	$(prelink)

$(LUALIB_A): $(CORE_OBJ) $(LUA_OBJ) $(LUALIB_OBJ)
	$(prelink)

build/lib/$(LIB_SO_FILE): $(CORE_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(LIB_SONAME) -Wl,--no-undefined -o $@ $^ $(LDFLAGS) $(LDLIBS) -lm

$(LIB_SO): build/lib/$(LIB_SO_FILE)
	ln -sf $(LIB_SO_FILE) build/lib/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $@

# agentsession.pc or agentsession-lua.pc for the PREFIX being installed to.
define write_pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@LUA@|$(LUA)|' $(1) > $(2)
endef

install: lib
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 csrc/lib/agentsession.h $(DESTDIR)$(INCLUDEDIR)/agentsession.h
	$(INSTALL) -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libagentsession.a
	$(INSTALL) -m 755 build/lib/$(LIB_SO_FILE) $(DESTDIR)$(LIBDIR)/$(LIB_SO_FILE)
	ln -sf $(LIB_SO_FILE) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $(DESTDIR)$(LIBDIR)/libagentsession.so
	$(call write_pc,csrc/lib/agentsession.pc.in,$(DESTDIR)$(PKGCONFIGDIR)/agentsession.pc)

install-lua: lua-lib
	$(INSTALL) -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 csrc/lib/agentsession_lua.h $(DESTDIR)$(INCLUDEDIR)/agentsession_lua.h
	$(INSTALL) -m 644 $(LUALIB_A) $(DESTDIR)$(LIBDIR)/libagentsession_lua.a
	$(call write_pc,csrc/lib/agentsession-lua.pc.in,$(DESTDIR)$(PKGCONFIGDIR)/agentsession-lua.pc)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/agentsession.h $(DESTDIR)$(INCLUDEDIR)/agentsession_lua.h \
		$(DESTDIR)$(LIBDIR)/libagentsession.a $(DESTDIR)$(LIBDIR)/libagentsession_lua.a \
		$(DESTDIR)$(LIBDIR)/$(LIB_SO_FILE) $(DESTDIR)$(LIBDIR)/$(LIB_SONAME) \
		$(DESTDIR)$(LIBDIR)/libagentsession.so \
		$(DESTDIR)$(PKGCONFIGDIR)/agentsession.pc $(DESTDIR)$(PKGCONFIGDIR)/agentsession-lua.pc

# The C hosts of examples/host, built against an installed copy (see the script).
host-examples:
	CC="$(CC)" CXX="$(CXX)" CFLAGS="$(CFLAGS)" LDFLAGS="$(LDFLAGS)" sh tools/host-examples.sh

deps:
	@sh tools/deps.sh $(DEBS)

test: deps
	@$(MAKE) --no-print-directory check

check: all lint docs version-check ctest fuzz-replay rock host-examples spec

lint:
	luacheck -q lua spec examples bench tests fuzz tools

# LDoc reads config.ld; what it prints on standard output is progress, on standard error
# warnings, and a warning fails the target.
docs:
	@sh tools/deps.sh lua-ldoc
	@rm -rf build/docs && mkdir -p build
	@ldoc --fatalwarnings --testing . >/dev/null 2>build/ldoc.log; status=$$?; cat build/ldoc.log >&2; \
	  if [ $$status -ne 0 ] || [ -s build/ldoc.log ]; then echo "make docs: LDoc warned (above)" >&2; exit 1; fi
	@echo "docs: build/docs/index.html, no warning"

# The suite on every Lua of LUAS (make spec LUAS=luajit: on one), each with its own module.
spec: modules $(CAPI_TEST)
	sh tools/spec-each.sh $(LUAS)

ctest: $(CORE_TEST) $(FAULT_TEST) $(FLOAT_TEST) $(CAPI_TEST)
	$(CORE_TEST)
	$(CAPI_TEST)
	$(RUN_ENV) $(FAULT_TEST)
	$(FLOAT_TEST) $(FLOAT_COUNT) $(FLOAT_SEED)

$(CORE_TEST): tests/core_test.c $(CORE_OBJ)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(CAPI_TEST): tests/capi_test.c $(CORE_OBJ) $(LIB_OBJ)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(FLOAT_TEST): tests/float_test.c $(CORE_OBJ)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lm

$(FAULT_TEST): tests/fault_test.c $(CORE_OBJ) $(LUA_OBJ)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) -I$(LUA_INC) $(LDFLAGS) -o $@ $^ -llua5.4 $(LDLIBS) -lm

sanitize: deps
	sh tools/sanitize.sh

valgrind: deps
	@sh tools/deps.sh $(VALGRIND_DEBS)
	sh tools/valgrind.sh

fuzz: deps
	@sh tools/deps.sh $(FUZZ_DEBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tools/fuzz.sh

version-check:
	@$(LUA) tools/version-check.lua $(VERSION)

# luarocks make, make dist, luarocks pack and install, offline, in a scratch directory.
rock:
	@sh tools/rock-check.sh $(VERSION)

dist:
	@sh tools/dist.sh $(VERSION) build/dist

# The quickstart's store ($$AGENTSESSION_STORE or agentsession-demo.db), then the command
# showing it: its sessions, and the transcript of the latest.
DEMO_STORE = $${AGENTSESSION_STORE:-agentsession-demo.db}
demo: deps
	@$(MAKE) --no-print-directory all
	$(RUN_ENV) $(LUA) examples/quickstart.lua
	@echo; echo '$$ agentsession list'
	@$(CLI) --store "$(DEMO_STORE)" list
	@id=$$($(CLI) --store "$(DEMO_STORE)" list --limit 1 --json | sed -n 's/^{"id":"\([^"]*\)".*/\1/p') && \
	  echo && echo "$$ agentsession show $$id" && $(CLI) --store "$(DEMO_STORE)" show "$$id"

# The whole benchmark on Lua 5.4 and on LuaJIT, then its main rows on every Lua of LUAS in one
# table, then the command's benchmark.
bench: modules
	$(RUN_ENV) lua5.4 bench/bench.lua
	LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/luajit/?.so;;' luajit bench/bench.lua
	$(RUN_ENV) lua5.4 bench/table.lua $(LUAS)
	$(RUN_ENV) $(LUA) bench/cli_bench.lua
	@$(MAKE) --no-print-directory float-proof

float-proof: $(FLOAT_TEST)
	$(FLOAT_TEST) $(FLOAT_PROOF_COUNT) $(FLOAT_SEED)

# The fuzz targets' replay over their corpus and regressions (gcc, no libFuzzer).
include fuzz/fuzz.mk

# Also what luarocks make leaves in a checkout: objects beside the sources, agentsession/core.so.
clean:
	rm -rf build
	rm -f csrc/*/*.o agentsession/core.so
	@rmdir agentsession 2>/dev/null || true
