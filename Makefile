# dualstore — see README.md.
GO      ?= go
BIN     := $(CURDIR)/bin
MNT     ?= $(CURDIR)/mnt
DATA    ?= $(CURDIR)/.dualstore-data
PKGS    := ./chunker/... ./stores/... ./index/... ./dual/... ./fs/... ./cmd/...

.PHONY: all build test unit integration vet fmt mount bench clean

all: build

build:
	$(GO) build -o $(BIN)/dualstore ./cmd/dualstore

# Unit tests (with the race detector) and the integration tests, which mount
# real FUSE filesystems with the built binary and use real tools.
test: vet unit integration

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

integration: build
	DUALSTORE_BIN=$(BIN)/dualstore $(GO) test -count=1 -timeout 20m ./integration/...

# Foreground mount of ./mnt with the embedded defaults (data in ./.dualstore-data).
# Ctrl-C unmounts.
mount: build
	@mkdir -p $(MNT)
	$(BIN)/dualstore mount --data-dir $(DATA) --log-level info $(MNT)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
