//! `[[notify]]` tables (the cases of `vectors/config.toml`): one per provider parses, and
//! each bad one is rejected with the notifier's name, the key and the reason.

use health_notify::{NotifierConfig, PROVIDERS};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    valid: Vec<toml::Value>,
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalid {
    notify: toml::Value,
    error: Vec<String>,
}

fn vectors() -> Vectors {
    toml::from_str(include_str!("vectors/config.toml")).unwrap()
}

#[test]
fn every_provider_parses_from_toml() {
    let keys: Vec<_> = vectors()
        .valid
        .into_iter()
        .map(|table| {
            let config = NotifierConfig::deserialize(table.clone())
                .unwrap_or_else(|err| panic!("{err}\n{table}"));
            config.provider.key()
        })
        .collect();
    assert_eq!(keys, PROVIDERS);
}

#[test]
fn errors_name_the_notifier_and_the_key() {
    for case in vectors().invalid {
        let table = case.notify.to_string();
        let err = NotifierConfig::deserialize(case.notify)
            .map(drop)
            .expect_err(&table)
            .to_string();
        for needle in &case.error {
            assert!(err.contains(needle.as_str()), "{err}\n{table}");
        }
    }
}
