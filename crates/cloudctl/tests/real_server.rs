//! cloudctl against a real `andromede-server` process: what it sends is what the server
//! accepts, and what it prints is what the server answers (refusals, explanations, pages).
//! Behaviour a real server cannot easily be made to show (a transient UNAVAILABLE, an instance
//! failing into ERROR, agents' reports) stays on the mock in mock_server.rs.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::{policy, Clients, Server, TOKEN};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs cloudctl (the binary of this very build) against `server`, with the test token.
fn cloudctl(server: &Server, args: &[&str]) -> Run {
    cloudctl_with_token(server, TOKEN, args)
}

fn cloudctl_with_token(server: &Server, token: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudctl"))
        .args(args)
        .env("ANDROMEDE_ENDPOINT", server.endpoint())
        .env("ANDROMEDE_TOKEN", token)
        .env_remove("ANDROMEDE_PROFILE")
        .env("ANDROMEDE_CONFIG", "/nonexistent/andromede.toml")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(server: &Server, args: &[&str]) -> String {
    let r = cloudctl(server, args);
    assert_eq!(r.code, 0, "cloudctl {args:?} failed:\n{}", r.stderr);
    r.stdout
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One server with a French datacenter, one big simulated host, `small`/`tiny` and project
/// `acme` allowed in FR.
async fn cloud(root: &std::path::Path) -> (Server, Clients) {
    let mut s = Server::new(1, root, &[]);
    s.start(true);
    let mut c = s.clients().await;
    c.wait_leader().await;
    c.datacenter("paris", "FR", "FR", "FR", &[]).await;
    c.host("paris-1", "paris", 64, 4.0).await;
    c.flavor_and_image().await;
    c.project("acme", policy(&["FR"], &[], &[], false), None)
        .await;
    (s, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follow_pages_past_the_message_limit_without_user_data() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = cloud(root.path()).await;
    // 75 instances with ~60 KiB of user-data each: one answer carrying them all would pass the
    // 4 MiB a gRPC client decodes by default.
    let user_data = "x".repeat(60 * 1024);
    const N: usize = 75;
    for i in 0..N {
        c.compute
            .create_instance(CreateInstanceRequest {
                name: format!("vm-{i:03}"),
                project: "acme".into(),
                flavor: "small".into(),
                image: "tiny".into(),
                user_data: user_data.clone(),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let out = ok(&s, &["instance", "list", "-p", "acme", "-o", "json"]);
    let list = json(&out);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["meta"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), N, "{names:?}");
    assert!(!out.contains("xxxxxxxx"), "a list carries user-data");
    // A table follows the pages too (its name lookups included).
    let table = ok(&s, &["instance", "list", "-p", "acme"]);
    assert_eq!(table.lines().filter(|l| l.contains("vm-")).count(), N);
    // The instance itself still has it.
    let one = json(&ok(
        &s,
        &["instance", "get", "vm-000", "-p", "acme", "-o", "json"],
    ));
    assert_eq!(
        one["user_data"].as_str().map(str::len),
        Some(user_data.len())
    );

    // The server pages in id order, each item once; page_size and page_token are checked.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = c
            .compute
            .list_instances(ListRequest {
                project: "acme".into(),
                page_size: 20,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.instances.len() <= 20);
        seen.extend(page.instances.into_iter().map(|i| i.meta.unwrap().id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), &seen), (N, &sorted));
    for (size, token, field) in [(0, "not-a-token", "page_token"), (5000, "", "page_size")] {
        let err = c
            .compute
            .list_instances(ListRequest {
                page_size: size,
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{}", err.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_get_list_and_delete() {
    let root = tempfile::tempdir().unwrap();
    let (s, _c) = cloud(root.path()).await;

    let status = json(&ok(&s, &["cluster", "status", "-o", "json"]));
    assert_eq!(status["state"], "leader", "{status}");
    assert_eq!(status["members"][0]["role"], "voter", "{status}");
    assert_eq!(status["members"][0]["leader"], true, "{status}");

    // The same request id twice is one instance.
    let create = [
        "instance",
        "create",
        "web",
        "-p",
        "acme",
        "--flavor",
        "small",
        "--image",
        "tiny",
        "--request-id",
        "req-web-1",
        "--wait",
        "-o",
        "json",
    ];
    let first = json(&ok(&s, &create));
    assert_eq!(first["state"], "INSTANCE_STATE_RUNNING", "{first}");
    let again = json(&ok(&s, &create));
    assert_eq!(again["meta"]["id"], first["meta"]["id"]);

    let list = json(&ok(&s, &["instance", "list", "-o", "json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let table = ok(&s, &["instance", "list"]);
    let header = table.lines().next().unwrap_or_default();
    for col in ["ID", "NAME", "STATE", "HOST", "DATACENTER", "COUNTRY"] {
        assert!(header.contains(col), "{header}");
    }
    // Tables name the host and datacenter rather than showing their ids.
    assert!(
        table.contains("paris-1") && table.contains("RUNNING"),
        "{table}"
    );

    let got = ok(&s, &["instance", "get", "web", "-p", "acme", "-o", "yaml"]);
    assert!(got.contains("state: INSTANCE_STATE_RUNNING"), "{got}");

    let gone = json(&ok(
        &s,
        &[
            "instance", "delete", "web", "-p", "acme", "--wait", "-o", "json",
        ],
    ));
    assert_eq!(gone["deleted"], true, "{gone}");
    assert_eq!(gone["id"], first["meta"]["id"]);
    let r = cloudctl(&s, &["instance", "get", "web", "-p", "acme"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: not found: "), "{}", r.stderr);

    // A join token's secret is shown once, at creation, never in a list.
    let created = ok(
        &s,
        &[
            "host",
            "join-token",
            "create",
            "--datacenter",
            "paris",
            "-o",
            "json",
        ],
    );
    let secret = json(&created)["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!secret.is_empty(), "{created}");
    let listed = ok(&s, &["host", "join-token", "list", "-o", "json"]);
    assert_eq!(json(&listed).as_array().map(Vec::len), Some(1), "{listed}");
    assert!(!listed.contains(&secret), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_print_the_servers_answer_and_exit_one() {
    let root = tempfile::tempdir().unwrap();
    let (s, mut c) = cloud(root.path()).await;

    // Field violations: each named, under the server's own message.
    let r = cloudctl(
        &s,
        &[
            "instance", "create", "", "-p", "acme", "--flavor", "small", "--image", "tiny",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: invalid argument: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("\n  - name: "), "{}", r.stderr);

    // A placement nothing satisfies explains itself per filter, as the server wrote it.
    let r = cloudctl(
        &s,
        &[
            "instance",
            "create",
            "far",
            "-p",
            "acme",
            "--flavor",
            "small",
            "--image",
            "tiny",
            "--country",
            "DE",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: failed precondition: ")
            && r.stderr
                .contains("outside the sovereignty policy of project acme"),
        "{}",
        r.stderr
    );

    // A cluster already initialized says so.
    let r = cloudctl(&s, &["cluster", "init"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: failed precondition: "),
        "{}",
        r.stderr
    );

    // A wrong token: the server refuses, cloudctl says where a token comes from.
    let r = cloudctl_with_token(&s, "n0t-th3-t0k3n", &["project", "list"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: unauthenticated: ") && r.stderr.contains("ANDROMEDE_TOKEN"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("n0t-th3-t0k3n"), "{}", r.stderr);

    // A project that still owns resources names them.
    c.instance("web-1", "acme", PlacementConstraints::default())
        .await
        .unwrap();
    let r = cloudctl(&s, &["project", "delete", "acme"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim_end(),
        "error: failed precondition: project acme still owns instance web-1; delete them first"
    );
}

/// The lines of `text` that hold a token secret.
fn secrets_in(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("andro_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_work_in_their_project_and_stop_when_revoked() {
    let root = tempfile::tempdir().unwrap();
    let (s, _c) = cloud(root.path()).await;

    let me = json(&ok(&s, &["whoami", "-o", "json"]));
    assert_eq!(me["role_name"], "cloud-admin", "{me}");
    assert!(me.get("secret_sha256").is_none(), "{me}");

    // The secret is printed once, alone on its line, and is a well-formed token.
    let created = ok(
        &s,
        &[
            "token",
            "create",
            "ci",
            "--project",
            "acme",
            "--role",
            "member",
            "--ttl",
            "1h",
        ],
    );
    assert!(created.contains("NOT be shown again"), "{created}");
    let secrets = secrets_in(&created);
    assert_eq!(secrets.len(), 1, "{created}");
    let secret = secrets[0].to_owned();
    let parsed = andromede_auth::parse(&secret).unwrap();

    // As JSON: the token (role named, no hash) and its secret.
    let ro = json(&ok(
        &s,
        &[
            "token", "create", "ro", "-p", "acme", "--role", "reader", "-o", "json",
        ],
    ));
    assert!(andromede_auth::parse(ro["secret"].as_str().unwrap_or_default()).is_ok());
    assert_eq!(ro["token"]["role"], "ROLE_READER", "{ro}");
    assert!(ro["token"].get("secret_sha256").is_none(), "{ro}");

    // The new token says who it is.
    let as_ci = |args: &[&str]| cloudctl_with_token(&s, &secret, args);
    let who = as_ci(&["whoami"]);
    assert_eq!(who.code, 0, "{}", who.stderr);
    for want in [parsed.id.as_str(), "ci", "acme", "member", "expires"] {
        assert!(who.stdout.contains(want), "{want}: {}", who.stdout);
    }
    assert!(!who.stdout.contains("never"), "it expires: {}", who.stdout);

    // It works in its project without --project, and nowhere beyond.
    let r = as_ci(&[
        "server-group",
        "create",
        "spread",
        "--policy",
        "anti-affinity",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        json(&r.stdout)["meta"]["project_id"],
        json(&ok(&s, &["project", "get", "acme", "-o", "json"]))["meta"]["id"]
    );
    let r = as_ci(&["host", "list"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: permission denied: ") && r.stderr.contains("cloudctl whoami"),
        "{}",
        r.stderr
    );
    // A cloud token still has to name the project.
    let r = cloudctl(&s, &["server-group", "create", "g", "--policy", "affinity"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: invalid argument: ") && r.stderr.contains("\n  - project: "),
        "{}",
        r.stderr
    );

    // Lists show it, without any secret.
    let table = ok(&s, &["token", "list"]);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "ID",
        "NAME",
        "SCOPE",
        "ROLE",
        "CREATED BY",
        "CREATED",
        "EXPIRES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = table
        .lines()
        .find(|l| l.contains(&parsed.id))
        .unwrap_or_default();
    assert!(
        row.contains("ci")
            && row.contains("acme")
            && row.contains("member")
            && row.contains("bootstrap"),
        "{table}"
    );
    assert!(
        secrets_in(&table).is_empty() && !table.contains(&secret),
        "{table}"
    );
    let listed = ok(&s, &["token", "list", "-p", "acme", "-o", "json"]);
    assert_eq!(json(&listed).as_array().map(Vec::len), Some(2), "{listed}");
    assert!(!listed.contains(&parsed.secret), "{listed}");

    // The same request id again returns the first token, whose secret is not shown twice.
    let again = [
        "token",
        "create",
        "twice",
        "--role",
        "reader",
        "--request-id",
        "req-tok-1",
    ];
    ok(&s, &again);
    let r = cloudctl(&s, &again);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("shown to that attempt only") && secrets_in(&r.stdout).is_empty(),
        "{}{}",
        r.stdout,
        r.stderr
    );

    // Revoked, it stops working, and says so.
    let out = ok(&s, &["token", "revoke", "ci", "-p", "acme"]);
    assert!(out.contains("revoked token ci"), "{out}");
    let r = as_ci(&["whoami"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("error: unauthenticated: ") && r.stderr.contains("revoked"),
        "{}",
        r.stderr
    );
    assert!(!ok(&s, &["token", "list"]).contains(&parsed.id));
    let all = ok(&s, &["token", "list", "--all"]);
    let row = all
        .lines()
        .find(|l| l.contains(&parsed.id))
        .unwrap_or_default();
    assert!(row.trim_end().ends_with("revoked"), "{all}");
}
