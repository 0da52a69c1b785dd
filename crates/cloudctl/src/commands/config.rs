//! `cloudctl config`: contexts (the profiles of the profile file), listed, chosen and edited
//! locally, without a server. Edits go through `toml_edit`, so the comments and order of a file
//! written by hand survive them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use crate::cli::{ConfigCmd, GlobalArgs, SetContext};
use crate::client::{select_profile, shown_path, ConfigFile, EnvVars, Profile};
use crate::output::{list_table, print_value, OutputFormat};

pub fn run(cmd: ConfigCmd, global: &GlobalArgs, env: &EnvVars) -> Result<()> {
    let path = env.config_path();
    match cmd {
        ConfigCmd::GetContexts => get_contexts(global, env, path.as_deref()),
        ConfigCmd::CurrentContext => {
            let config = load(path.as_deref())?;
            let name = current_context(global, env, config.as_ref(), path.as_deref())?;
            print_value(global.output, &json!(name), || name.clone())
        }
        ConfigCmd::UseContext { name } => {
            let path = writable(path)?;
            use_context(&path, &name)?;
            warn_if_overridden(global, env);
            let value = json!({"current": name, "file": path.display().to_string()});
            print_value(global.output, &value, || {
                format!("switched to context `{name}` ({})", path.display())
            })
        }
        ConfigCmd::SetContext(args) => {
            // `--token` is a global option, so it parses here too; taking it would put a
            // secret on a command line, which other local users can read.
            if global.token.is_some() {
                bail!(
                    "set-context never takes a raw token: write it to a file (mode 0600) and pass \
                     --token-file FILE"
                );
            }
            let path = writable(path)?;
            let update = ContextUpdate::from_args(&args)?;
            let created = set_context(&path, &args.name, &update)?;
            let is_current = load(Some(&path))?
                .and_then(|c| c.current)
                .is_some_and(|c| c == args.name);
            let file = path.display().to_string();
            let value = json!({"context": args.name, "file": file, "created": created});
            print_value(global.output, &value, || {
                let verb = if created { "created" } else { "updated" };
                let mut text = format!("context `{}` {verb} in {}", args.name, path.display());
                if !is_current {
                    text.push_str(&format!(
                        "\nmake it the current one with `cloudctl config use-context {}`",
                        args.name
                    ));
                }
                text
            })
        }
    }
}

/// The file to edit; only missing when there is neither ANDROMEDE_CONFIG nor HOME.
fn writable(path: Option<PathBuf>) -> Result<PathBuf> {
    path.context("no profile file: HOME is not set; name one with ANDROMEDE_CONFIG=FILE")
}

fn load(path: Option<&Path>) -> Result<Option<ConfigFile>> {
    match path {
        Some(p) => ConfigFile::load(p),
        None => Ok(None),
    }
}

/// `current` only applies when no profile is named: saying so spares a puzzled user.
fn warn_if_overridden(global: &GlobalArgs, env: &EnvVars) {
    if let Some(p) = global.profile.as_deref().filter(|p| !p.is_empty()) {
        eprintln!("note: --profile {p} overrides `current` for this command line");
    } else if let Some(p) = &env.profile {
        eprintln!("note: ANDROMEDE_PROFILE={p} overrides `current` while it is set");
    }
}

/// The context a command would use now.
fn current_context(
    global: &GlobalArgs,
    env: &EnvVars,
    config: Option<&ConfigFile>,
    path: Option<&Path>,
) -> Result<String> {
    match select_profile(global.profile.as_deref(), env, config, path)? {
        Some((name, _)) => Ok(name),
        None if config.is_none() => bail!(
            "no current context: the profile file {} does not exist (create a context with \
             `cloudctl config set-context NAME --endpoint URL`)",
            shown_path(path)
        ),
        None => bail!(
            "no current context: {} has no `current` and no `default` profile, and neither \
             --profile nor ANDROMEDE_PROFILE is set (pick one with `cloudctl config use-context \
             NAME`)",
            shown_path(path)
        ),
    }
}

/// One line of `get-contexts`; the token itself is never part of it.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ContextRow {
    name: String,
    current: bool,
    endpoint: Option<String>,
    ca_cert: Option<PathBuf>,
    /// Where the token comes from: `token`, `token_file` or `none`.
    token_source: &'static str,
    token_file: Option<PathBuf>,
}

