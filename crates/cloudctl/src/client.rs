//! Connection settings (flags, environment, profile file) and `Ctx`, what every command is
//! given: a thin layer over the andromede-client crate's channel, deadlines and retries.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use andromede_api::v1::cluster_service_client::ClusterServiceClient;
use andromede_api::v1::compute_service_client::ComputeServiceClient;
use andromede_api::v1::event_service_client::EventServiceClient;
use andromede_api::v1::identity_service_client::IdentityServiceClient;
use andromede_api::v1::infrastructure_service_client::InfrastructureServiceClient;
use andromede_api::v1::placement_service_client::PlacementServiceClient;
use andromede_api::v1::volume_service_client::VolumeServiceClient;
use andromede_api::v1::ReadOptions;
use andromede_client::paging::{all_pages, PagedRequest, PagedResponse};
use andromede_client::{code_words, Client, Retry};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tonic::{Code, Status};

use crate::cli::GlobalArgs;
use crate::output::OutputFormat;

pub use andromede_client::{is_transient, Svc, DEFAULT_ENDPOINT};

const DEFAULT_PROFILE: &str = "default";

/// The `ANDROMEDE_*` variables (and `HOME`), captured once so resolution depends on nothing else
/// of the process (only on the files it names).
#[derive(Default, Clone)]
pub struct EnvVars {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub profile: Option<String>,
    pub config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
}

impl EnvVars {
    pub fn from_process() -> Self {
        // An exported but empty variable is treated as unset, as shells make that easy to do by accident.
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EnvVars {
            endpoint: var("ANDROMEDE_ENDPOINT"),
            token: var("ANDROMEDE_TOKEN"),
            profile: var("ANDROMEDE_PROFILE"),
            config: var("ANDROMEDE_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            ca_cert: var("ANDROMEDE_CA_CERT").map(PathBuf::from),
        }
    }

    /// Where the profile file is looked for.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            self.home
                .as_ref()
                .map(|h| h.join(".config").join("andromede").join("config.toml"))
        })
    }
}

/// The profile file: `[profiles.NAME]` tables (a profile is what `cloudctl config` calls a
/// context) and `current`, the one used when none is named.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when neither `--profile` nor `ANDROMEDE_PROFILE` names one.
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    /// A file holding the token, read when the profile is used, so the secret stays where it
    /// was issued (the dev cloud's `bootstrap-admin-token`, a secrets mount) instead of being
    /// copied here. `token` wins when both are set.
    pub token_file: Option<PathBuf>,
    /// The cluster CA (PEM file) an https endpoint's certificate must come from.
    pub ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl ConfigFile {
    /// Parses the text as is: relative paths stay relative (see [`ConfigFile::load`]).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Reads the file; a missing file is an empty configuration. Relative paths in it are
    /// taken from the file's directory, so the file means the same from any working directory.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut config = Self::parse(&text)
                    .with_context(|| format!("invalid profile file {}", path.display()))?;
                config.anchor_paths(path.parent().unwrap_or(Path::new("")));
                Ok(Some(config))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read profile file {}", path.display()))
            }
        }
    }

    /// Makes the profiles' relative `ca_cert` and `token_file` relative to `dir` instead.
    pub fn anchor_paths(&mut self, dir: &Path) {
        for p in self.profiles.values_mut() {
            for path in [&mut p.ca_cert, &mut p.token_file].into_iter().flatten() {
                if path.is_relative() {
                    *path = dir.join(&*path);
                }
            }
        }
    }

    /// The profile names, for error messages.
    pub fn known(&self) -> String {
        if self.profiles.is_empty() {
            "none".to_owned()
        } else {
            self.profiles
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// How the profile file is named in messages.
pub fn shown_path(config_path: Option<&Path>) -> String {
    config_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no HOME, set ANDROMEDE_CONFIG)".to_owned())
}

/// Which profile applies: the one named by `--profile` or `ANDROMEDE_PROFILE`, else the file's
/// `current`, else `default` when the file has one, else none. A name that matches no profile
/// is an error, wherever it comes from.
pub fn select_profile<'c>(
    flag_profile: Option<&str>,
    env: &EnvVars,
    config: Option<&'c ConfigFile>,
    config_path: Option<&Path>,
) -> Result<Option<(String, &'c Profile)>> {
    let explicit_profile = flag_profile
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| env.profile.clone());
    let shown_path = shown_path(config_path);

    if let Some(name) = explicit_profile {
        let Some(config) = config else {
            bail!("profile `{name}` requested but the profile file {shown_path} does not exist");
        };
        let Some(profile) = config.profiles.get(&name) else {
            bail!(
                "no profile `{name}` in {shown_path} (known: {})",
                config.known()
            );
        };
        return Ok(Some((name, profile)));
    }
    let Some(config) = config else {
        return Ok(None);
    };
    if let Some(name) = config.current.as_deref().filter(|c| !c.is_empty()) {
        let Some(profile) = config.profiles.get(name) else {
            bail!(
                "`current` in {shown_path} names profile `{name}`, which does not exist (known: {}); \
                 pick one with `cloudctl config use-context NAME`",
                config.known()
            );
        };
        return Ok(Some((name.to_owned(), profile)));
    }
    Ok(config
        .profiles
        .get(DEFAULT_PROFILE)
        .map(|p| (DEFAULT_PROFILE.to_owned(), p)))
}

