#!/usr/bin/env bash
# Builds the coinledger-node:latest image FROM scratch around fully static binaries.
#
#   cluster/docker/build-image.sh [--rev GIT_REV] [IMAGE_TAG]   (default coinledger-node:latest)
#
# Without --rev it builds the working tree as it is. With --rev (e.g. HEAD) it builds exactly
# that commit (git archive into target/static/src), which is what you want when the working
# tree holds someone's half-done edits.
# 1. cargo builds coinledger-node and coinctl with +crt-static into target/static (a separate
#    target dir: the main target/ is not touched). --target is explicit so RUSTFLAGS apply to
#    the binaries only, not to build scripts and proc-macros.
# 2. checks both binaries are statically linked (file + ldd).
# 3. copies them into a fresh build context and runs docker build -f cluster/Dockerfile.
# Any failing step stops the script with a message.
set -euo pipefail

die() { echo "build-image: ERROR: $*" >&2; exit 1; }
trap 'echo "build-image: ERROR: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

REV=""
if [ "${1:-}" = "--rev" ]; then
    [ -n "${2:-}" ] || die "--rev needs a git revision"
    REV="$2"; shift 2
fi
TAG="${1:-coinledger-node:latest}"
TARGET=x86_64-unknown-linux-gnu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

command -v cargo >/dev/null || die "cargo not found"
command -v docker >/dev/null || die "docker not found"
command -v file >/dev/null || die "file not found (apt-get install file)"
[ "$(uname -m)" = x86_64 ] || die "this script builds for $TARGET; host is $(uname -m)"

export CARGO_TARGET_DIR="$ROOT/target/static"
export RUSTFLAGS='-C target-feature=+crt-static'
SRC="$ROOT"
if [ -n "$REV" ]; then
    commit="$(git rev-parse --verify "$REV^{commit}")" || die "unknown git revision $REV"
    SRC="$CARGO_TARGET_DIR/src"
    rm -rf "$SRC" && mkdir -p "$SRC"
    git archive "$commit" | tar -x -C "$SRC"
    echo "build-image: building commit $commit (git archive into $SRC)"
else
    echo "build-image: building the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes'))"
fi
echo "build-image: cargo build (static, $TARGET) into $CARGO_TARGET_DIR"
(cd "$SRC" && cargo build --release --locked --target "$TARGET" \
    -p coinledger-node -p coinledger-client --bin coinledger-node --bin coinctl) \
    || die "cargo build failed (try --rev HEAD if the working tree does not compile)"

BIN="$CARGO_TARGET_DIR/$TARGET/release"
for b in coinledger-node coinctl; do
    f="$BIN/$b"
    [ -x "$f" ] || die "$f was not built"
    desc="$(file -b "$f")"
    echo "build-image: $b: $desc"
    case "$desc" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) die "$f is not statically linked: $desc" ;;
    esac
    # ldd exits non-zero on a static binary ("not a dynamic executable" / "statically linked").
    lddout="$(ldd "$f" 2>&1 || true)"
    case "$lddout" in
        *"not a dynamic executable"*|*"statically linked"*) echo "build-image: $b: ldd: $lddout" ;;
        *) die "$f has dynamic dependencies: $lddout" ;;
    esac
done

CTX="$(mktemp -d "${TMPDIR:-/tmp}/coinledger-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
cp "$BIN/coinledger-node" "$BIN/coinctl" "$CTX/"
strip "$CTX/coinledger-node" "$CTX/coinctl" 2>/dev/null || echo "build-image: strip unavailable, image keeps debug line tables"
mkdir "$CTX/data"
"$CTX/coinledger-node" --help >/dev/null || die "the static coinledger-node does not run"

echo "build-image: docker build -t $TAG"
docker build -f "$ROOT/cluster/Dockerfile" -t "$TAG" "$CTX"
docker image inspect "$TAG" --format 'build-image: built {{index .RepoTags 0}} {{.Id}} ({{.Size}} bytes)'
