#!/usr/bin/env bash
# Builds anybatch for wasm32-unknown-unknown (default features) and runs the
# behaviour suites (the same test bodies as native) and tests/wasm.rs in Node
# and in headless Chromium, following ../shared/WASM.md: Debian's rustc-web
# (it ships the std sources) builds std itself, lld-22 links, and
# wasm-bindgen-test-runner matches Cargo.lock's wasm-bindgen exactly. The
# runner is cached between runs.
#
# A plain #[test] is skipped silently on wasm, and a runner that runs nothing
# still "passes", so every binary is checked by name: each test body the
# native binary lists must have passed on wasm, unless its source marks it
# #[cfg(not(target_arch = "wasm32"))].
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ANYBATCH_CI_CACHE:-$HOME/.cache/anybatch-ci}"
suites=(batching cache errors executor lifecycle stats values groups stores)

missing=()
for package in rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium chromium-driver; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "wasm: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

version=$(cargo pkgid wasm-bindgen | sed 's/.*[@#]//')
root="$cache/wasm-bindgen-$version"
if [ ! -x "$root/bin/wasm-bindgen-test-runner" ]; then
    echo "wasm: installing wasm-bindgen-cli $version into $root"
    cargo install -q wasm-bindgen-cli --version "$version" --root "$root"
fi

expected_dir=$(mktemp -d)
trap 'rm -rf "$expected_dir"' EXIT

# The tests each suite must pass on wasm, one name a line. Listed by the
# native binaries with the toolchain CI already built them with (so before
# PATH switches to Debian's), runtime suffix dropped: `a::b::smol` -> `a::b`.
for suite in "${suites[@]}"; do
    cargo test -q --all-features --test "$suite" -- --list |
        sed -n 's/: test$//p' | sed -E 's/::(smol|tokio|async_std)$//' | sort -u \
        >"$expected_dir/$suite.native"
    [ -s "$expected_dir/$suite.native" ] || {
        echo "wasm: the native $suite suite lists no tests" >&2
        exit 1
    }
    # Bodies marked native-only: the fn named after the cfg line.
    awk '/#\[cfg\(not\(target_arch = "wasm32"\)\)\]/ { marked = 1; next }
         marked && match($0, /fn [a-z0-9_]+/) { print substr($0, RSTART + 3, RLENGTH - 3); marked = 0 }
         marked && !/^[[:space:]]*(\/\/|#\[)/ { marked = 0 }' "tests/$suite.rs" | sort -u \
        >"$expected_dir/$suite.native-only"
    # A name's last segment decides: nested modules keep their path.
    awk -F'::' 'FILENAME == ARGV[1] { skip[$0] = 1; next } !($NF in skip)' \
        "$expected_dir/$suite.native-only" "$expected_dir/$suite.native" \
        >"$expected_dir/$suite.expected"
done
# tests/wasm.rs exists on wasm only: its #[test] fns (aliased to
# wasm_bindgen_test there) are the list.
awk '/^#\[test\]/ { marked = 1; next }
     marked && match($0, /fn [a-z0-9_]+/) { print substr($0, RSTART + 3, RLENGTH - 3); marked = 0 }' \
    tests/wasm.rs | sort -u >"$expected_dir/wasm.expected"

export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$root/bin/wasm-bindgen-test-runner"
wasm=(-Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --target-dir target/wasm)

echo "wasm: building the library with default features and every test binary"
cargo build "${wasm[@]}"
cargo test "${wasm[@]}" --tests --no-run

# Runs one test binary and checks that exactly the expected tests passed.
run_suite() {
    local where=$1 suite=$2 log passed expected count
    shift 2
    log=$(mktemp)
    if ! env "$@" cargo test "${wasm[@]}" --test "$suite" >"$log" 2>&1; then
        cat "$log"
        echo "wasm: $suite failed in $where" >&2
        exit 1
    fi
    expected="$expected_dir/$suite.expected"
    passed="$log.passed"
    sed -n 's/^test \(.*\) \.\.\. ok$/\1/p' "$log" | sed 's/::wasm$//' | sort -u >"$passed"
    count=$(wc -l <"$expected")
    if ! cmp -s "$passed" "$expected" || ! grep -q "test result: ok. $count passed" "$log"; then
        cat "$log"
        echo "wasm: $suite in $where: the tests that passed differ from the $count expected" >&2
        diff "$expected" "$passed" | sed 's/^</  did not pass:/; s/^>/  unexpected:/' >&2 || true
        exit 1
    fi
    echo "wasm: $suite: $count of $count tests passed in $where"
    rm -f "$log" "$passed"
}

for suite in "${suites[@]}"; do
    skipped=$(paste -sd' ' "$expected_dir/$suite.native-only")
    [ -z "$skipped" ] || echo "wasm: $suite: native-only: $skipped"
done
for where in Node "headless Chromium"; do
    env=()
    [ "$where" = Node ] || env=(WASM_BINDGEN_USE_BROWSER=1)
    for suite in "${suites[@]}" wasm; do
        run_suite "$where" "$suite" "${env[@]}"
    done
done
