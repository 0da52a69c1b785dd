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

/// The `ANDROMEDE_*` variables (and `HOME`), captured once so resolution stays a pure function.
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

/// The profile file: `[profiles.NAME]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    /// The cluster CA (PEM file) an https endpoint's certificate must come from.
    pub ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .with_context(|| format!("invalid profile file {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read profile file {}", path.display()))
            }
        }
    }
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
/// the implicit `default` profile is simply skipped.
pub fn resolve(
    flag_endpoint: Option<&str>,
    flag_token: Option<&str>,
    flag_profile: Option<&str>,
    env: &EnvVars,
    config: Option<&ConfigFile>,
    config_path: Option<&Path>,
) -> Result<Settings> {
    let explicit_profile = flag_profile
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| env.profile.clone());
    let shown_path = config_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no HOME, set ANDROMEDE_CONFIG)".to_owned());

    let (profile_name, profile) = match explicit_profile {
        Some(name) => {
            let Some(config) = config else {
                bail!(
                    "profile `{name}` requested but the profile file {shown_path} does not exist"
                );
            };
            let Some(profile) = config.profiles.get(&name) else {
                let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
                bail!(
                    "no profile `{name}` in {shown_path} (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            };
            (Some(name), Some(profile))
        }
        None => match config.and_then(|c| c.profiles.get(DEFAULT_PROFILE)) {
            Some(p) => (Some(DEFAULT_PROFILE.to_owned()), Some(p)),
            None => (None, None),
        },
    };

    let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let endpoint = non_empty(flag_endpoint)
        .or_else(|| env.endpoint.clone())
        .or_else(|| profile.and_then(|p| non_empty(p.endpoint.as_deref())))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let token = non_empty(flag_token)
        .or_else(|| env.token.clone())
        .or_else(|| profile.and_then(|p| non_empty(p.token.as_deref())));

    let ca_cert = env
        .ca_cert
        .clone()
        .or_else(|| profile.and_then(|p| p.ca_cert.clone()));
    Ok(Settings {
        endpoint,
        token,
        ca_cert,
        profile: profile_name,
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
}
