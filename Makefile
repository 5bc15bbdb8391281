# modrwkv build. `make` builds the library, the `modrwkv` command, tests and benchmarks into $(BUILD).
#   make test                 build and run the tests
#   make SAN=1 BUILD=build-asan test   the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz                 build the libFuzzer harnesses (clang) into build-fuzz/
# ARCH defaults to the build machine's instruction set (-march=native); the kernels pick their SIMD paths
# at compile time and fall back to portable C.
# CUDA=1 builds into build-cuda/ by default (the CUDA block below), so it never mixes with the CPU-only tree.
ifeq ($(CUDA),1)
  BUILD ?= build-cuda
endif
BUILD ?= build
CC ?= gcc
SAN ?= 0
OPT ?= -O3
ARCH ?= -march=native

CFLAGS_ALL = -std=gnu11 $(OPT) $(ARCH) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
             -Iinclude -Isrc -MMD -MP $(CFLAGS)
LDFLAGS_ALL = -fopenmp $(LDFLAGS)
LDLIBS_ALL = -lcjson -lstb -lsndfile -lsoxr -lfftw3f -lmicrohttpd -lpthread -lm $(LDLIBS)
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

# ------------------------------------------------------------------------------------------------ CUDA
# Off unless CUDA=1; without it nothing above or below changes except the cuda-* targets existing.
#   make CUDA=1 -j2              library, tool and CPU tests with the CUDA kernels (src/kernels/cuda/*.cu), in build-cuda/
#   make CUDA=1 cuda-tests       the GPU test drivers tests/cuda/*.cu (run build-cuda/tests/cuda/test_cuda_ops on a GPU)
#   make CUDA=1 cuda-bench       the GPU benchmarks bench/cuda/*.cu
#   make cuda-check              compile every .cu file only (needs nvcc, no GPU): what CI runs
# CUDA_GENCODE: sm_90 machine code (H100/H200) plus compute_80 PTX so Ampere and newer GPUs can JIT it.
NVCC ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))
CUDA_GENCODE ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS_ALL = -std=c++17 -O3 $(CUDA_GENCODE) -g -lineinfo -Xcompiler -Wall,-Wno-unused-parameter \
                -Iinclude -Isrc -MMD -MP $(NVCCFLAGS)
