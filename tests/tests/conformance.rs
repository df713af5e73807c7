//! Runs the conformance vectors (ours and the shared samples) and checks that the runner
//! itself reports differences and malformed vectors instead of passing or panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

use std::path::{Path, PathBuf};

use health_tests::conformance::{Failure, run_dirs, run_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn our_vectors_pass_and_are_enough() {
    let outcomes = run_dirs(&[repo().join("conformance")]).unwrap();
    assert!(outcomes.len() >= 40, "only {} vectors", outcomes.len());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn shared_samples_pass_when_present() {
    let samples = repo().join("../../shared/conformance-samples");
    if !samples.is_dir() {
        println!("skipped: no shared/conformance-samples beside the repository");
        return;
    }
    for outcome in run_dirs(&[samples]).unwrap() {
        assert!(outcome.result.is_ok(), "{outcome}");
    }
}

fn vector(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_wrong_expectation_fails_with_step_and_difference() {
    let dir = tempfile::tempdir().unwrap();
    let path = vector(
        &dir,
        "wrong.toml",
        r#"
description = "expects a down too early"
[config]
retries = 2
[[step]]
check = "unhealthy"
status = "unhealthy"
notify = ["down"]
"#,
    );
    let outcome = run_file(&path);
    assert_eq!(
        outcome.to_string(),
        "FAIL wrong: step 1: notify: expected [down], got []"
    );
}

#[test]
fn a_wrong_time_is_reported_with_both_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = vector(
        &dir,
        "late.toml",
        r#"
description = "second check is at 30s, not 20s"
[[step]]
check = "healthy"
[[step]]
check = "healthy"
at = "20s"
"#,
    );
    let outcome = run_file(&path);
    assert_eq!(
        outcome.to_string(),
        "FAIL late: step 2: at: expected the check to begin at 20s, it began at 30s"
    );
}

#[test]
fn malformed_vectors_name_file_step_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown_key.toml",
            "description = \"x\"\n[[step]]\ncheck = \"healthy\"\nstaus = \"healthy\"\n",
            Some(1),
            "unknown field `staus`",
        ),
        (
            "bad_check.toml",
            "description = \"x\"\n[[step]]\ncheck = \"healthy\"\n[[step]]\ncheck = \"sick\"\n",
            Some(2),
            "sick",
        ),
        (
            "bare_number.toml",
            "description = \"x\"\n[config]\ninterval = 30\n[[step]]\ncheck = \"healthy\"\n",
            None,
            "\"30s\"",
        ),
        (
            "no_steps.toml",
            "description = \"x\"\n",
            None,
            "no [[step]]",
        ),
        (
            "wait_without_duration.toml",
            "description = \"x\"\n[[step]]\naction = \"wait\"\ncheck = \"healthy\"\n",
            Some(1),
            "duration",
        ),
        ("not_toml.toml", "this is = = not toml", None, ""),
        (
            "bad_at.toml",
            "description = \"x\"\n[[step]]\ncheck = \"healthy\"\nat = \"soon\"\n",
            Some(1),
            "`at`",
        ),
    ];
    for (name, text, step, reason) in cases {
        let path = vector(&dir, name, text);
        let outcome = run_file(&path);
        match outcome.result {
            Err(Failure::Malformed {
                path: p,
                step: s,
                reason: r,
            }) => {
                assert_eq!(p, path);
                assert_eq!(s, step, "{name}: {r}");
                assert!(r.contains(reason), "{name}: {r}");
                assert!(outcome.stem == name.trim_end_matches(".toml"));
            }
            other => panic!("{name}: expected malformed, got {other:?}"),
        }
    }
}

#[test]
fn a_check_step_after_stop_fails_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = vector(
        &dir,
        "after_stop.toml",
        "description = \"x\"\n[[step]]\ncheck = \"healthy\"\n[[step]]\naction = \"stop\"\n[[step]]\ncheck = \"healthy\"\n",
    );
    assert_eq!(
        run_file(&path).to_string(),
        "FAIL after_stop: step 3: no check can happen: the monitor is not running"
    );
}

#[test]
fn policy_vectors_pass_and_cover_every_rule() {
    let outcomes = run_dirs(&[repo().join("policy")]).unwrap();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for rule in [
        "remind_every",
        "depends_on",
        "flap_threshold",
        "maintenance",
    ] {
        let covered = std::fs::read_dir(repo().join("policy"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| {
                std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains(rule))
            })
            .count();
        assert!(covered >= 3, "only {covered} vectors show {rule}");
    }
}

#[test]
fn a_policy_vector_that_differs_fails_with_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = vector(
        &dir,
        "held.toml",
        r#"
        description = "a held down that the vector wrongly expects"
        [policy.monitors.db]
        [policy.monitors.api]
        depends_on = ["db"]
        [[step]]
        at = "1m"
        monitor = "db"
        event = "down"
        notify = ["down db"]
        [[step]]
        at = "2m"
        monitor = "api"
        event = "down"
        notify = ["down api"]
        "#,
    );
    let outcome = run_file(&path);
    assert_eq!(
        outcome.result,
        Err(Failure::Differs {
            step: 2,
            what: r#"notify: expected ["down api"], got []"#.into(),
        })
    );
    let bad = vector(
        &dir,
        "bad.toml",
        "description = \"x\"\n[policy.monitors.api]\ndepends_on = [\"nope\"]\n",
    );
    assert!(matches!(
        run_file(&bad).result,
        Err(Failure::Malformed { .. })
    ));
}