/// The token a profile gives: `token`, else the trimmed content of `token_file`, else none.
pub fn profile_token(name: &str, profile: &Profile) -> Result<Option<String>> {
    if let Some(t) = profile.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_owned()));
    }
    let Some(path) = &profile.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the token file {} (token_file of profile `{name}`)",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "the token file {} (token_file of profile `{name}`) is empty",
            path.display()
        );
    }
    Ok(Some(token.to_owned()))
}

/// Where cloudctl connects and with which credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    /// The CA file for an https endpoint.
    pub ca_cert: Option<PathBuf>,
    /// The profile that contributed, if any.
    pub profile: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("profile", &self.profile)
            .finish()
    }
}

/// Combines the sources: flags, then environment, then the profile, then the defaults.
///
/// `config` is `None` when there is no profile file; naming a profile then is an error, while
/// the implicit `current` or `default` profile is simply skipped. A profile's `token_file` is
/// only read when neither flag nor variable gives a token.
pub fn resolve(
    flag_endpoint: Option<&str>,
    flag_token: Option<&str>,
    flag_profile: Option<&str>,
    env: &EnvVars,
    config: Option<&ConfigFile>,
    config_path: Option<&Path>,
) -> Result<Settings> {
    let selected = select_profile(flag_profile, env, config, config_path)?;
    let profile = selected.as_ref().map(|(_, p)| *p);

    let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let endpoint = non_empty(flag_endpoint)
        .or_else(|| env.endpoint.clone())
        .or_else(|| profile.and_then(|p| non_empty(p.endpoint.as_deref())))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let token = match non_empty(flag_token).or_else(|| env.token.clone()) {
        Some(t) => Some(t),
        None => match &selected {
            Some((name, p)) => profile_token(name, p)?,
            None => None,
        },
    };

    let ca_cert = env
        .ca_cert
        .clone()
        .or_else(|| profile.and_then(|p| p.ca_cert.clone()));
    Ok(Settings {
        endpoint,
        token,
        ca_cert,
        profile: selected.map(|(name, _)| name),
    })
}

/// Resolves settings for this process from its flags, environment and profile file.
pub fn settings_from(global: &GlobalArgs, env: &EnvVars) -> Result<Settings> {
    let path = env.config_path();
    let config = match &path {
        Some(p) => ConfigFile::load(p)?,
        None => None,
    };
    let mut s = resolve(
        global.endpoint.as_deref(),
        global.token.as_deref(),
        global.profile.as_deref(),
        env,
        config.as_ref(),
        path.as_deref(),
    )?;
    if let Some(ca) = &global.ca_cert {
        s.ca_cert = Some(ca.clone());
    }
    Ok(s)
}

/// Everything a command needs: authenticated clients, output format and read options.
pub struct Ctx {
    client: Client,
    pub output: OutputFormat,
    pub stale: bool,
    pub request_timeout: Duration,
}

