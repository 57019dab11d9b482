#!/usr/bin/env bash
# Checks the crate with the Rust release named by `rust-version` in Cargo.toml.
# rustup cannot fetch toolchains here, so the compiler comes from Debian's
# rustc-web packages, unpacked (not installed) into a cache directory so that it
# never replaces the machine's own toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
root="${ANYBATCH_CI_CACHE:-$HOME/.cache/anybatch-ci}/rust-$msrv"
rustc="$root/usr/bin/rustc"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if ! "$rustc" --version 2>/dev/null | grep -q "^rustc $msrv"; then
    echo "msrv: unpacking Debian's rustc-web $msrv into $root"
    command -v apt-get >/dev/null || { echo "msrv: needs apt-get" >&2; exit 1; }
    apt-get update -qq
    version=$(apt-cache madison rustc-web | awk -v m="$msrv" '$3 ~ "^"m"\\." {print $3; exit}')
    [ -n "$version" ] || { echo "msrv: no rustc-web $msrv in Debian's archive" >&2; exit 1; }
    llvm=$(apt-cache show "libstd-rust-web-$msrv=$version" | sed -n 's/^Depends:.*\(libllvm[0-9]*\).*/\1/p' | head -n1)
    downloads=$(mktemp -d)
    (cd "$downloads" && chmod 777 . && apt-get download -q \
        "rustc-web=$version" "libstd-rust-web-dev=$version" "libstd-rust-web-$msrv=$version" "$llvm")
    rm -rf "$root" && mkdir -p "$root"
    for deb in "$downloads"/*.deb; do dpkg -x "$deb" "$root"; done
    rm -rf "$downloads"
fi

"$rustc" --version
# Cargo refuses any dependency whose own rust-version is newer than this rustc.
RUSTC="$rustc" cargo check --locked --all-features --all-targets --target-dir target/msrv
echo "msrv: ok with $("$rustc" --version)"
