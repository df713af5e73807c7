//! The `[[notify]]` examples in the crate docs are real configs: every one parses, and
//! together they cover every provider.

use std::collections::BTreeSet;

use health_notify::{NotifierConfig, PROVIDERS};

#[derive(serde::Deserialize)]
struct File {
    notify: Vec<NotifierConfig>,
}

/// The ```toml blocks of the `//!` docs in `src/lib.rs`.
fn toml_blocks() -> Vec<String> {
    let source = include_str!("../../src/lib.rs");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match (&mut current, doc.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(doc);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_provider_has_a_doc_example_that_parses() {
    let blocks = toml_blocks();
    let mut seen = BTreeSet::new();
    for block in &blocks {
        let file: File = toml::from_str(block).unwrap_or_else(|err| panic!("{err}\n{block}"));
        for config in file.notify {
            config.build().unwrap();
            seen.insert(config.provider.key());
        }
    }
    assert_eq!(seen, PROVIDERS.into_iter().collect::<BTreeSet<_>>());
}