impl Ctx {
    pub async fn connect(settings: &Settings, global: &GlobalArgs) -> Result<Self> {
        let request_timeout = Duration::from_secs(global.request_timeout.max(1));
        let ca = match &settings.ca_cert {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the CA certificate {}", p.display()))?,
            ),
            None => None,
        };
        let client = Client::builder(settings.endpoint.clone())
            .token(settings.token.as_deref())
            .ca_cert(ca.as_deref())
            .call_timeout(request_timeout)
            .connect()
            .await?;
        Ok(Ctx {
            client,
            output: global.output,
            stale: global.stale,
            request_timeout,
        })
    }

    pub fn infra(&self) -> InfrastructureServiceClient<Svc> {
        self.client.infra()
    }
    pub fn identity(&self) -> IdentityServiceClient<Svc> {
        self.client.identity()
    }
    pub fn compute(&self) -> ComputeServiceClient<Svc> {
        self.client.compute()
    }
    pub fn volumes(&self) -> VolumeServiceClient<Svc> {
        self.client.volumes()
    }
    pub fn placement(&self) -> PlacementServiceClient<Svc> {
        self.client.placement()
    }
    pub fn events(&self) -> EventServiceClient<Svc> {
        self.client.events()
    }
    pub fn cluster(&self) -> ClusterServiceClient<Svc> {
        self.client.cluster()
    }

    /// Read options for user-facing reads (honours `--stale`).
    pub fn read(&self) -> Option<ReadOptions> {
        Some(ReadOptions { stale: self.stale })
    }

    /// Runs one unary call, turning a call that outlives `--request-timeout` into DEADLINE_EXCEEDED.
    pub async fn call<T, F>(&self, fut: F) -> Result<T, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        with_deadline(self.request_timeout, fut).await
    }

    /// Runs a List* call page after page, each under `--request-timeout`, and returns one
    /// response holding every item.
    pub async fn list_all<Req, Resp, F, Fut>(&self, req: Req, mut fetch: F) -> Result<Resp, Status>
    where
        Req: PagedRequest,
        Resp: PagedResponse,
        F: FnMut(Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        all_pages(req, |r| self.call(fetch(r))).await
    }

    /// Runs a create, retrying transient failures. `attempt` must send the same request id every
    /// time, so that the server answers a retry of an already applied create with its first result.
    pub async fn create_with_retry<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let policy = Retry::CREATE;
        let warn = |status: &Status, n: u32| {
            eprintln!(
                "warning: creating {what}: {}: {}; retrying with the same request id ({n}/{})",
                code_words(status.code()),
                status.message(),
                policy.retries
            );
        };
        self.client.retried(&policy, warn, attempt).await
    }
}

/// Runs one unary call under `limit`; the message names the flag that sets it.
pub async fn with_deadline<T, F>(limit: Duration, fut: F) -> Result<T, Status>
where
    F: Future<Output = Result<tonic::Response<T>, Status>>,
{
    andromede_client::with_deadline(limit, fut)
        .await
        .map_err(|s| match s.code() {
            Code::DeadlineExceeded if s.message().starts_with("no answer within") => {
                Status::deadline_exceeded(format!("{} (see --request-timeout)", s.message()))
            }
            _ => s,
        })
}

