//! The config file's checks: resolution, positions and wording of every problem.

use std::{fmt::Write, time::Duration};

use health_types::{Target, Url};

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"

[defaults]
interval = "10s"
retries = 2

[[notify]]
name = "ops"
provider = "webhook"
url = "http://127.0.0.1:9/hook"

[[monitor]]
name = "api"
url = "http://127.0.0.1:8080/"
path = "/health"
notify = ["ops"]

[[monitor]]
name = "db"
url = "tcp://127.0.0.1:5432"
interval = "5s"

[[monitor]]
name = "web"
url = "http://127.0.0.1:8081/"
docker = { container = "web", host = "unix:///var/run/docker.sock" }
"#;

#[test]
fn a_good_file_resolves_with_defaults_under_own_keys() {
    let c = DaemonConfig::parse(GOOD).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.notify[0].name, "ops");
    assert_eq!(c.notify[0].provider.key(), "webhook");
    let api = &c.monitors[0];
    assert_eq!(api.config.interval, Duration::from_secs(10));
    assert_eq!(api.config.path, "/health");
    assert_eq!(api.config.fall_threshold(), 2);
    assert_eq!(api.notify, ["ops"]);
    assert_eq!(c.monitors[1].config.interval, Duration::from_secs(5));
    let Target::Docker { spec, fallback } = &c.monitors[2].target else {
        panic!("{:?}", c.monitors[2].target);
    };
    assert_eq!(spec.container, "web");
    assert_eq!(
        fallback.as_ref().map(Url::as_str),
        Some("http://127.0.0.1:8081/")
    );
}

