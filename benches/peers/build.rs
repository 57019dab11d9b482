//! Records, for the report's header, the rustc that compiles this project and
//! the versions Cargo.lock resolved for the loaders compared.

use std::env;
use std::fs;
use std::process::Command;

const CRATES: [&str; 5] = [
    "anybatch",
    "ultra-batch",
    "dataloader",
    "async-graphql",
    "tokio",
];

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PEERS_RUSTC_VERSION={version}");

    // Cargo.lock lists `name = "..."` then `version = "..."` for each package.
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut versions = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = quoted(line, "name = ") {
            name = Some(value);
        } else if let (Some(value), Some(current)) = (quoted(line, "version = "), name.take()) {
            if CRATES.contains(&current) {
                versions.push(format!("{current} {value}"));
            }
        }
    }
    let versions = if versions.is_empty() {
        "unknown (no Cargo.lock)".to_string()
    } else {
        versions.join(", ")
    };
    println!("cargo:rustc-env=PEERS_CRATE_VERSIONS={versions}");
}

/// The quoted value of a `key = "value"` line.
fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)?.strip_prefix('"')?.strip_suffix('"')
}