impl ContextRow {
    fn new(name: &str, p: &Profile, current: Option<&str>) -> Self {
        let token_source = match (&p.token, &p.token_file) {
            (Some(t), _) if !t.is_empty() => "token",
            (_, Some(_)) => "token_file",
            _ => "none",
        };
        ContextRow {
            name: name.to_owned(),
            current: current == Some(name),
            endpoint: p.endpoint.clone(),
            ca_cert: p.ca_cert.clone(),
            token_source,
            token_file: p.token_file.clone(),
        }
    }

    fn cells(&self) -> Vec<String> {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let token = match (self.token_source, &self.token_file) {
            ("token_file", Some(f)) => format!("token_file {}", f.display()),
            (source, _) => source.to_owned(),
        };
        vec![
            if self.current { "*" } else { "" }.to_owned(),
            self.name.clone(),
            dash(self.endpoint.clone()),
            dash(self.ca_cert.as_ref().map(|p| p.display().to_string())),
            token,
        ]
    }
}

fn rows(config: &ConfigFile, current: Option<&str>) -> Vec<ContextRow> {
    config
        .profiles
        .iter()
        .map(|(name, p)| ContextRow::new(name, p, current))
        .collect()
}

fn get_contexts(global: &GlobalArgs, env: &EnvVars, path: Option<&Path>) -> Result<()> {
    let config = load(path)?.unwrap_or_default();
    // A broken `current` is what one lists contexts to fix: show them anyway.
    let current = match select_profile(global.profile.as_deref(), env, Some(&config), path) {
        Ok(selected) => selected.map(|(name, _)| name),
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    };
    if config.profiles.is_empty() && global.output == OutputFormat::Table {
        eprintln!(
            "no contexts in {} (create one with `cloudctl config set-context NAME --endpoint URL`)",
            shown_path(path)
        );
    }
    let rows = rows(&config, current.as_deref());
    let value = serde_json::to_value(&rows)?;
    print_value(global.output, &value, || {
        let cells: Vec<Vec<String>> = rows.iter().map(ContextRow::cells).collect();
        list_table(&["CURRENT", "NAME", "ENDPOINT", "CA", "TOKEN"], &cells)
    })
}

/// The profile file's text, or `None` when it does not exist yet. The text must be a valid
/// profile file: editing a broken one would only add to the confusion.
fn read_valid(path: &Path) -> Result<Option<(String, ConfigFile)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read profile file {}", path.display()))
        }
    };
    let config = ConfigFile::parse(&text)
        .with_context(|| format!("invalid profile file {}", path.display()))?;
    Ok(Some((text, config)))
}

fn document(text: &str, path: &Path) -> Result<DocumentMut> {
    text.parse::<DocumentMut>()
        .with_context(|| format!("invalid profile file {}", path.display()))
}

/// Sets `current` to an existing profile, leaving everything else of the file as it was.
pub fn use_context(path: &Path, name: &str) -> Result<()> {
    let Some((text, config)) = read_valid(path)? else {
        bail!(
            "the profile file {} does not exist: create the context first with `cloudctl config \
             set-context {name} --endpoint URL`",
            path.display()
        );
    };
    if !config.profiles.contains_key(name) {
        bail!(
            "no profile `{name}` in {} (known: {}); create it with `cloudctl config set-context \
             {name}`",
            path.display(),
            config.known()
        );
    }
    let mut doc = document(&text, path)?;
    if !doc.contains_key("current") {
        // The new line goes above the first table: a blank line keeps it apart from it.
        let first = first_position(doc.as_table());
        if let Some(first) = first.and_then(|pos| table_at(doc.as_table_mut(), pos)) {
            let prefix = first
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .unwrap_or("");
            if !prefix.starts_with('\n') {
                let spaced = format!("\n{prefix}");
                first.decor_mut().set_prefix(spaced);
            }
        }
    }
    set_string(doc.as_table_mut(), "current", name);
    std::fs::write(path, doc.to_string())
        .with_context(|| format!("cannot write profile file {}", path.display()))
}

