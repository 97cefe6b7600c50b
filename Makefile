# The README's two commands: `make run` and `make test`. Each installs what is
# missing (scripts/deps.sh), configures, builds and runs.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ifdef CI
CMAKE_FLAGS += -DOC_WERROR=ON
endif

.PHONY: all deps build run test test-sanitize clean

all: build

deps:
	@scripts/deps.sh all

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/oodc run

# the normal suite, then the same suite under ASan + UBSan + LeakSanitizer
test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	@CMAKE_FLAGS="$(CMAKE_FLAGS)" JOBS=$(JOBS) SAN_BUILD=$(BUILD)-asan scripts/sanitize.sh

test-sanitize: deps
	@CMAKE_FLAGS="$(CMAKE_FLAGS)" JOBS=$(JOBS) SAN_BUILD=$(BUILD)-asan scripts/sanitize.sh

clean:
	rm -rf $(BUILD) $(BUILD)-asan