#[test]
fn each_probe_is_built_once_at_load_with_the_url_its_monitor_shows() {
    let c = DaemonConfig::parse(GOOD).unwrap();
    assert_eq!(c.monitors[0].probe.url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(c.monitors[1].probe.url.as_str(), "tcp://127.0.0.1:5432");
    assert_eq!(
        c.monitors[2].probe.url.as_str(),
        "docker://localhost/containers/web"
    );
    let udp = DaemonConfig::parse(
        "[[monitor]]\nname = \"dns\"\nurl = \"udp://127.0.0.1:53\"\npayload = \"ping\"\nexpect_reply = true\n",
    )
    .unwrap();
    let dns = &udp.monitors[0];
    assert_eq!(dns.config.payload.as_deref(), Some("ping"));
    assert!(dns.config.expect_reply);
    assert_eq!(dns.target, Target::Url(dns.probe.url.clone()));
}

/// Asserts that `text` has exactly the problems `expected`, each given as a prefix
/// (`line:column: section: ...`) and a fragment it contains.
fn assert_problems(text: &str, expected: &[(&str, &str)]) {
    let p = problems(text);
    assert_eq!(p.len(), expected.len(), "{p:?}");
    for (problem, (prefix, fragment)) in p.iter().zip(expected) {
        assert!(
            problem.starts_with(prefix) && problem.contains(fragment),
            "{prefix} {fragment}: {p:?}"
        );
    }
}

/// Asserts, for each `(text, prefix, fragment)`, that the first problem of `text` starts
/// with `prefix` (`line:column: section: `) and contains `fragment`.
fn assert_first_problems(cases: &[(&str, &str, &str)]) {
    for (text, prefix, fragment) in cases {
        let p = problems(text);
        assert!(
            p[0].starts_with(prefix) && p[0].contains(fragment),
            "{text:?}: {p:?}"
        );
    }
}

#[test]
fn notifier_tables_are_checked_by_their_provider() {
    let p = problem(
        "[[notify]]\nname = \"phone\"\nprovider = \"ntfy\"\nurl = \"https://ntfy.sh\"\ntopik = \"x\"\n",
    );
    assert!(
        p.starts_with("5:1: [[notify]]: ") && p.contains("topik"),
        "{p}"
    );
    assert_first_problems(&[(
        "[[notify]]\nname = \"x\"\nprovider = \"carrier-pigeon\"\n",
        "",
        "carrier-pigeon",
    )]);
}

#[test]
fn notifier_problems_are_at_their_keys() {
    assert_problems(
        "[[notify]]\nname = \"phone\"\nprovider = \"ntfy\"\nurl = \"https://ntfy.sh\"\ntopik = \"x\"\n  colour = 1\n",
        &[
            ("5:1: ", "`topik`"),
            (
                "6:3: ",
                "accepted keys for ntfy: name, provider, format, url, topic",
            ),
        ],
    );
    assert_first_problems(&[
        // A value health-notify rejects is reported at its key.
        (
            "[[notify]]\nname = \"hook\"\nprovider = \"webhook\"\nurl = \"ftp://x/\"\n",
            "4:1: [[notify]]: invalid notifier \"hook\": invalid `url`",
            "",
        ),
        (
            "[[notify]]\nprovider = \"webhook\"\nurl = \"http://x/\"\n",
            "1:1: [[notify]]: missing `name`",
            "",
        ),
    ]);
}

#[test]
fn what_only_a_probe_can_tell_is_reported_with_its_monitor() {
    // Exactly one problem: the probe's.
    problem("[[monitor]]\nname = \"db\"\nurl = \"tcp://db.internal\"\n");
    assert_first_problems(&[
        (
            "[[monitor]]\nname = \"db\"\nurl = \"tcp://db.internal\"\n",
            "3:1: [[monitor]] \"db\": ",
            "tcp://db.internal",
        ),
        (
            "[[monitor]]\nname = \"x\"\nurl = \"gopher://h/\"\n",
            "",
            "supported schemes: http, https, h2c",
        ),
        (
            "[[monitor]]\nname = \"x\"\nurl = \"tcp://h:1\"\nexpect_reply = true\n",
            "",
            "udp targets only",
        ),
    ]);
}

#[test]
fn a_password_in_a_bad_url_is_masked_and_the_problem_is_at_url() {
    let p = problem("[[monitor]]\nname = \"x\"\nurl = \"gopher://admin:s3cret@h/\"\n");
    assert!(!p.contains("s3cret"), "{p}");
    assert!(
        p.starts_with("3:1: [[monitor]] \"x\": invalid `url` = \"gopher://admin:***@h/\""),
        "{p}"
    );
}

#[test]
fn problems_inside_agent_and_docker_tables_name_the_inner_key() {
    for (table, expected) in [
        (
            "agent = { url = \"https://ag:8890\", ca = \"/nonexistent/ca.pem\" }",
            "invalid `agent.ca` = \"/nonexistent/ca.pem\": ",
        ),
        (
            "agent = { url = \"http://ag:8890\", ca = \"ca.pem\" }",
            "invalid `agent.url` = \"http://ag:8890/\": ",
        ),
        (
            "agent = { url = \"no url\" }",
            "invalid `agent.url` = \"no url\": ",
        ),
        (
            "docker = { container = \"web\", host = \"ftp://engine\" }",
            "invalid `docker.host` = \"ftp://engine\": ",
        ),
    ] {
        let p = problem(&format!(
            "[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\n{table}\n"
        ));
        assert!(
            p.starts_with(&format!("4:1: [[monitor]] \"a\": {expected}")),
            "{p}"
        );
    }
}

#[test]
fn the_listen_address_defaults() {
    let c = DaemonConfig::parse("").unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert!(c.monitors.is_empty());
}

/// The one problem of `text`.
fn problem(text: &str) -> String {
    let mut p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    p.remove(0)
}

fn problems(text: &str) -> Vec<String> {
    DaemonConfig::parse(text)
        .unwrap_err()
        .into_iter()
        .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
        .collect()
}

#[test]
fn problems_name_line_column_key_and_reason() {
    let text = "[[monitor]]\nname = \"api\"\nurl = \"http://x/\"\ninterval = 30\n";
    let p = problem(text);
    assert!(p.starts_with("4:1: [[monitor]] \"api\": "), "{p}");
    assert!(p.contains("`interval`") && p.contains("\"30s\""), "{p}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = r#"
[defaults]
timeout = "0s"

[[monitor]]
name = "a"
url = "not a url"

[[monitor]]
name = "b"
url = "http://b/"
bogus = 1
notify = ["nobody"]

[[monitor]]
url = "http://c/"

[[monitor]]
name = "a"
url = "http://a2/"
"#;
    let p = problems(text);
    for (prefix, fragment) in [
        ("3:1:", "[defaults]"),
        ("7:1:", "`url`"),
        ("12:1:", "bogus"),
        ("13:1:", "\"nobody\""),
        ("", "missing `name`"),
        ("", "duplicate `name` = \"a\""),
    ] {
        assert!(
            p.iter()
                .any(|m| m.starts_with(prefix) && m.contains(fragment)),
            "{prefix} {fragment}: {p:?}"
        );
    }
    let lines: Vec<usize> = p
        .iter()
        .map(|m| m.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
}

#[test]
fn every_bad_key_of_one_table_is_reported_at_its_own_column() {
    let text = "[[monitor]]\nname = \"api\"\nurl = \"http://x/\"\n  interval = 30\npath = \"health\"\nretries = \"three\"\ntimeout = \"366d\"\nintervall = \"1s\"\n";
    let p = problems(text);
    assert_eq!(
        p,
        [
            "4:3: [[monitor]] \"api\": invalid `interval` = 30: a bare number is not a duration; expected a string like \"30s\" (units: ms, s, m, h, d)",
            "5:1: [[monitor]] \"api\": invalid `path` = \"health\": must start with `/`",
            "6:1: [[monitor]] \"api\": invalid `retries` = \"three\": expected i64, found string \"three\"",
            "7:1: [[monitor]] \"api\": invalid `timeout` = \"366d\": must be at most 365d",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!(
            "8:1: [[monitor]] \"api\": unknown key `intervall` = \"1s\"; accepted keys: name, url, docker, agent, notify, group, remind_every, depends_on, flap_threshold, flap_window, {}",
            value::fields_of::<health_types::HealthCheckOverrides>().join(", ")
        )])
        .collect::<Vec<_>>()
    );
}

#[test]
fn unknown_keys_list_every_accepted_key_of_their_table() {
    let p = problem("[[monitor]]\nname = \"a\"\nurl = \"udp://h:1\"\nexpects = \"x\"\n");
    for key in [
        "name",
        "url",
        "docker",
        "agent",
        "notify",
        "interval",
        "timeout",
        "path",
        "method",
        "retries",
        "disable",
        "rise",
        "jitter",
        "fast_interval",
        "down_interval",
        "max_errors",
        "expected_status",
        "headers",
        "tls_verify",
        "payload",
        "expect_reply",
    ] {
        assert!(
            p.contains(&format!(" {key},")) || p.ends_with(&format!(" {key}")),
            "{key}: {p:?}"
        );
    }
    let p = problems("[server]\nlisten = \"127.0.0.1:1\"\nport = 1\n");
    assert_eq!(
        p,
        [
            "3:1: [server]: unknown key `port` = 1; accepted keys: listen, token, token_file, public_read, max_connections"
        ]
    );
    let p = problems("[defaults]\nname = \"x\"\n");
    assert!(
        p[0].starts_with(
            "2:1: [defaults]: unknown key `name` = \"x\"; accepted keys: interval, timeout,"
        ),
        "{p:?}"
    );
    let p = problems("listen = \"127.0.0.1:1\"\n");
    assert_eq!(
        p,
        [
            "1:1: top level: unknown key `listen` = \"127.0.0.1:1\"; accepted keys: server, storage, delivery, defaults, notify, monitor, modules, maintenance"
        ]
    );
}

#[test]
fn defaults_errors_are_reported_once_at_defaults() {
    let p =
        problem("[defaults]\ntimeout = \"0s\"\n[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\n");
    assert!(p.starts_with("2:1: [defaults]: invalid `timeout`"), "{p}");
}

#[test]
fn durations_over_a_year_are_rejected_at_their_key() {
    assert_problems(
        "[defaults]\ndown_interval = \"8761h\"\n[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\n    jitter = \"400d\"\n",
        &[
            (
                "2:1: [defaults]: invalid `down_interval` = \"8761h\": must be at most 365d",
                "",
            ),
            (
                "6:5: [[monitor]] \"a\": invalid `jitter` = \"400d\": must be at most 365d",
                "",
            ),
        ],
    );
}

#[test]
fn toml_syntax_errors_have_a_position() {
    assert_first_problems(&[("[[monitor]]\nname = \"a\nurl = 1\n", "2:", "")]);
}

#[test]
fn unknown_sections_and_server_keys_are_rejected() {
    assert_first_problems(&[
        ("[servr]\nlisten = \"x\"\n", "", "servr"),
        ("[server]\nlisten = \"localhost\"\n", "2:1:", "`listen`"),
    ]);
}

#[test]
fn inline_table_keys_are_located_and_checked() {
    assert_first_problems(&[
        (
            "[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\nagent = { url = \"https://ag:8890\", cert = \"c.pem\" }\n",
            "4:1:",
            "both `cert` and `key`",
        ),
        (
            "[[monitor]]\nname = \"a\"\nurl = \"http://a/\"\ndocker = { image = \"x\" }\n",
            "4:1:",
            "image",
        ),
    ]);
}

/// Validation is one linear pass: a file of 20 000 monitors with three problems each
/// reports all 60 000, each at its key. (How long it takes is measured outside the
/// tests; see the commit message.)
#[test]
fn twenty_thousand_bad_monitors_report_every_problem() {
    const MONITORS: usize = 20_000;
    let mut text = String::new();
    for i in 0..MONITORS {
        write!(
            text,
            "[[monitor]]\nname = \"m{i}\"\nurl = \"not a url\"\ninterval = 30\nbogus = 1\n\n"
        )
        .unwrap();
    }
    let p = DaemonConfig::parse(&text).unwrap_err();
    assert_eq!(p.len(), 3 * MONITORS);
    let last = &p[3 * MONITORS - 3..];
    let first_line = 6 * (MONITORS - 1) + 1;
    assert_eq!(
        last.iter().map(|p| (p.line, p.column)).collect::<Vec<_>>(),
        [
            (first_line + 2, 1),
            (first_line + 3, 1),
            (first_line + 4, 1)
        ]
    );
    let name = format!("[[monitor]] \"m{}\": ", MONITORS - 1);
    assert!(
        last[0]
            .message
            .starts_with(&format!("{name}invalid `url` = \"not a url\"")),
        "{last:?}"
    );
    assert!(
        last[1]
            .message
            .starts_with(&format!("{name}invalid `interval` = 30")),
        "{last:?}"
    );
    assert!(
        last[2]
            .message
            .starts_with(&format!("{name}unknown key `bogus` = 1")),
        "{last:?}"
    );
}

#[test]
fn storage_and_delivery_are_read_and_checked_at_their_keys() {
    let c = DaemonConfig::parse(
        "[storage]\npath = \"/var/lib/healthd/h.db\"\n[delivery]\nmax_age = \"2h\"\nmax_backoff = \"30s\"\n",
    )
    .unwrap();
    assert_eq!(
        c.storage.as_deref(),
        Some(std::path::Path::new("/var/lib/healthd/h.db"))
    );
    assert_eq!(c.delivery.max_age, Duration::from_secs(7200));
    assert_eq!(c.delivery.max_backoff, Duration::from_secs(30));
    let d = DaemonConfig::parse("").unwrap();
    assert_eq!(d.storage, None);
    assert_eq!(
        (d.delivery.max_age, d.delivery.max_backoff),
        (Duration::from_secs(86_400), Duration::from_secs(300))
    );
    let p = problems(
        "[storage]\npath = 3\nkeep = true\n[delivery]\nmax_age = 30\nmax_backoff = \"366d\"\nmax_retries = 5\n",
    );
    assert_eq!(p.len(), 5, "{p:?}");
    assert!(
        p[0].starts_with("2:1: [storage]: invalid `path` = 3"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("3:1: [storage]: unknown key `keep`"),
        "{p:?}"
    );
    assert!(
        p[2].starts_with("5:1: [delivery]: invalid `max_age` = 30: a bare number"),
        "{p:?}"
    );
    assert!(
        p[3].starts_with("6:1: [delivery]: invalid `max_backoff`") && p[3].contains("365d"),
        "{p:?}"
    );
    assert!(
        p[4].starts_with("7:1: [delivery]: unknown key `max_retries`")
            && p[4].contains("accepted keys: max_age, max_backoff"),
        "{p:?}"
    );
    let p = problems("[delivery]\nmax_backoff = \"500ms\"\n");
    assert!(p[0].contains("at least 1s"), "{p:?}");
}

#[test]
fn storage_retention_defaults_to_90_days_and_is_checked_at_its_key() {
    let d = DaemonConfig::parse("").unwrap();
    assert_eq!(d.history_retention, Duration::from_secs(90 * 86_400));
    let c = DaemonConfig::parse("[storage]\nretention = \"30d\"\n").unwrap();
    assert_eq!(c.history_retention, Duration::from_secs(30 * 86_400));
    assert_eq!(c.storage, None);
    let c = DaemonConfig::parse("[storage]\npath = \":memory:\"\nretention = \"365d\"\n").unwrap();
    assert_eq!(c.history_retention, Duration::from_secs(365 * 86_400));
    let p = problems(
        "[storage]\nretention = 90\n[[monitor]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n",
    );
    assert_eq!(
        p,
        [
            "2:1: [storage]: invalid `retention` = 90: a bare number is not a duration; expected a string like \"30s\" (units: ms, s, m, h, d)"
        ]
    );
    let p = problems("[storage]\nretention = \"ninety days\"\n");
    assert!(
        p[0].starts_with("2:1: [storage]: invalid `retention` = \"ninety days\""),
        "{p:?}"
    );
    let p = problems("[storage]\nretention = \"400d\"\n");
    assert!(
        p[0].contains("`retention`") && p[0].contains("365d"),
        "{p:?}"
    );
    let p = problems("[storage]\nretention = \"12h\"\n");
    assert_eq!(
        p,
        [
            "2:1: [storage]: invalid `retention` = \"12h\": must be at least 1d: uptime is shown over 24 hours at the least"
        ]
    );
    let p = problems("[storage]\nretention = \"0s\"\n");
    assert!(
        p[0].contains("invalid `retention` = \"0s\": must be greater than 0"),
        "{p:?}"
    );
    let p = problems("[storage]\nkeep = \"1d\"\n");
    assert!(p[0].contains("accepted keys: path, retention"), "{p:?}");
}

#[test]
fn a_monitor_group_is_a_non_empty_string() {
    let c = DaemonConfig::parse(
        "[[monitor]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\ngroup = \" Edge \"\n[[monitor]]\nname = \"b\"\nurl = \"http://127.0.0.1/\"\n",
    )
    .unwrap();
    assert_eq!(c.monitors[0].group.as_deref(), Some("Edge"));
    assert_eq!(c.monitors[1].group, None);
    let p = problems(
        "[[monitor]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\ngroup = 3\n[[monitor]]\nname = \"b\"\nurl = \"http://127.0.0.1/\"\ngroup = \"  \"\n",
    );
    assert_eq!(
        p,
        [
            "4:1: [[monitor]] \"a\": invalid `group` = 3: expected a non-empty string: the name of the status page's group",
            "8:1: [[monitor]] \"b\": invalid `group` = \"  \": expected a non-empty string: the name of the status page's group",
        ]
    );
}

#[test]
fn a_file_with_retention_and_groups_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthd.toml");
    std::fs::write(
        &path,
        "[storage]\npath = \":memory:\"\nretention = \"30d\"\n[[monitor]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\ngroup = \"edge\"\n",
    )
    .unwrap();
    let c = DaemonConfig::load(&path).unwrap();
    assert_eq!(c.monitors[0].group.as_deref(), Some("edge"));
}

#[test]
fn server_access_and_limits_default_to_open_reads_and_512_connections() {
    let c = DaemonConfig::parse("").unwrap();
    assert_eq!(c.server, ServerSettings::default());
    assert_eq!(c.server.access.token, None);
    assert!(c.server.access.public_read);
    assert_eq!(c.server.max_connections, 512);
}

#[test]
fn server_token_public_read_and_max_connections_are_read() {
    let c = DaemonConfig::parse(
        "[server]\ntoken = \"  s3cret-token \"\npublic_read = false\nmax_connections = 64\n",
    )
    .unwrap();
    assert_eq!(
        c.server.access.token,
        Some(ApiToken::try_new("s3cret-token").unwrap())
    );
    assert!(!c.server.access.public_read);
    assert_eq!(c.server.max_connections, 64);
    // The token never shows in `Debug`.
    assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let c = DaemonConfig::parse(&format!(
        "[server]\ntoken_file = {:?}\n",
        file.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        c.server.access.token,
        Some(ApiToken::try_new("from-a-file").unwrap())
    );
}

#[test]
fn server_token_problems_name_their_keys_and_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let p = problems(&format!(
        "[server]\ntoken_file = {:?}\n",
        missing.display().to_string()
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("2:1: [server]: invalid `token_file`")
            && p[0].contains(&format!("cannot read {}", missing.display())),
        "{p:?}"
    );
    let p = problems(&format!(
        "[server]\ntoken_file = {:?}\n",
        empty.display().to_string()
    ));
    assert!(p[0].contains("the token is empty"), "{p:?}");

    assert_problems(
        "[server]\ntoken = \"a\"\ntoken_file = \"/t\"\n",
        &[
            ("3:1: [server]: invalid `token_file`", "cannot read /t"),
            ("3:1: [server]: ", "`token` and `token_file` are both set"),
        ],
    );
    let p = problems("[server]\ntoken = \"   \"\n");
    assert_eq!(p, ["2:1: [server]: invalid `token`: the token is empty"]);
    let p = problems("[server]\ntoken = \"has space-s3cret\"\n");
    assert!(
        p[0].starts_with("2:1: [server]: invalid `token`: a token is sent in a header")
            && !p[0].contains("s3cret"),
        "{p:?}"
    );
    let p = problems("[server]\ntoken = 12345\n");
    assert_eq!(
        p,
        ["2:1: [server]: invalid `token` = 12345: expected a string"]
    );
}

#[test]
fn server_public_read_and_max_connections_problems_are_at_their_keys() {
    assert_problems(
        "[server]\npublic_read = \"no\"\nmax_connections = 0\n",
        &[
            (
                "2:1: [server]: invalid `public_read` = \"no\"",
                "true or false",
            ),
            (
                "3:1: [server]: invalid `max_connections` = 0",
                "from 1 to 1000000",
            ),
        ],
    );
    for bad in ["-1", "1000001", "\"512\"", "5.5"] {
        let p = problem(&format!("[server]\nmax_connections = {bad}\n"));
        assert!(p.contains("from 1 to 1000000"), "{bad}: {p}");
    }
    // Reads can be closed only behind a token.
    let p = problem("[server]\npublic_read = false\n");
    assert!(
        p.starts_with("2:1: [server]: invalid `public_read` = false")
            && p.contains("`token` or `token_file`"),
        "{p}"
    );
}

#[test]
fn modules_layer_over_defaults_and_are_checked_like_monitors() {
    let c = DaemonConfig::parse(
        r#"
[defaults]
timeout = "3s"
path = "/health"

[modules.strict]
expected_status = ["200-299"]
timeout = "1s"

[modules.loose]
method = "HEAD"

# The README's.
[modules.http_2xx]
expected_status = ["200-299"]
follow_redirects = true
timeout = "5s"

[modules.tcp_banner]
payload = "PING\r\n"
expect = "^\\+PONG"

[[monitor]]
name = "api"
url = "http://127.0.0.1:8080/"
"#,
    )
    .unwrap();
    assert_eq!(c.probe_defaults.timeout, Duration::from_secs(3));
    assert_eq!(c.probe_defaults.path, "/health");
    let strict = &c.modules["strict"];
    assert_eq!(strict.timeout, Duration::from_secs(1));
    assert_eq!(strict.path, "/health", "[defaults] under the module's keys");
    assert!(strict.expected_status.is_some());
    assert_eq!(c.modules["loose"].timeout, Duration::from_secs(3));
    assert_eq!(c.modules.len(), 4);
    assert!(c.modules["http_2xx"].follow_redirects);

    let p = problems(
        r#"[modules.a]
timeout = "0s"
name = "x"

[modules.api]
interval = "1s"

[modules]
b = 3

[[monitor]]
name = "api"
url = "http://127.0.0.1:8080/"
"#,
    );
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(p[0].starts_with("2:1: [modules.a]: "), "{p:#?}");
    assert!(p[0].contains("timeout"), "{p:#?}");
    assert!(
        p[1].starts_with(
            "3:1: [modules.a]: unknown key `name` = \"x\"; accepted keys: interval, timeout,"
        ),
        "{p:#?}"
    );
    assert!(
        p[2].starts_with("5:10: [modules.api]: a [[monitor]] is also named \"api\""),
        "{p:#?}"
    );
    assert!(
        p[3].starts_with("9:1: [modules]: invalid `b` = 3: expected a table"),
        "{p:#?}"
    );
}

const ALERTING: &str = r#"
[[monitor]]
name = "db"
url = "tcp://127.0.0.1:5432"

[[monitor]]
name = "api"
url = "http://127.0.0.1:8080/"
depends_on = ["db"]
remind_every = "30m"
flap_threshold = 5

[[maintenance]]
monitors = ["api"]
start = 2024-05-01T02:00:00+02:00
end = "2024-05-01T03:00:00Z"

[[maintenance]]
cron = "0 3 * * SUN"
duration = "2h"
"#;

#[test]
fn alerting_keys_and_maintenance_windows_resolve() {
    let c = DaemonConfig::parse(ALERTING).unwrap();
    let api = &c.monitors[1].alert;
    assert_eq!(api.depends_on, ["db"]);
    assert_eq!(api.remind_every, Some(Duration::from_secs(1800)));
    assert_eq!(api.flap_threshold, 5);
    assert_eq!(api.flap_window, Duration::from_secs(600), "the default");
    assert_eq!(
        c.monitors[0].alert,
        health_notify::policy::AlertRules::default()
    );
    assert_eq!(c.maintenance.len(), 2);
    let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
    let fixed = &c.maintenance[0];
    assert!(fixed.covers("api") && !fixed.covers("db"));
    // A TOML datetime with an offset: 02:00+02:00 is midnight UTC.
    assert!(fixed.is_open(at("2024-05-01T00:00:00Z")));
    assert!(!fixed.is_open(at("2024-05-01T03:00:00Z")));
    let weekly = &c.maintenance[1];
    assert!(weekly.covers("db") && weekly.is_open(at("2024-05-05T04:59:00Z")));
}

#[test]
fn alerting_problems_are_at_their_keys() {
    let base = "[[monitor]]\nname = \"a\"\nurl = \"http://x/\"\n";
    assert_first_problems(&[
        (
            &format!("{base}remind_every = 30\n"),
            "4:1: [[monitor]] \"a\": invalid `remind_every` = 30",
            "a bare number is not a duration",
        ),
        (
            &format!("{base}flap_window = \"0s\"\n"),
            "4:1: [[monitor]] \"a\": invalid `flap_window`",
            "must be greater than 0",
        ),
        (
            &format!("{base}flap_threshold = 0\n"),
            "4:1: [[monitor]] \"a\": invalid `flap_threshold` = 0",
            "expected a whole number from 1 to 1000",
        ),
        (
            &format!("{base}depends_on = \"db\"\n"),
            "4:1: [[monitor]] \"a\": invalid `depends_on`",
            "expected a list of monitor names",
        ),
        (
            &format!("{base}depends_on = [\"db\"]\n"),
            "4:1: [[monitor]] \"a\": `depends_on` names \"db\"",
            "no [[monitor]] has that name",
        ),
        (
            &format!("{base}depends_on = [\"a\"]\n"),
            "4:1: [[monitor]] \"a\": ",
            "`depends_on` goes round in a circle: a -> a",
        ),
        (
            &format!(
                "{base}[[maintenance]]\nmonitors = [\"b\"]\nstart = \"2024-05-01T00:00:00Z\"\nend = \"2024-05-01T01:00:00Z\"\n"
            ),
            "5:1: [[maintenance]] 1: `monitors` names \"b\"",
            "no [[monitor]] has that name",
        ),
        (
            &format!(
                "{base}[[maintenance]]\nstart = \"2024-05-01T00:00:00\"\nend = \"2024-05-01T01:00:00Z\"\n"
            ),
            "5:1: [[maintenance]] 1: invalid `start`",
            "expected an RFC 3339 time with an offset",
        ),
        (
            &format!(
                "{base}[[maintenance]]\nstart = \"2024-05-01T02:00:00Z\"\nend = \"2024-05-01T01:00:00Z\"\n"
            ),
            "6:1: [[maintenance]] 1: ",
            "`end` must be after `start`",
        ),
        (
            &format!("{base}[[maintenance]]\ncron = \"61 * * * *\"\nduration = \"1h\"\n"),
            "5:1: [[maintenance]] 1: `cron` \"61 * * * *\"",
            "",
        ),
        (
            &format!("{base}[[maintenance]]\ncron = \"0 3 * * *\"\n"),
            "4:1: [[maintenance]] 1: missing `duration`",
            "",
        ),
        (
            &format!("{base}[[maintenance]]\nmonitors = []\n"),
            "4:1: [[maintenance]] 1: expected `start` and `end`",
            "or `cron` and `duration`",
        ),
        (
            &format!("{base}[[maintenance]]\ncron = \"0 3 * * *\"\nduration = \"1h\"\nwhen = 1\n"),
            "7:1: [[maintenance]] 1: unknown key `when` = 1",
            "accepted keys: monitors, start, end, cron, duration",
        ),
    ]);
    let cycle = "[[monitor]]\nname = \"a\"\nurl = \"http://x/\"\ndepends_on = [\"b\"]\n[[monitor]]\nname = \"b\"\nurl = \"http://y/\"\ndepends_on = [\"a\"]\n";
    assert_eq!(
        problem(cycle),
        "4:1: [[monitor]] \"a\": `depends_on` goes round in a circle: a -> b -> a"
    );
}
