#!/usr/bin/env bash
# Builds the `switchyard:local` image of deploy/Dockerfile without pulling anything: the release
# binaries are linked statically against glibc here (no musl target can be fetched; only the
# stable toolchain's own x86_64-unknown-linux-gnu is guaranteed), Debian's busybox-static gives
# the image a shell, and the Dockerfile starts FROM scratch.
#
#   tests/compose/build-image.sh            build (cargo, then docker build)
#   IMAGE=name:tag tests/compose/build-image.sh
#   PROFILE=dev tests/compose/build-image.sh   unoptimized binaries: a quicker build for tests
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${IMAGE:-switchyard:local}
profile=${PROFILE:-release}
case "$profile" in
  release) out=release ;;
  dev) out=debug ;;
  *) echo "build-image: PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
target=x86_64-unknown-linux-gnu
context=target/docker-context
busybox=${BUSYBOX:-/bin/busybox}

# ldd fails on a static file and says so ("not a dynamic executable", or "statically linked" for
# a static PIE): the words are the test, not its exit code.
is_static() {
  local said
  said=$(ldd "$1" 2>&1 || true)
  [ -f "$1" ] && [[ "$said" == *"not a dynamic executable"* || "$said" == *"statically linked"* ]]
}

if ! is_static "$busybox"; then
  echo "build-image: $busybox is missing or not statically linked; install Debian's busybox-static" \
       "(apt-get install busybox-static) or set BUSYBOX=/path/to/a/static/busybox" >&2
  exit 2
fi

echo "== cargo build --profile $profile (static, $target)" >&2
# --target keeps build scripts and proc macros dynamic (they run here) and puts the static
# binaries in target/$target/$out, apart from the usual ones.
CARGO_INCREMENTAL=0 RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --profile "$profile" --locked --target "$target" -p switchyard-cli -p switchyard-agent

rm -rf "$context"
mkdir -p "$context/bin"
for bin in switchyard switchyard-agent; do
  cp "target/$target/$out/$bin" "$context/bin/$bin"
  if ! is_static "$context/bin/$bin"; then
    echo "build-image: $bin is not statically linked" >&2
    exit 1
  fi
done
# Smaller layers; the line tables are kept in target/ for backtraces by hand.
if command -v strip >/dev/null; then strip --strip-debug "$context"/bin/switchyard*; fi
cp "$busybox" "$context/bin/busybox"

echo "== docker build -t $image" >&2
docker build --quiet -t "$image" -f deploy/Dockerfile "$context"
