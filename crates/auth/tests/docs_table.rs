//! The role table of docs/security.md says what `ACCESS` enforces: one row per `andromede.v1`
//! RPC, each with the access it needs, nothing missing, nothing extra, and every access name
//! explained in the legend.

use andromede_auth::access::{
    Access, ACCESS, CLOUD_ADMIN, CLOUD_READ, PROJECT_ADMIN, READ, TOKEN_READ, WRITE,
};
use std::collections::BTreeMap;

const PACKAGE: &str = "/andromede.v1.";

/// The name the documentation gives an access.
fn name(a: Access) -> &'static str {
    match a {
        Access::Public => "public",
        Access::Join => "join token",
        Access::Host => "host certificate",
        Access::Peer => "server certificate",
        t if t == READ => "read",
        t if t == WRITE => "write",
        t if t == PROJECT_ADMIN => "project-admin",
        t if t == TOKEN_READ => "token-read",
        t if t == CLOUD_READ => "cloud-read",
        t if t == CLOUD_ADMIN => "cloud-admin",
        other => panic!(
            "{other:?} has no name in docs/security.md: give it one here and in the legend there"
        ),
    }
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The cells of a markdown table row, trimmed and without backquotes.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().trim_matches('`').trim().to_owned())
        .collect()
}

/// The body rows of the one table whose header starts with `first` (case-sensitive).
fn table(text: &str, first: &[&str]) -> Vec<Vec<String>> {
    let mut lines = text.lines().peekable();
    let mut found = Vec::new();
    let mut tables = 0;
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with('|') {
            continue;
        }
        let header = cells(line);
        if header.len() < first.len() || header[..first.len()] != *first {
            continue;
        }
        tables += 1;
        // The separator row, then the body until the first line that is not a row.
        lines.next();
        while let Some(row) = lines.next_if(|l| l.trim_start().starts_with('|')) {
            found.push(cells(row));
        }
    }
    assert_eq!(
        tables, 1,
        "docs/security.md should have exactly one table with the header {first:?}"
    );
    found
}

#[test]
fn the_role_table_matches_access() {
    let text = doc();
    let mut documented: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in table(&text, &["RPC", "needs"]) {
        let (rpc, needs) = (row[0].clone(), row.get(1).cloned().unwrap_or_default());
        if let Some(before) = documented.insert(rpc.clone(), needs) {
            problems.push(format!("{rpc} is listed twice (once as {before:?})"));
        }
    }
    assert!(
        documented.len() > 50,
        "the role table looks empty: {documented:?}"
    );

    let mut enforced = BTreeMap::new();
    for (path, access) in ACCESS {
        if let Some(rpc) = path.strip_prefix(PACKAGE) {
            enforced.insert(rpc.to_owned(), name(*access));
        }
    }
    for (rpc, needs) in &enforced {
        match documented.get(rpc) {
            None => problems.push(format!("{rpc} ({needs}) is missing from the role table")),
            Some(d) if d != needs => {
                problems.push(format!("{rpc} is documented as {d:?} but needs {needs:?}"))
            }
            Some(_) => {}
        }
    }
    for rpc in documented.keys() {
        if !enforced.contains_key(rpc) {
            problems.push(format!(
                "{rpc} is in the role table but no such RPC is in ACCESS"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/security.md disagrees with crates/auth/src/access.rs:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_access_name_is_explained_in_the_legend() {
    let text = doc();
    let legend: Vec<String> = table(&text, &["access"])
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    let mut used: Vec<&str> = ACCESS.iter().map(|(_, a)| name(*a)).collect();
    used.sort_unstable();
    used.dedup();
    let missing: Vec<&&str> = used
        .iter()
        .filter(|n| !legend.iter().any(|l| l == *n))
        .collect();
    assert!(missing.is_empty(), "not in the legend: {missing:?}");
    let unknown: Vec<&String> = legend
        .iter()
        .filter(|l| !used.contains(&l.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the legend explains names no RPC needs: {unknown:?}"
    );
}
