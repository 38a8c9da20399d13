# RS-MoE engine build.  `make` builds everything (release, -O3 -march=native).
# `make test` builds the sanitizer build (ASan+UBSan) and runs every test.
# Options: BLAS=0 to build without OpenBLAS (own GEMM only).
CC      ?= cc
BLAS    ?= $(shell pkg-config --exists openblas && echo 1 || echo 0)
BUILD   ?= build
MODE    ?= release

PKGS := libjpeg libpng libtiff-4 libcjson libmicrohttpd
# OpenBLAS is opened at run time (dlopen), only where rs_sgemm gives it work: linked, its worker
# threads start with the process and spin for ~70 ms beside ours even when it is never called.
BLAS_CFLAGS :=
ifeq ($(BLAS),1)
BLAS_CFLAGS := $(shell pkg-config --cflags openblas)
DEFS += -DRSMOE_USE_BLAS=1 -DRSMOE_OPENBLAS_SO='"$(shell pkg-config --variable=libdir openblas)/libopenblas.so.0"'
endif

WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow=local -Wvla
CSTD    := -std=c11 -D_GNU_SOURCE
INCS    := -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS)) $(BLAS_CFLAGS)
LIBS    := $(shell pkg-config --libs $(PKGS)) -lstemmer -lpthread -ldl -lm

ifeq ($(MODE),asan)
OPT     := -O1 -g -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDOPT   := -fsanitize=address,undefined
else
OPT     := -O3 -march=native -g
LDOPT   :=
endif

CFLAGS_ALL = $(CSTD) $(WARN) $(OPT) $(DEFS) $(INCS) $(CFLAGS)
LDFLAGS_ALL = $(LDOPT) $(LDFLAGS)

LIB_SRC   := $(shell find src -name '*.c' | sort)
TOOL_SRC  := $(shell find tools -name '*.c' | sort)
TEST_SRC  := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o) $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBA      := $(BUILD)/librsmoe.a

.PHONY: all lib tests test asan clean
all: $(BUILD)/rsmoe $(TEST_BIN)
lib: $(LIBA)
tests: $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/rsmoe: $(TOOL_OBJ) $(LIBA)
	$(CC) $(LDFLAGS_ALL) $(TOOL_OBJ) $(LIBA) $(LIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIBA) $(LIBS) -o $@

# Sanitizer build of everything, in build-asan/.
asan:
	$(MAKE) MODE=asan BUILD=build-asan all

# The test command: sanitizer build, then every test program.
test: asan
	sh tests/run.sh build-asan

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