/// A new idempotency key unless the user gave one.
pub fn request_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [profiles.default]
        endpoint = "http://default:7400"
        token = "default-token"

        [profiles.prod]
        endpoint = "http://prod:7400"
        token = "prod-token"

        [profiles.partial]
        endpoint = "http://partial:7400"
    "#;

    fn config() -> ConfigFile {
        match ConfigFile::parse(FILE) {
            Ok(c) => c,
            Err(e) => panic!("test config should parse: {e}"),
        }
    }

    fn ok(r: Result<Settings>) -> Settings {
        match r {
            Ok(s) => s,
            Err(e) => panic!("should resolve: {e:#}"),
        }
    }

    #[test]
    fn defaults_without_anything() {
        let s = ok(resolve(None, None, None, &EnvVars::default(), None, None));
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.token, None);
        assert_eq!(s.profile, None);
    }

    #[test]
    fn default_profile_is_used_when_present() {
        let c = config();
        let s = ok(resolve(
            None,
            None,
            None,
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.endpoint, "http://default:7400");
        assert_eq!(s.token.as_deref(), Some("default-token"));
        assert_eq!(s.profile.as_deref(), Some("default"));
    }

    #[test]
    fn env_beats_profile_and_flags_beat_env() {
        let c = config();
        let env = EnvVars {
            endpoint: Some("http://env:7400".into()),
            token: Some("env-token".into()),
            profile: Some("prod".into()),
            ..EnvVars::default()
        };
        let s = ok(resolve(None, None, None, &env, Some(&c), None));
        assert_eq!(s.endpoint, "http://env:7400");
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.profile.as_deref(), Some("prod"));

        let s = ok(resolve(
            Some("http://flag:7400"),
            Some("flag-token"),
            None,
            &env,
            Some(&c),
            None,
        ));
        assert_eq!(s.endpoint, "http://flag:7400");
        assert_eq!(s.token.as_deref(), Some("flag-token"));
    }

    #[test]
    fn profile_flag_beats_profile_env_and_fills_gaps() {
        let c = config();
        let env = EnvVars {
            profile: Some("prod".into()),
            ..EnvVars::default()
        };
        let s = ok(resolve(None, None, Some("partial"), &env, Some(&c), None));
        assert_eq!(s.profile.as_deref(), Some("partial"));
        assert_eq!(s.endpoint, "http://partial:7400");
        // The selected profile has no token, and other profiles never leak into it.
        assert_eq!(s.token, None);

        let s = ok(resolve(
            None,
            Some("flag-token"),
            None,
            &env,
            Some(&c),
            None,
        ));
        assert_eq!(s.endpoint, "http://prod:7400");
        assert_eq!(s.token.as_deref(), Some("flag-token"));
    }

    #[test]
    fn unknown_or_missing_profile_is_an_error() {
        let c = config();
        let err = resolve(
            None,
            None,
            Some("nope"),
            &EnvVars::default(),
            Some(&c),
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("no profile `nope`"), "{err}");
        assert!(err.contains("prod"), "{err}");
        assert!(resolve(None, None, Some("prod"), &EnvVars::default(), None, None).is_err());
    }

    #[test]
    fn empty_flags_count_as_unset() {
        let c = config();
        let s = ok(resolve(
            Some(""),
            Some(""),
            None,
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.endpoint, "http://default:7400");
        assert_eq!(s.token.as_deref(), Some("default-token"));
    }

    #[test]
    fn config_path_prefers_the_variable() {
        let env = EnvVars {
            home: Some("/home/u".into()),
            ..EnvVars::default()
        };
        assert_eq!(
            env.config_path(),
            Some(PathBuf::from("/home/u/.config/andromede/config.toml"))
        );
        let env = EnvVars {
            config: Some("/etc/andromede.toml".into()),
            ..env
        };
        assert_eq!(
            env.config_path(),
            Some(PathBuf::from("/etc/andromede.toml"))
        );
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let s = ok(resolve(
            None,
            Some("s3cret"),
            None,
            &EnvVars::default(),
            None,
            None,
        ));
        assert!(!format!("{s:?}").contains("s3cret"));
        let c = config();
        assert!(!format!("{c:?}").contains("prod-token"));
    }

    #[test]
    fn rejects_unknown_keys_in_the_profile_file() {
        assert!(ConfigFile::parse("[profiles.x]\nendpoint = \"a\"\ntokn = \"b\"\n").is_err());
    }

    fn err_text(r: Result<Settings>) -> String {
        match r {
            Ok(s) => panic!("should fail, resolved {s:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn with_current(current: &str) -> ConfigFile {
        match ConfigFile::parse(&format!("current = \"{current}\"\n{FILE}")) {
            Ok(c) => c,
            Err(e) => panic!("test config should parse: {e}"),
        }
    }

    #[test]
    fn current_is_used_before_default_and_named_profiles_beat_it() {
        let c = with_current("prod");
        let s = ok(resolve(
            None,
            None,
            None,
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.profile.as_deref(), Some("prod"));
        assert_eq!(s.endpoint, "http://prod:7400");
        assert_eq!(s.token.as_deref(), Some("prod-token"));

        let env = EnvVars {
            profile: Some("partial".into()),
            ..EnvVars::default()
        };
        let s = ok(resolve(None, None, None, &env, Some(&c), None));
        assert_eq!(s.profile.as_deref(), Some("partial"));
        let s = ok(resolve(None, None, Some("default"), &env, Some(&c), None));
        assert_eq!(s.profile.as_deref(), Some("default"));

        // Variables and flags still beat what the current context says.
        let env = EnvVars {
            endpoint: Some("http://env:7400".into()),
            ..EnvVars::default()
        };
        let s = ok(resolve(None, Some("flag"), None, &env, Some(&c), None));
        assert_eq!(s.endpoint, "http://env:7400");
        assert_eq!(s.token.as_deref(), Some("flag"));
        assert_eq!(s.profile.as_deref(), Some("prod"));
    }

    #[test]
    fn current_naming_a_missing_profile_is_an_error() {
        let c = with_current("gone");
        let err = err_text(resolve(
            None,
            None,
            None,
            &EnvVars::default(),
            Some(&c),
            Some(Path::new("/etc/a.toml")),
        ));
        assert!(
            err.contains("`current` in /etc/a.toml names profile `gone`, which does not exist")
                && err.contains("known: default, partial, prod")
                && err.contains("use-context"),
            "{err}"
        );
        // Naming an existing profile sidesteps the broken `current`.
        let s = ok(resolve(
            None,
            None,
            Some("prod"),
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.profile.as_deref(), Some("prod"));
    }

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                panic!("mkdir {}: {e}", dir.display());
            }
        }
        if let Err(e) = std::fs::write(path, text) {
            panic!("write {}: {e}", path.display());
        }
    }

    fn load(path: &Path) -> ConfigFile {
        match ConfigFile::load(path) {
            Ok(Some(c)) => c,
            Ok(None) => panic!("{} should exist", path.display()),
            Err(e) => panic!("{} should load: {e:#}", path.display()),
        }
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    #[test]
    fn token_file_and_ca_cert_are_relative_to_the_config_directory() {
        let dir = tempdir();
        let path = dir.path().join("conf").join("config.toml");
        write(
            &path,
            "current = \"lab\"\n[profiles.lab]\nendpoint = \"https://lab:7400\"\n\
             token_file = \"secrets/lab-token\"\nca_cert = \"tls/ca.pem\"\n\
             [profiles.abs]\ntoken_file = \"/run/secrets/t\"\n",
        );
        write(
            &dir.path().join("conf/secrets/lab-token"),
            "  andro_lab \n\n",
        );
        let c = load(&path);
        assert_eq!(
            c.profiles["abs"].token_file.as_deref(),
            Some(Path::new("/run/secrets/t"))
        );
        let s = ok(resolve(
            None,
            None,
            None,
            &EnvVars::default(),
            Some(&c),
            Some(&path),
        ));
        assert_eq!(s.token.as_deref(), Some("andro_lab"));
        assert_eq!(s.ca_cert, Some(dir.path().join("conf/tls/ca.pem")));
        assert_eq!(s.profile.as_deref(), Some("lab"));
    }

    #[test]
    fn token_beats_token_file_and_flags_spare_reading_it() {
        let c = match ConfigFile::parse(
            "[profiles.both]\ntoken = \"inline\"\ntoken_file = \"/nonexistent/token\"\n\
             [profiles.file]\ntoken_file = \"/nonexistent/token\"\n",
        ) {
            Ok(c) => c,
            Err(e) => panic!("should parse: {e}"),
        };
        let s = ok(resolve(
            None,
            None,
            Some("both"),
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.token.as_deref(), Some("inline"));
        // A token from the flag or the variable means the file is never needed.
        let s = ok(resolve(
            None,
            Some("flag"),
            Some("file"),
            &EnvVars::default(),
            Some(&c),
            None,
        ));
        assert_eq!(s.token.as_deref(), Some("flag"));
        let env = EnvVars {
            token: Some("env".into()),
            ..EnvVars::default()
        };
        let s = ok(resolve(None, None, Some("file"), &env, Some(&c), None));
        assert_eq!(s.token.as_deref(), Some("env"));
    }

    #[test]
    fn unreadable_or_empty_token_file_is_an_error_naming_it() {
        let dir = tempdir();
        let path = dir.path().join("config.toml");
        write(
            &path,
            "[profiles.default]\ntoken_file = \"missing-token\"\n\
             [profiles.empty]\ntoken_file = \"empty-token\"\n",
        );
        write(&dir.path().join("empty-token"), " \n");
        let c = load(&path);
        let err = err_text(resolve(
            None,
            None,
            None,
            &EnvVars::default(),
            Some(&c),
            Some(&path),
        ));
        let missing = dir.path().join("missing-token");
        assert!(
            err.contains(&format!("cannot read the token file {}", missing.display()))
                && err.contains("token_file of profile `default`"),
            "{err}"
        );
        let err = err_text(resolve(
            None,
            None,
            Some("empty"),
            &EnvVars::default(),
            Some(&c),
            Some(&path),
        ));
        assert!(
            err.contains("empty-token") && err.contains("is empty"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_selects_nothing_unless_a_profile_is_named() {
        let env = EnvVars::default();
        assert!(matches!(select_profile(None, &env, None, None), Ok(None)));
        let c = ConfigFile::default();
        assert!(matches!(
            select_profile(None, &env, Some(&c), None),
            Ok(None)
        ));
        assert!(select_profile(Some("x"), &env, Some(&c), None).is_err());
    }
}
