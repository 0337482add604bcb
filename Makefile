# Coalesce — build, test, demo. `make` installs missing Debian/PyPI packages itself.
SWIFT   ?= swift
PYTHON  ?= python3
PREFIX  ?= /usr/local
BUILD   ?= .build/release
SWIFTFLAGS ?= -c release

.PHONY: all deps build test test-swift test-python test-c demo serve bench models install clean info

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFTFLAGS)

info: build
	$(BUILD)/coalesce info

# Tests run in release mode: the numeric code is 10-50x slower unoptimised, and tests only use
# public API, so testability is not needed.
test-swift: deps
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	$(SWIFT) test $(SWIFTFLAGS) --skip-build

test: test-swift

demo: build
	$(BUILD)/coalesce info
	$(BUILD)/coalesce bench ops --quick

clean:
	rm -rf .build
