# The fuzz targets (fuzz/<target>.c) built with $(CC) against fuzz/replay.c
# instead of libFuzzer, and run over their checked-in corpus and regressions:
# make fuzz-replay (part of make check). The libFuzzer build and runs are
# tools/fuzz.sh (make fuzz). Included by the top Makefile, whose CC, CFLAGS,
# WARN, LDFLAGS, LDLIBS, LUA_INC, CORE_OBJ, LUA_OBJ and LIB_OBJ this uses.
FUZZ_REPLAY_DIR = build/fuzz-replay
FUZZ_REPLAY_LUA_TARGETS = json_decode json_encode
FUZZ_REPLAY_TARGETS = $(FUZZ_REPLAY_LUA_TARGETS) sqlite_load session_json
FUZZ_REPLAY_BINS = $(FUZZ_REPLAY_TARGETS:%=$(FUZZ_REPLAY_DIR)/%)
FUZZ_REPLAY_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS)

$(FUZZ_REPLAY_LUA_TARGETS:%=$(FUZZ_REPLAY_DIR)/%): $(FUZZ_REPLAY_DIR)/%: fuzz/%.c fuzz/replay.c \
		$(CORE_OBJ) $(LUA_OBJ) $(wildcard csrc/core/*.h csrc/lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_REPLAY_CFLAGS) -I$(LUA_INC) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) -llua5.4 $(LDLIBS) -lm

$(FUZZ_REPLAY_DIR)/sqlite_load: fuzz/sqlite_load.c fuzz/replay.c $(CORE_OBJ) $(wildcard csrc/core/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_REPLAY_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lm

$(FUZZ_REPLAY_DIR)/session_json: fuzz/session_json.c fuzz/replay.c $(CORE_OBJ) $(LIB_OBJ) \
		$(wildcard csrc/core/*.h csrc/lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_REPLAY_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lm

fuzz-replay-build: $(FUZZ_REPLAY_BINS)

# Each target over fuzz/corpus/<target> and fuzz/regressions/<target>; an input
# that fails aborts its target and fails the build. FUZZ_RUNNER (empty by
# default) runs each replay under a tool: make valgrind sets it to valgrind.
fuzz-replay: $(FUZZ_REPLAY_BINS)
	@for t in $(FUZZ_REPLAY_TARGETS); do \
		$(FUZZ_RUNNER) $(FUZZ_REPLAY_DIR)/$$t fuzz/corpus/$$t fuzz/regressions/$$t || exit 1; \
	done
.PHONY: fuzz-replay fuzz-replay-build
