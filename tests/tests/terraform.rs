//! Acceptance test of terraform-provider-andromede: the real `terraform` binary drives a real
//! server over TLS (the provider's `ca_cert`) through create, no-op plan, in-place update,
//! replacement, drift repair, import, a refused placement and destroy. As in a real cloud the
//! operator's provider (cloud-admin) manages the project, and the tenant's provider, with a
//! member token of that project, everything in it.

#![allow(clippy::unwrap_used)]

use andromede_api::v1::*;
use andromede_tests::terraform::Workspace;
use andromede_tests::{bin, Clients, Server, TOKEN};
use std::process::Command;

struct Shape {
    description: &'static str,
    quota_instances: u32,
    web2_countries: &'static str,
    imports: bool,
    refused: bool,
}

fn config(s: &Shape) -> String {
    let mut c = format!(
        r#"
data "andromede_datacenters" "eu" {{
  jurisdiction = "EU"
}}

resource "andromede_project" "ministry" {{
  name                  = "ministry"
  description           = "{desc}"
  allowed_jurisdictions = ["EU"]
  operator_immunity     = true
  quota_instances       = {quota}
}}

resource "andromede_server_group" "ha" {{
  provider = andromede.tenant
  name    = "ha"
  project = andromede_project.ministry.name
  policy  = "anti-affinity"
  hard    = true
}}

resource "andromede_instance" "web1" {{
  provider = andromede.tenant
  name         = "web-1"
  project      = andromede_project.ministry.name
  flavor       = "small"
  image        = "tiny"
  user_data    = "hello"
  server_group = andromede_server_group.ha.name
  timeouts {{
    create = "2m"
    delete = "2m"
  }}
}}

resource "andromede_instance" "web2" {{
  provider = andromede.tenant
  name         = "web-2"
  project      = andromede_project.ministry.name
  flavor       = "small"
  image        = "tiny"
  server_group = andromede_server_group.ha.name
  countries    = ["{countries}"]
}}

resource "andromede_volume" "data" {{
  provider = andromede.tenant
  name          = "data"
  project       = andromede_project.ministry.name
  size_gib      = 10
  near_instance = andromede_instance.web1.id
}}

resource "andromede_volume_attachment" "data" {{
  provider = andromede.tenant
  volume   = andromede_volume.data.id
  instance = andromede_instance.web1.id
}}

output "project_id" {{ value = andromede_project.ministry.id }}
output "web1_id" {{ value = andromede_instance.web1.id }}
output "web2_id" {{ value = andromede_instance.web2.id }}
output "web2_country" {{ value = andromede_instance.web2.country }}
output "eu_dcs" {{ value = join(",", sort(data.andromede_datacenters.eu.names)) }}
"#,
        desc = s.description,
        quota = s.quota_instances,
        countries = s.web2_countries,
    );
    if s.imports {
        c.push_str(
            r#"
resource "andromede_instance" "imported" {
  provider = andromede.tenant
  name    = "imported"
  project = andromede_project.ministry.name
  flavor  = "small"
  image   = "tiny"
}

resource "andromede_volume" "imported" {
  provider = andromede.tenant
  name     = "imported-vol"
  project  = andromede_project.ministry.name
  size_gib = 5
}
"#,
        );
    }
    if s.refused {
        c.push_str(
            r#"
resource "andromede_instance" "escape" {
  provider = andromede.tenant
  name      = "escape"
  project   = andromede_project.ministry.name
  flavor    = "small"
  image     = "tiny"
  countries = ["US"]
}

resource "andromede_project" "us_only" {
  name              = "us-only"
  allowed_countries = ["US"]
}

resource "andromede_instance" "nowhere" {
  name    = "nowhere"
  project = andromede_project.us_only.name
  flavor  = "small"
  image   = "tiny"
}
"#,
        );
    }
    c
}

