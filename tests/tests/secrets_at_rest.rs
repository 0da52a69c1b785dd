//! A known token secret and a known user-data string, used through a real server (created,
//! read back, snapshotted, restarted), appear nowhere in its data directory or its log, byte
//! for byte: the cloud keeps the token's hash and the user-data sealed.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::{files_containing, policy, Clients, Server};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn token_secrets_and_user_data_never_reach_disk_or_logs() {
    let root = tempfile::tempdir().unwrap();
    // Small snapshots so that the run writes one.
    let mut s = Server::new(
        1,
        root.path(),
        &["--snapshot-every", "20", "--keep-logs", "5"],
    );
    s.start(true);
    let mut admin = s.clients().await;
    admin.wait_leader().await;
    admin.datacenter("paris", "FR", "FR", "FR", &[]).await;
    admin.host("h1", "paris", 64, 1.0).await;
    admin.flavor_and_image().await;
    admin
        .project("p", policy(&["FR"], &[], &[], false), None)
        .await;

    let created = admin
        .identity
        .create_token(CreateTokenRequest {
            name: "ci".into(),
            project: "p".into(),
            role: Role::Member as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = created.secret;
    let secret = andromede_auth::parse(&token).unwrap().secret;

    let canary = format!("user-data-canary-{}", uuid::Uuid::new_v4().simple());
    let mut member = Clients::with_token(s.channel().await, &token);
    let inst = member
        .compute
        .create_instance(CreateInstanceRequest {
            name: "web-1".into(),
            flavor: "small".into(),
            image: "tiny".into(),
            user_data: format!("#cloud-config\n# {canary}\n"),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = inst.meta.unwrap().id;
    // Its readers get it back as given.
    let got = member
        .compute
        .get_instance(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: id.clone(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.user_data.contains(&canary), "{got:?}");

    // Enough writes for a snapshot and a compacted log.
    for i in 0..40 {
        member
            .compute
            .create_server_group(CreateServerGroupRequest {
                name: format!("g{i}"),
                policy: GroupPolicy::AntiAffinity as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    member.identity.who_am_i(WhoAmIRequest {}).await.unwrap();
    s.terminate(Duration::from_secs(20));
    // Restarted, it reads the sealed value back from disk.
    s.start(false);
    s.clients().await.wait_leader().await;
    let mut member = Clients::with_token(s.channel().await, &token);
    let again = member
        .compute
        .get_instance(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: id.clone(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.user_data.contains(&canary), "{again:?}");
    s.terminate(Duration::from_secs(20));

    let dir = root.path().join("node-1");
    let snapshots = dir.join("state/snapshots");
    assert!(
        snapshots.is_dir() && std::fs::read_dir(&snapshots).unwrap().next().is_some(),
        "the run wrote no snapshot under {}",
        snapshots.display()
    );
    // Not vacuous: the user-data is on disk, sealed.
    assert!(
        !files_containing(&dir, b"sealed:v1:").is_empty(),
        "no sealed value anywhere under {}",
        dir.display()
    );
    for (what, needle) in [
        ("the token", token.as_str()),
        ("the token's secret", secret.as_str()),
        ("the user-data", canary.as_str()),
    ] {
        let hits = files_containing(&dir, needle.as_bytes());
        assert!(hits.is_empty(), "{what} is in {hits:?}");
    }
}