/// Where the first table header of the file is (implicit tables have none).
fn first_position(table: &Table) -> Option<isize> {
    table
        .iter()
        .filter_map(|(_, item)| item.as_table())
        .flat_map(|t| [t.position().filter(|_| !t.is_implicit()), first_position(t)])
        .flatten()
        .min()
}

/// The table whose header is at `pos`.
fn table_at(table: &mut Table, pos: isize) -> Option<&mut Table> {
    for (_, item) in table.iter_mut() {
        let Some(t) = item.as_table_mut() else {
            continue;
        };
        if !t.is_implicit() && t.position() == Some(pos) {
            return Some(t);
        }
        if let Some(found) = table_at(t, pos) {
            return Some(found);
        }
    }
    None
}

/// What `set-context` changes: the settings given, paths already absolute and UTF-8.
#[derive(Debug, Default)]
pub struct ContextUpdate {
    pub endpoint: Option<String>,
    pub ca_cert: Option<String>,
    pub token_file: Option<String>,
}

impl ContextUpdate {
    fn from_args(args: &SetContext) -> Result<Self> {
        if let Some(ep) = &args.endpoint {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                bail!("--endpoint {ep}: expected http://HOST:PORT or https://HOST:PORT");
            }
        }
        Ok(ContextUpdate {
            endpoint: args.endpoint.clone(),
            ca_cert: args
                .ca_cert
                .as_deref()
                .map(|p| absolute(p, "--ca-cert"))
                .transpose()?,
            token_file: args
                .token_file
                .as_deref()
                .map(|p| absolute(p, "--token-file"))
                .transpose()?,
        })
    }
}

/// A path typed at the shell means the current directory, while the file reads relative paths
/// from its own directory: writing it absolute keeps the meaning the user had in mind.
fn absolute(path: &Path, flag: &str) -> Result<String> {
    let abs = std::path::absolute(path)
        .with_context(|| format!("{flag} {}: cannot make it absolute", path.display()))?;
    if !abs.exists() {
        eprintln!(
            "warning: {flag} {} does not exist (yet); the context needs it when used",
            abs.display()
        );
    }
    match abs.to_str() {
        Some(s) => Ok(s.to_owned()),
        None => bail!(
            "{flag} {}: the profile file only holds UTF-8 paths",
            abs.display()
        ),
    }
}

/// Creates or updates profile `name` with the settings given; returns whether the profile is
/// new. A new file (and its directory) is created, mode 0600 since contexts may hold tokens.
pub fn set_context(path: &Path, name: &str, update: &ContextUpdate) -> Result<bool> {
    if name.is_empty() {
        bail!("the context name must not be empty");
    }
    let existing = read_valid(path)?;
    let created = existing
        .as_ref()
        .is_none_or(|(_, c)| !c.profiles.contains_key(name));
    let mut doc = match &existing {
        Some((text, _)) => document(text, path)?,
        None => DocumentMut::new(),
    };
    let has_content = !doc.as_table().is_empty();

    let profiles = doc.entry("profiles").or_insert_with(|| {
        let mut t = Table::new();
        // `[profiles.NAME]` headers only, no empty `[profiles]` above them.
        t.set_implicit(true);
        Item::Table(t)
    });
    let Some(profiles) = profiles.as_table_mut() else {
        bail!(
            "`profiles` in {} is not a table of `[profiles.NAME]` sections; edit it by hand",
            path.display()
        );
    };
    let profile = profiles.entry(name).or_insert_with(|| {
        let mut t = Table::new();
        if has_content {
            t.decor_mut().set_prefix("\n");
        }
        Item::Table(t)
    });
    let Some(profile) = profile.as_table_like_mut() else {
        bail!(
            "`profiles.{name}` in {} is not a table; edit it by hand",
            path.display()
        );
    };
    if update.token_file.is_some() && profile.contains_key("token") {
        eprintln!(
            "warning: profile `{name}` also has an inline `token`, which wins over token_file; \
             remove it from {} for the file to be used",
            path.display()
        );
    }
    for (key, v) in [
        ("endpoint", &update.endpoint),
        ("ca_cert", &update.ca_cert),
        ("token_file", &update.token_file),
    ] {
        if let Some(v) = v {
            set_string(profile, key, v);
        }
    }

    let text = doc.to_string();
    if existing.is_some() {
        std::fs::write(path, text)
            .with_context(|| format!("cannot write profile file {}", path.display()))?;
    } else {
        create_private(path, &text)?;
    }
    Ok(created)
}