async fn all_instances(c: &mut Clients) -> Vec<Instance> {
    c.compute
        .list_instances(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances
}

/// Runs cloudctl against `server` and insists on success.
fn cloudctl(server: &Server, args: &[&str]) {
    let out = Command::new(bin("cloudctl"))
        .args(["--endpoint", &server.endpoint(), "--token", TOKEN])
        .arg("--ca-cert")
        .arg(server.ca_file())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloudctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates an instance of project ministry behind Terraform's back.
async fn stray_instance(c: &mut Clients, name: &str) {
    c.compute
        .create_instance(CreateInstanceRequest {
            name: name.into(),
            project: "ministry".into(),
            flavor: "small".into(),
            image: "tiny".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_drives_the_whole_lifecycle() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::new(1, root.path(), &[]);
    server.tls = true;
    server.start(true);
    let mut c = server.clients().await;
    c.wait_leader().await;
    c.datacenter("paris", "FR", "FR", "FR", &["secnumcloud"])
        .await;
    c.datacenter("frankfurt", "DE", "DE", "DE", &[]).await;
    for (h, dc) in [
        ("paris-1", "paris"),
        ("paris-2", "paris"),
        ("fra-1", "frankfurt"),
        ("fra-2", "frankfurt"),
    ] {
        c.host(h, dc, 32, 4.0).await;
    }
    c.flavor_and_image().await;

    // The operator made the project; its tenant holds a member token of it.
    c.project("ministry", SovereigntyPolicy::default(), None)
        .await;
    let member = c.member_token("ministry", "ministry-terraform").await;
    let mut ws = Workspace::new(
        root.path(),
        &bin("terraform-provider-andromede"),
        &server.endpoint(),
        TOKEN,
    );
    let ca = server.ca_file().display().to_string();
    ws.providers = format!(
        "provider \"andromede\" {{\n  ca_cert = \"{ca}\"\n}}\n\nprovider \"andromede\" {{\n  alias   = \"tenant\"\n  ca_cert = \"{ca}\"\n  token   = \"{member}\"\n}}\n"
    );
    let mut shape = Shape {
        description: "v1",
        quota_instances: 10,
        web2_countries: "FR",
        imports: false,
        refused: false,
    };

    // Create everything; a second plan has nothing to do.
    ws.write(&config(&shape));
    ws.ok(&["init", "-no-color"]);
    ws.ok(&[
        "import",
        "-no-color",
        "andromede_project.ministry",
        "ministry",
    ]);
    ws.apply();
    assert_eq!(ws.output("eu_dcs"), "frankfurt,paris");
    let plan = ws.plan();
    assert_eq!(plan.code, 0, "second plan is not empty:\n{}", plan.all());
    let project_id = ws.output("project_id");
    let web2 = ws.output("web2_id");
    let inst = c
        .compute
        .get_instance(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: ws.output("web1_id"),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inst.state, InstanceState::Running as i32);
    let vols = c
        .volumes
        .list_volumes(ListRequest {
            project: "ministry".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volumes;
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].attached_to, inst.meta.as_ref().unwrap().id);
    assert_eq!(vols[0].state, VolumeState::InUse as i32);

    // Description and quota change in place: same project id.
    shape.description = "v2";
    shape.quota_instances = 12;
    ws.write(&config(&shape));
    let plan = ws.plan();
    assert_eq!(plan.code, 2);
    assert!(plan.stdout.contains("updated in-place"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("must be replaced"), "{}", plan.stdout);
    ws.apply();
    assert_eq!(ws.output("project_id"), project_id);
    let p = c
        .identity
        .get_project(GetRequest {
            r#ref: Some(ResourceRef {
                id_or_name: project_id.clone(),
                project: String::new(),
            }),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.description, "v2");
    assert_eq!(p.quota.unwrap().instances, Some(12));

    // A new placement constraint replaces the instance.
    shape.web2_countries = "DE";
    ws.write(&config(&shape));
    let plan = ws.plan();
    assert!(plan.stdout.contains("must be replaced"), "{}", plan.stdout);
    ws.apply();
    let new_web2 = ws.output("web2_id");
    assert_ne!(new_web2, web2);
    assert_eq!(ws.output("web2_country"), "DE");
    assert_eq!(ws.plan().code, 0);

    // Deleted behind Terraform's back: the plan shows it, apply brings it back.
    cloudctl(
        &server,
        &["instance", "delete", "web-2", "-p", "ministry", "--wait"],
    );
    let plan = ws.plan();
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout
            .contains("andromede_instance.web2 will be created"),
        "{}",
        plan.stdout
    );
    ws.apply();
    assert_ne!(ws.output("web2_id"), new_web2);
    assert_eq!(ws.plan().code, 0);

    // Resources made outside Terraform are imported and then match the configuration.
    stray_instance(&mut c, "imported").await;
    c.volumes
        .create_volume(CreateVolumeRequest {
            name: "imported-vol".into(),
            project: "ministry".into(),
            size_gib: 5,
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    shape.imports = true;
    ws.write(&config(&shape));
    ws.ok(&[
        "import",
        "-no-color",
        "andromede_instance.imported",
        "ministry/imported",
    ]);
    ws.ok(&[
        "import",
        "-no-color",
        "andromede_volume.imported",
        "ministry/imported-vol",
    ]);
    let plan = ws.plan();
    assert_eq!(
        plan.code,
        0,
        "plan after import is not empty:\n{}",
        plan.all()
    );

    // Placements the policy forbids fail with the server's explanation and leave nothing.
    let before = all_instances(&mut c).await.len();
    shape.refused = true;
    ws.write(&config(&shape));
    let r = ws.run(&["apply", "-auto-approve", "-no-color"]);
    assert_ne!(
        r.code,
        0,
        "apply of a forbidden placement succeeded:\n{}",
        r.all()
    );
    // Terraform wraps diagnostics to the terminal width.
    let text = r.all().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("Creating instance escape"), "{text}");
    assert!(text.contains("outside the sovereignty policy"), "{text}");
    assert!(text.contains("Creating instance nowhere"), "{text}");
    assert!(text.contains("excluded by project policy"), "{text}");
    let names: Vec<String> = all_instances(&mut c)
        .await
        .into_iter()
        .map(|i| i.meta.unwrap().name)
        .collect();
    assert_eq!(names.len(), before, "{names:?}");
    assert!(!names.iter().any(|n| n == "escape" || n == "nowhere"));
    shape.refused = false;
    ws.write(&config(&shape));

    // A project still holding something Terraform does not manage cannot be destroyed; the
    // refusal names what is left, and carries no backtrace even where the user's shell enables
    // Rust backtraces.
    stray_instance(&mut c, "stray").await;
    let r = ws.run_with(
        &["destroy", "-auto-approve", "-no-color"],
        &[("RUST_BACKTRACE", "1")],
    );
    assert_ne!(
        r.code,
        0,
        "destroy of a non-empty project succeeded:\n{}",
        r.all()
    );
    let text = r.all().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("project ministry still owns instance stray; delete them first"),
        "{text}"
    );
    assert!(
        !text.contains("tf_provider::") && !text.contains(" 0: "),
        "a backtrace was shown:\n{}",
        r.all()
    );
    cloudctl(
        &server,
        &["instance", "delete", "stray", "-p", "ministry", "--wait"],
    );

    // Destroy removes everything it made or imported.
    ws.ok(&["destroy", "-auto-approve", "-no-color"]);
    assert!(all_instances(&mut c).await.is_empty());
    let vols = c
        .volumes
        .list_volumes(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .volumes;
    assert!(vols.is_empty(), "{vols:?}");
    let groups = c
        .compute
        .list_server_groups(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .server_groups;
    assert!(groups.is_empty(), "{groups:?}");
    let projects = c
        .identity
        .list_projects(ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert!(projects.is_empty(), "{projects:?}");
}
