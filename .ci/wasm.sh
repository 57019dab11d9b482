#!/usr/bin/env bash
# Builds anybatch for wasm32-unknown-unknown (default features) and runs the
# wasm suite (tests/wasm.rs) in Node and in headless Chromium, following
# ../shared/WASM.md: Debian's rustc-web (it ships the std sources) builds std
# itself, lld-22 links, and wasm-bindgen-test-runner matches Cargo.lock's
# wasm-bindgen exactly. The runner is cached between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ANYBATCH_CI_CACHE:-$HOME/.cache/anybatch-ci}"

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

export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$root/bin/wasm-bindgen-test-runner"
wasm=(-Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --target-dir target/wasm)

echo "wasm: building the library with default features"
cargo build "${wasm[@]}"

# A plain #[test] is skipped silently on wasm, so check that every test in
# tests/wasm.rs really ran.
expected=$(grep -c '^#\[test\]' tests/wasm.rs)
run_suite() {
    local where=$1 log
    shift
    log=$(mktemp)
    env "$@" cargo test "${wasm[@]}" --test wasm 2>&1 | tee "$log"
    if ! grep -q "test result: ok. $expected passed" "$log"; then
        echo "wasm: expected $expected tests to pass in $where" >&2
        exit 1
    fi
    echo "wasm: $expected of $expected tests passed in $where"
}
run_suite Node
run_suite "headless Chromium" WASM_BINDGEN_USE_BROWSER=1