comma := ,
CUDA_LDLIBS   = -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart_static -ldl -lrt -lpthread -lstdc++
CU_SRC       := $(sort $(shell find src/kernels/cuda -name '*.cu' 2>/dev/null))
CU_TEST_SRC  := $(sort $(wildcard tests/cuda/*.cu))
CU_BENCH_SRC := $(sort $(wildcard bench/cuda/*.cu))
CU_OBJ       := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CU_TESTS     := $(CU_TEST_SRC:%.cu=$(BUILD)/%)
CU_BENCHES   := $(CU_BENCH_SRC:%.cu=$(BUILD)/%)
ifeq ($(CUDA),1)
  LIB_OBJ    += $(CU_OBJ)
  CFLAGS_ALL += -DMRW_CUDA=1
  LDLIBS_ALL += $(CUDA_LDLIBS)
endif
# (the cuda-* rules are at the end, so that `all` stays the default goal)
# ---------------------------------------------------------------------------------------------- end CUDA

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
	rm -rf $(BUILD) build-asan build-fuzz build-cuda

# ------------------------------------------------------------------------------------------ CUDA rules
.PHONY: cuda-check cuda-tests cuda-bench
cuda-check: $(CU_OBJ) $(CU_TEST_SRC:%.cu=$(BUILD)/obj/%.o) $(CU_BENCH_SRC:%.cu=$(BUILD)/obj/%.o)
cuda-tests: $(CU_TESTS)
cuda-bench: $(CU_BENCHES)

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_ALL) -c $< -o $@

# The drivers link the CUDA objects and the one library object they use (error reporting), so they build
# without CUDA=1 and without the library's other dependencies, and run on any x86-64 machine with a driver
# (cudart is linked statically; cuBLAS, which the toolkit ships only as a shared library here, dynamically).
# The host C files they link (error reporting, the GPU trainer's parameter table, and the CPU trainer that
# test_train_gpu checks the GPU trainer against) are compiled for baseline x86-64 (no -march=native: the GPU
# machine's processor may differ) into obj-cuhost/, with libgomp linked statically.
CU_HOST_SRC := src/base/error.c src/train/params.c src/train/optim.c src/train/rwkv7_train.c src/train/rwkv7_layout.c \
               src/train/wkv7_train.c src/train/dist.c \
               src/kernels/cpu/gemm_train.c src/kernels/cpu/kctx.c src/ts/wavenet_config.c
CU_HOST_OBJ := $(CU_HOST_SRC:%.c=$(BUILD)/obj-cuhost/%.o)
.SECONDARY: $(CU_HOST_OBJ)
LIBGOMP_A   := $(shell $(CC) -print-file-name=libgomp.a)
$(BUILD)/obj-cuhost/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -fopenmp -Wall -Wno-unused-parameter -Iinclude -Isrc -MMD -MP -c $< -o $@
CU_LINK = $(NVCC) $(CUDA_GENCODE) $^ $(LIBGOMP_A) -lcublas -lcublasLt -lpthread -ldl -o $@
$(BUILD)/tests/cuda/%: $(BUILD)/obj/tests/cuda/%.o $(CU_OBJ) $(CU_HOST_OBJ)
	@mkdir -p $(dir $@)
	$(CU_LINK)
$(BUILD)/bench/cuda/%: $(BUILD)/obj/bench/cuda/%.o $(CU_OBJ) $(CU_HOST_OBJ)
	@mkdir -p $(dir $@)
	$(CU_LINK)
# test_decode_gpu checks the GPU decoder against the CPU model, so it links the whole library (make CUDA=1 first;
# on the GPU machine it needs the library's shared dependencies: build-cuda/gpulibs, see docs/CUDA.md).
$(BUILD)/tests/cuda/test_decode_gpu: $(BUILD)/obj/tests/cuda/test_decode_gpu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL) $(CUDA_LDLIBS)
# test_modrwkv_gpu checks the GPU adapter and ViT against the CPU ones (mrw_tadapter, mrw_vit): the same link.
$(BUILD)/tests/cuda/test_modrwkv_gpu: $(BUILD)/obj/tests/cuda/test_modrwkv_gpu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL) $(CUDA_LDLIBS)
# test_vit_train_gpu checks the GPU ViT trainer against the CPU one (mrw_vit_train): the same link.
$(BUILD)/tests/cuda/test_vit_train_gpu: $(BUILD)/obj/tests/cuda/test_vit_train_gpu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL) $(CUDA_LDLIBS)
# test_whisper_train_gpu checks the GPU Whisper trainer against the CPU one (mrw_whisper_train): the same link.
$(BUILD)/tests/cuda/test_whisper_train_gpu: $(BUILD)/obj/tests/cuda/test_whisper_train_gpu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL) $(CUDA_LDLIBS)
# test_wavenet_gpu checks the GPU WaveNet encoder against the CPU one (mrw_wavenet): the same link.
$(BUILD)/tests/cuda/test_wavenet_gpu: $(BUILD)/obj/tests/cuda/test_wavenet_gpu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $^ -o $@ $(LDLIBS_ALL) $(CUDA_LDLIBS)
# Host-side AddressSanitizer + UBSan build of the test drivers (device code as above; compute-sanitizer checks
# that). Run on the GPU machine with ASAN_OPTIONS=protect_shadow_gap=0 (the CUDA driver maps into ASan's gap).
.PHONY: cuda-tests-asan
cuda-tests-asan: $(filter-out %/test_decode_gpu_asan %/test_modrwkv_gpu_asan %/test_vit_train_gpu_asan %/test_whisper_train_gpu_asan %/test_wavenet_gpu_asan,$(CU_TEST_SRC:tests/cuda/%.cu=$(BUILD)/tests/cuda/%_asan))
CU_ASAN = -fsanitize=address -fsanitize=undefined -fno-omit-frame-pointer
$(BUILD)/tests/cuda/%_asan: tests/cuda/%.cu $(wildcard tests/cuda/*.inc) $(CU_OBJ) $(CU_HOST_SRC)
	@mkdir -p $(dir $@)
	$(NVCC) -std=c++17 -O1 -g -Iinclude -Isrc -Xcompiler "$(subst $(eval) ,$(comma),$(CU_ASAN))" -c $< -o $@.o
	@for f in $(CU_HOST_SRC); do $(CC) $(CU_ASAN) -std=gnu11 -O1 -g -fopenmp -Iinclude -Isrc -c $$f \
	  -o $@.$$(basename $$f .c).o || exit 1; done
	$(CXX) $(CU_ASAN) $@.o $(CU_OBJ) $(foreach f,$(CU_HOST_SRC),$@.$(basename $(notdir $(f))).o) $(LIBGOMP_A) \
	  -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart_static -ldl -lrt -lpthread -o $@
# -------------------------------------------------------------------------------------- end CUDA rules

-include $(shell find $(BUILD)/obj $(BUILD)/obj-cuhost -name '*.d' 2>/dev/null)
