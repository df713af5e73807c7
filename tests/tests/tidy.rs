//! Repository invariants as tests: allowed dependency edges between our crates, no
//! aws-lc-rs in the graph, the monitor core without the HTTP/TLS/Docker stack, and a
//! `//!` header on every source file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace root")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo prints UTF-8")
}

fn metadata() -> Value {
    serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--locked"])).unwrap()
}

/// Which of our crates each member may depend on (normal and build dependencies).
fn allowed_edges() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("health-types", &[][..]),
        ("health-check", &["health-types"][..]),
        ("health-monitor", &["health-types", "health-check"][..]),
        ("health-notify", &["health-types"][..]),
        ("health-store", &["health-types"][..]),
        (
            "healthd",
            &[
                "health-types",
                "health-check",
                "health-monitor",
                "health-notify",
                "health-store",
            ][..],
        ),
        (
            "health-tests",
            &[
                "health-types",
                "health-check",
                "health-monitor",
                "health-notify",
                "health-store",
                "healthd",
            ][..],
        ),
        ("xtask", &[][..]),
        // The proxy example embeds monitors and nothing of the daemon.
        ("health-lb-proxy", &["health-types", "health-monitor"][..]),
        (
            "health-bench",
            &[
                "health-types",
                "health-check",
                "health-monitor",
                "health-store",
                // The status-page scenario serves the real page in process.
                "healthd",
            ][..],
        ),
    ])
}

#[test]
fn dependency_edges_point_down_only() {
    let meta = metadata();
    let allowed = allowed_edges();
    let members: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for package in meta["packages"].as_array().unwrap() {
        if !package["source"].is_null() {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        let ok = allowed
            .get(name)
            .unwrap_or_else(|| panic!("new workspace member {name}: add its allowed edges here"));
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let is_dev = dep["kind"].as_str() == Some("dev");
            if members.contains(&dep_name) && !is_dev {
                assert!(
                    ok.contains(&dep_name),
                    "{name} must not depend on {dep_name}"
                );
            }
        }
    }
}

#[test]
fn no_aws_lc_in_the_graph() {
    let meta = metadata();
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for banned in ["aws-lc-rs", "aws-lc-sys", "aws-lc-fips-sys"] {
        assert!(
            !names.contains(&banned),
            "{banned} is in the graph: rustls must use ring only"
        );
    }
}

#[test]
fn monitor_core_builds_without_the_network_stack() {
    let tree = cargo(&[
        "tree",
        "--locked",
        "-p",
        "health-monitor",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    for banned in ["hyper", "rustls", "bollard", "h2", "health-check", "axum"] {
        let found = tree
            .lines()
            .any(|line| line.split_whitespace().next() == Some(banned));
        assert!(
            !found,
            "health-monitor without default features pulls {banned}:\n{tree}"
        );
    }
    assert!(tree.contains("health-types"), "{tree}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.trim_start().starts_with("//!"),
            "{} does not start with a `//!` line",
            file.display()
        );
    }
}

/// The crates whose public surface is pinned: every directory under `crates/`, so a new
/// crate is pinned from its first commit.
fn pinned() -> Vec<String> {
    let mut crates: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("src/lib.rs").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    crates
}

/// Drops `//` comments (line and trailing) and `#[...]` attributes on their own lines.
fn code_lines(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .filter(|line| !line.trim_start().starts_with("#["))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names a `use` tree brings in, with their paths below the crate: `self::a::{B, c::D
/// as E}` gives `B` and `E`.
fn use_tree_names(tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let inner = &tree[open + 1..tree.rfind('}').expect("a use group closes")];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_tree_names(&inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_tree_names(&inner[start..], out);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let name = match tree.split_once(" as ") {
        Some((_, alias)) => alias.trim(),
        None => tree.rsplit("::").next().unwrap_or(tree).trim(),
    };
    out.push(name.to_owned());
}

/// The public items a source file declares at its top level (`pub fn`, `pub struct`,
/// ..., `pub use`, `pub mod`), by name; `pub mod` files are read too, their items
/// listed as `module::Item`.
fn public_items(file: &Path, prefix: &str, out: &mut Vec<String>) {
    let text = code_lines(&std::fs::read_to_string(file).unwrap());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\npub ").map(|i| i + 1).or_else(|| {
        if rest.starts_with("pub ") {
            Some(0)
        } else {
            None
        }
    }) {
        let item = &rest[at + 4..];
        let end = item
            .find([';', '{', '(', '<', '=', ':'])
            .unwrap_or(item.len());
        let words: Vec<&str> = item[..end].split_whitespace().collect();
        rest = &item[end.min(item.len())..];
        match words.as_slice() {
            ["use", ..] => {
                let statement = &item[4..item.find(';').expect("a use ends with `;`")];
                let mut names = Vec::new();
                use_tree_names(statement, &mut names);
                out.extend(names.into_iter().map(|n| format!("{prefix}{n}")));
                rest = &item[item.find(';').unwrap()..];
            }
            ["mod", name] => {
                let dir = file.parent().unwrap();
                let module = [
                    dir.join(format!("{name}.rs")),
                    dir.join(name).join("mod.rs"),
                ]
                .into_iter()
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("module {name} of {}", file.display()));
                public_items(&module, &format!("{prefix}{name}::"), out);
            }
            [.., name] => out.push(format!("{prefix}{name}")),
            [] => {}
        }
    }
}

/// Each crate's public surface (every item reachable from its root, with all features)
/// is the committed `crates/<crate>/public-api.txt`: a change to it is a decision, made
/// on purpose. Run with `UPDATE_PUBLIC_API=1` to rewrite the lists after one.
#[test]
fn public_api_is_pinned() {
    let update = std::env::var_os("UPDATE_PUBLIC_API").is_some();
    let mut changed = Vec::new();
    for krate in pinned() {
        let dir = root().join("crates").join(&krate);
        let mut items = Vec::new();
        public_items(&dir.join("src/lib.rs"), "", &mut items);
        items.sort();
        items.dedup();
        let listed = items.join("\n") + "\n";
        let pinned_path = dir.join("public-api.txt");
        let pinned = std::fs::read_to_string(&pinned_path).unwrap_or_default();
        if pinned != listed {
            if update {
                std::fs::write(&pinned_path, &listed).unwrap();
            } else {
                changed.push(format!(
                    "{krate}: public items now\n{listed}\nbut {} says\n{pinned}",
                    pinned_path.display()
                ));
            }
        }
    }
    assert!(
        changed.is_empty(),
        "public API changed (run with UPDATE_PUBLIC_API=1 if on purpose):\n{}",
        changed.join("\n")
    );
}
