# modrwkv build. `make` builds the library, the `modrwkv` command, tests and benchmarks into $(BUILD).
#   make test                 build and run the tests
#   make SAN=1 BUILD=build-asan test   the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz                 build the libFuzzer harnesses (clang) into build-fuzz/
# ARCH defaults to the build machine's instruction set (-march=native); the kernels pick their SIMD paths
# at compile time and fall back to portable C.
BUILD ?= build
CC ?= gcc
SAN ?= 0
OPT ?= -O3
ARCH ?= -march=native

CFLAGS_ALL = -std=gnu11 $(OPT) $(ARCH) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
             -Iinclude -Isrc -MMD -MP $(CFLAGS)
LDFLAGS_ALL = -fopenmp $(LDFLAGS)
LDLIBS_ALL = -lcjson -lstb -lsndfile -lsoxr -lfftw3f -lm $(LDLIBS)
ifeq ($(SAN),1)
  OPT = -O1
  CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DMRW_SANITIZE=1
  LDFLAGS_ALL += -fsanitize=address,undefined
endif

LIB_SRC   := $(shell find src -name '*.c' -not -path 'src/tools/*' | sort)
TOOL_SRC  := $(sort $(wildcard src/tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libmodrwkv.a
TOOL     := $(BUILD)/modrwkv
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# Each fuzz harness also builds as a plain program that replays its committed corpus (run by the tests).
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz-replay/%)

.PHONY: all lib tool tests bench test fuzz clean
all: $(TOOL) $(TESTS) $(BENCHES) $(FUZZ_REPLAY)
lib: $(LIB)
tool: $(TOOL)
tests: $(TESTS) $(FUZZ_REPLAY) $(TOOL)
bench: $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The quantizers must round exactly as llama.cpp's reference code does (x*id, then +8.5): no fused multiply-add.
$(BUILD)/obj/src/tensor/dtype.o: CFLAGS_ALL += -ffp-contract=off

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(TOOL): $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c tests/test.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $< $(LIB) -o $@ $(LDLIBS_ALL)

# Benchmarks may compare against OpenBLAS (the encoder GEMM rate); the library itself does not use it.
BENCH_LDLIBS = $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
BENCH_CFLAGS = $(shell pkg-config --cflags openblas 2>/dev/null)
$(BUILD)/bench/%: bench/%.c bench/bench_machine.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BENCH_CFLAGS) $(LDFLAGS_ALL) $< $(LIB) -o $@ $(LDLIBS_ALL) $(BENCH_LDLIBS)

$(BUILD)/fuzz-replay/%: fuzz/%.c fuzz/replay_main.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) $< fuzz/replay_main.c $(LIB) -o $@ $(LDLIBS_ALL)

test: tests
	./tests/run.sh $(BUILD)

# libFuzzer builds (clang): make fuzz, then e.g. build-fuzz/fuzz_gguf -max_total_time=600 fuzz/corpus/gguf
FUZZ_BUILD = build-fuzz
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD)/lib CC=clang OPT=-O1 \
	  CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" lib
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f -> $(FUZZ_BUILD)/$$n"; \
	  clang -std=gnu11 -O1 -g -Iinclude -Isrc -fopenmp -fsanitize=fuzzer,address,undefined $$f \
	    $(FUZZ_BUILD)/lib/libmodrwkv.a -o $(FUZZ_BUILD)/$$n -lcjson -lstb -lsndfile -lsoxr -lfftw3f -lm || exit 1; done

clean:
	rm -rf $(BUILD) build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
