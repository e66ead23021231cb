# gatehouse: one build description. `make run` and `make test` are the quick start.
BUILD   ?= build
CC      ?= cc
PKGS    := yaml-0.1 libpcre2-8 libcares openssl libnghttp2 hiredis libmaxminddb jansson libprotobuf-c sqlite3 libpq luajit libnats zlib
SAN     ?=
OPT     ?= -O2
CFLAGS  ?=
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS  = -std=gnu11 -D_GNU_SOURCE= $(OPT) -g $(WARN) -pthread -Isrc -I$(BUILD)/gen $(PKG_CFLAGS) $(SAN) $(CFLAGS)
LDLIBS  := $(PKG_LIBS) -pthread -lm

SRCS    := $(sort $(wildcard src/*/*.c))
# Protocol buffers (protoc-c): the flagd evaluation service and google.protobuf.Struct
# (v1 is wire-identical to v2 but for optional presence, so C uses the v2 messages for both),
# and the gRPC admin API (gatehouse.admin.v1)
PROTOS  := proto/flagd/evaluation/v2/evaluation.proto proto/gatehouse/admin/v1/admin.proto \
           proto/opentelemetry/proto/common/v1/common.proto proto/opentelemetry/proto/resource/v1/resource.proto \
           proto/opentelemetry/proto/trace/v1/trace.proto proto/opentelemetry/proto/collector/trace/v1/trace_service.proto
GEN     := $(BUILD)/gen
GEN_SRCS := $(PROTOS:proto/%.proto=$(GEN)/%.pb-c.c) $(GEN)/google/protobuf/struct.pb-c.c
# The web dashboard (web/dashboard, plus uPlot's dist files from npm: web/package.json), staged in
# $(BUILD)/web/dashboard and embedded in the binary (served at /dashboard/ on the admin listener)
WEB_SRCS := $(sort $(wildcard web/dashboard/*.html web/dashboard/*.js web/dashboard/*.css web/dashboard/*.svg))
UPLOT    := $(BUILD)/web/node_modules/uplot/dist
WEB_GEN  := $(GEN)/web_assets.c
OBJS    := $(SRCS:%.c=$(BUILD)/%.o) $(GEN_SRCS:.c=.o) $(WEB_GEN:.c=.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all deps run test unit fuzz asan bench clean
all: $(BUILD)/gatehouse

deps:
	@sh scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(GEN_SRCS) &: $(PROTOS)
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto -I/usr/include $(PROTOS) google/protobuf/struct.proto

$(GEN)/%.o: $(GEN)/%.c
	$(CC) $(filter-out -Werror,$(ALL_CFLAGS)) -MMD -MP -c $< -o $@

$(SRCS:%.c=$(BUILD)/%.o) $(BUILD)/src/main.o: | $(GEN_SRCS)

# npm installs uPlot into $(BUILD)/web (no network: a warning, and a dashboard without charts)
$(UPLOT)/uPlot.iife.min.js: web/package.json web/package-lock.json
	@mkdir -p $(BUILD)/web
	cp web/package.json web/package-lock.json $(BUILD)/web/
	cd $(BUILD)/web && npm install --no-audit --no-fund --loglevel=error || echo "warning: npm could not install uPlot: the dashboard has no charts"
	@[ ! -f $@ ] || touch $@

$(WEB_GEN): scripts/embed_web.py $(WEB_SRCS) $(UPLOT)/uPlot.iife.min.js
	python3 scripts/embed_web.py $@ $(BUILD)/web/dashboard $(WEB_SRCS) $(UPLOT)/uPlot.iife.min.js $(UPLOT)/uPlot.min.css

$(BUILD)/libgatehouse.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gatehouse: $(BUILD)/src/main.o $(BUILD)/libgatehouse.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libgatehouse.a tests/unit/t.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libgatehouse.a $(LDLIBS)

# The statistics driver that tests/integration/test_stats_scipy.py compares with scipy/statsmodels.
$(BUILD)/tests-bin/stats_driver: tests/exp/stats_driver.c $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libgatehouse.a $(LDLIBS)

# libFuzzer targets: clang, with ASan+UBSan, over the library's sources.
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE= -O1 -g -Isrc -I$(GEN) $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
# the library's objects are built once for all targets (fuzzer-instrumented), then archived
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/fuzzobj/%.o,$(SRCS)) $(patsubst $(GEN)/%.c,$(BUILD)/fuzzobj/gen/%.o,$(GEN_SRCS) $(WEB_GEN))
$(BUILD)/fuzzobj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/fuzzobj/%.o: %.c | $(GEN_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/libgatehouse-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libgatehouse-fuzz.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(BUILD)/libgatehouse-fuzz.a $(LDLIBS)

unit: $(UNIT_BINS)
fuzz: $(FUZZ_BINS)

# Quick start: build and run with the example config (proxy :8080, admin :9090, demo origin).
run: deps all
	./$(BUILD)/gatehouse run -c examples/quickstart.yaml

# Every test: unit, fuzz (briefly), integration with the real binary. Prints "N passed, N failed".
test: deps all unit fuzz $(BUILD)/tests-bin/stats_driver
	@BUILD=$(BUILD) SAN="$(SAN)" sh tests/run.sh

# The whole suite under ASan+UBSan.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

bench: all
	bash bench/proxy.sh

clean:
	rm -rf build build-asan

-include $(OBJS:.o=.d) $(BUILD)/src/main.d $(FUZZ_OBJS:.o=.d)