/// Sets a string key, keeping the comments around an existing value.
fn set_string(table: &mut dyn TableLike, key: &str, v: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(v);
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(v));
        }
    }
}

/// Writes a new file readable by its owner only, creating its directory.
fn create_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create profile file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write profile file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn read(path: &Path) -> String {
        match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }

    fn write(path: &Path, text: &str) {
        if let Err(e) = std::fs::write(path, text) {
            panic!("write {}: {e}", path.display());
        }
    }

    fn config(path: &Path) -> ConfigFile {
        match ConfigFile::load(path) {
            Ok(Some(c)) => c,
            other => panic!("{} should load: {:?}", path.display(), other.err()),
        }
    }

    fn global(profile: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            endpoint: None,
            token: None,
            ca_cert: None,
            profile: profile.map(str::to_owned),
            output: OutputFormat::Table,
            stale: false,
            request_timeout: 30,
        }
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("should fail, got {v:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    const HAND_WRITTEN: &str = "\
# My clouds, by hand.
current = \"lab\" # the one I use most

[profiles.lab]
# the lab rack
endpoint = \"http://lab:7400\"

[profiles.prod]
endpoint = \"https://prod:7400\"   # behind the VPN
token_file = \"prod-token\"
";

    #[test]
    fn use_context_changes_only_current() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        write(&path, HAND_WRITTEN);
        if let Err(e) = use_context(&path, "prod") {
            panic!("use-context: {e:#}");
        }
        assert_eq!(
            read(&path),
            HAND_WRITTEN.replace("current = \"lab\"", "current = \"prod\"")
        );
        assert_eq!(config(&path).current.as_deref(), Some("prod"));
    }

    #[test]
    fn use_context_adds_current_to_a_file_without_one() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        let text = "# mine\n[profiles.a]\nendpoint = \"http://a:1\" # A\n\n[profiles.b]\n";
        write(&path, text);
        if let Err(e) = use_context(&path, "b") {
            panic!("use-context: {e:#}");
        }
        // Above the first table, apart from it; the rest as it was.
        assert_eq!(read(&path), format!("current = \"b\"\n\n{text}"));
        let c = config(&path);
        assert_eq!(c.current.as_deref(), Some("b"));
        assert_eq!(c.profiles.len(), 2);
    }

    #[test]
    fn use_context_refuses_a_missing_profile_or_file() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        let err = err_text(use_context(&path, "lab"));
        assert!(
            err.contains("does not exist") && err.contains("set-context lab"),
            "{err}"
        );
        write(&path, HAND_WRITTEN);
        let err = err_text(use_context(&path, "nope"));
        assert!(
            err.contains("no profile `nope`") && err.contains("known: lab, prod"),
            "{err}"
        );
        assert_eq!(read(&path), HAND_WRITTEN);
        write(&path, "[profiles.x]\nendpont = \"typo\"\n");
        let err = err_text(use_context(&path, "x"));
        assert!(err.contains("invalid profile file"), "{err}");
    }

    #[test]
    fn set_context_creates_a_private_file_and_its_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let path = dir.path().join("new").join("dir").join("config.toml");
        let update = ContextUpdate {
            endpoint: Some("https://dev:7400".into()),
            ca_cert: Some("/data/tls/ca.pem".into()),
            token_file: Some("/data/bootstrap-admin-token".into()),
        };
        assert!(matches!(set_context(&path, "dev", &update), Ok(true)));
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let text = read(&path);
        assert!(text.starts_with("[profiles.dev]\n"), "{text}");
        let c = config(&path);
        let p = &c.profiles["dev"];
        assert_eq!(p.endpoint.as_deref(), Some("https://dev:7400"));
        assert_eq!(p.ca_cert.as_deref(), Some(Path::new("/data/tls/ca.pem")));
        assert_eq!(
            p.token_file.as_deref(),
            Some(Path::new("/data/bootstrap-admin-token"))
        );
        assert_eq!(c.current, None);
    }

    #[test]
    fn set_context_updates_only_what_is_given_and_keeps_comments() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        write(&path, HAND_WRITTEN);
        let update = ContextUpdate {
            endpoint: Some("https://prod2:7400".into()),
            ..ContextUpdate::default()
        };
        assert!(matches!(set_context(&path, "prod", &update), Ok(false)));
        assert_eq!(
            read(&path),
            HAND_WRITTEN.replace("https://prod:7400", "https://prod2:7400")
        );

        let update = ContextUpdate {
            endpoint: Some("http://new:7400".into()),
            ..ContextUpdate::default()
        };
        assert!(matches!(set_context(&path, "new", &update), Ok(true)));
        let text = read(&path);
        assert!(
            text.starts_with(&HAND_WRITTEN.replace("https://prod:7400", "https://prod2:7400")),
            "{text}"
        );
        assert!(
            text.ends_with("\n\n[profiles.new]\nendpoint = \"http://new:7400\"\n"),
            "{text}"
        );
        assert_eq!(config(&path).profiles.len(), 3);
    }

    #[test]
    fn set_context_refuses_to_edit_an_invalid_file() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        write(&path, "[profiles.x]\ntokn = \"b\"\n");
        let err = err_text(set_context(&path, "x", &ContextUpdate::default()));
        assert!(
            err.contains("invalid profile file") && err.contains("config.toml"),
            "{err}"
        );
        assert!(set_context(&path, "", &ContextUpdate::default()).is_err());
    }

    #[test]
    fn set_context_flags_are_checked_and_paths_made_absolute() {
        let args = SetContext {
            name: "x".into(),
            endpoint: Some("127.0.0.1:7400".into()),
            ca_cert: None,
            token_file: None,
        };
        let err = err_text(ContextUpdate::from_args(&args));
        assert!(err.contains("--endpoint 127.0.0.1:7400"), "{err}");
        let args = SetContext {
            endpoint: Some("http://127.0.0.1:7400".into()),
            token_file: Some("relative/token".into()),
            ..args
        };
        let update = match ContextUpdate::from_args(&args) {
            Ok(u) => u,
            Err(e) => panic!("should be accepted: {e:#}"),
        };
        let token_file = update.token_file.unwrap_or_default();
        assert!(
            Path::new(&token_file).is_absolute() && token_file.ends_with("relative/token"),
            "{token_file}"
        );
    }

    #[test]
    fn contexts_list_sources_never_tokens() {
        let c = match ConfigFile::parse(
            "current = \"b\"\n[profiles.a]\nendpoint = \"http://a:1\"\ntoken = \"s3cret\"\n\
             [profiles.b]\ntoken_file = \"/t\"\nca_cert = \"/ca.pem\"\n[profiles.c]\n",
        ) {
            Ok(c) => c,
            Err(e) => panic!("should parse: {e}"),
        };
        let rows = rows(&c, Some("b"));
        let cells: Vec<Vec<String>> = rows.iter().map(ContextRow::cells).collect();
        assert_eq!(cells[0], ["", "a", "http://a:1", "-", "token"]);
        assert_eq!(cells[1], ["*", "b", "-", "/ca.pem", "token_file /t"]);
        assert_eq!(cells[2], ["", "c", "-", "-", "none"]);
        let json = serde_json::to_string(&rows).unwrap_or_default();
        assert!(!json.contains("s3cret") && json.contains("\"token_source\":\"token\""));
    }

    #[test]
    fn current_context_follows_the_precedence() {
        let c = match ConfigFile::parse("current = \"b\"\n[profiles.a]\n[profiles.b]\n") {
            Ok(c) => c,
            Err(e) => panic!("should parse: {e}"),
        };
        let env = EnvVars::default();
        let name = current_context(&global(None), &env, Some(&c), None).ok();
        assert_eq!(name.as_deref(), Some("b"));
        let name = current_context(&global(Some("a")), &env, Some(&c), None).ok();
        assert_eq!(name.as_deref(), Some("a"));

        let err = err_text(current_context(&global(None), &env, None, None));
        assert!(err.contains("does not exist"), "{err}");
        let c = ConfigFile::default();
        let err = err_text(current_context(&global(None), &env, Some(&c), None));
        assert!(err.contains("no current context"), "{err}");
    }
}
