# dualstore — see README.md.
GO      ?= go
BIN     := $(CURDIR)/bin
MNT     ?= $(CURDIR)/mnt
DATA    ?= $(CURDIR)/.dualstore-data
PKGS    := ./chunker/... ./stores/... ./index/... ./dual/... ./fs/... ./cmd/...

.PHONY: all build test unit integration vet lint fmt mount bench stress versitygw desync clean

# The S3-compatible server the S3 tests run against (its posix backend on a
# temp dir). Installed into the repo's own bin dir, pinned.
VERSITYGW_VERSION := v1.8.0
VERSITYGW := $(BIN)/versitygw

# desync, the casync-compatible peer the casync-layout tests run against,
# pinned in its own tools module (integration/tools/desync: its go.mod and
# go.sum pin v0.9.6 and every dependency) and built into the repo's bin dir.
# Built the way that works here: `go install …@version` fails on the version
# list; GONOSUMDB=github.com/folbricht keeps the checksum database out of it
# (the committed go.sum holds the sums).
DESYNC := $(BIN)/desync

# The linters STYLE.md is enforced with (.golangci.yml), pinned, installed
# into the repo's own bin dir like versitygw.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint

all: build

build:
	$(GO) build -o $(BIN)/dualstore ./cmd/dualstore

# Unit tests (with the race detector) and the integration tests, which mount
# real FUSE filesystems with the built binary and use real tools.
test: vet unit integration

vet: $(GOLANGCI_LINT)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

unit: versitygw
	DUALSTORE_VERSITYGW=$(VERSITYGW) $(GO) test -race -count=1 -timeout 15m $(PKGS)

integration: build versitygw desync
	DUALSTORE_BIN=$(BIN)/dualstore DUALSTORE_VERSITYGW=$(VERSITYGW) DUALSTORE_DESYNC=$(DESYNC) $(GO) test -count=1 -timeout 20m ./integration/...

# Foreground mount of ./mnt with the embedded defaults (data in ./.dualstore-data).
# Ctrl-C unmounts.
mount: build
	@mkdir -p $(MNT)
	$(BIN)/dualstore mount --data-dir $(DATA) --log-level info $(MNT)

versitygw: $(VERSITYGW)

$(VERSITYGW):
	GOBIN=$(BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

desync: $(DESYNC)

$(DESYNC): integration/tools/desync/go.mod integration/tools/desync/go.sum
	cd integration/tools/desync && GONOSUMDB=github.com/folbricht GOFLAGS=-mod=mod \
	  $(GO) build -o $(DESYNC) github.com/folbricht/desync/cmd/desync

# Performance: every baseline and every dualstore variant in the same run,
# as ratios (see README, Performance). Needs root and /dev/fuse.
bench: build desync
	$(GO) run ./cmd/dualstore-bench -bin $(BIN)/dualstore $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench Maintenance -benchtime 1x ./dual/
	$(GO) test -run '^$$' -bench Restore -benchtime 1x -timeout 30m ./index/replica/

# The long forms of the reliability tests (crash, model, load, faults).
stress: build versitygw desync
	DUALSTORE_STRESS=1 DUALSTORE_BIN=$(BIN)/dualstore DUALSTORE_VERSITYGW=$(VERSITYGW) \
	  $(GO) test -race -count=1 -timeout 120m ./fs/... ./dual/...
	DUALSTORE_STRESS=1 DUALSTORE_BIN=$(BIN)/dualstore DUALSTORE_VERSITYGW=$(VERSITYGW) DUALSTORE_DESYNC=$(DESYNC) \
	  $(GO) test -count=1 -timeout 180m ./integration/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
