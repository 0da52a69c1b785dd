//! Command-line grammar of `cloudctl`: every subcommand, flag and its help text.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::OutputFormat;

const EXAMPLES: &str = "\
Examples:
  # Point cloudctl at a cluster once, then work with it
  export ANDROMEDE_ENDPOINT=http://10.0.0.10:7400 ANDROMEDE_TOKEN=…
  cloudctl cluster status

  # Describe the infrastructure
  cloudctl datacenter create par1 --country FR --operator-name 'OVH SAS' --operator-country FR --cert secnumcloud
  cloudctl host register par1-h01 --datacenter par1 --vcpus 64 --memory-mib 262144 --disk-gib 2000
  cloudctl flavor create m1.small --vcpus 2 --memory-mib 4096 --disk-gib 20
  cloudctl image create debian-12 --source https://images.example/debian-12.qcow2 --checksum-sha256 9f86d0…

  # A tenant that must stay in EU datacenters run by an immune operator
  cloudctl project create acme --allow-jurisdiction EU --operator-immunity --quota-instances 20

  # Boot an instance and wait until it runs, then see why it landed where it did
  cloudctl instance create web-1 --project acme --flavor m1.small --image debian-12 --wait
  cloudctl placement explain --project acme --flavor m1.small

  # Follow what happens, as JSON lines
  cloudctl events watch --kind instance -o json

  # A token for acme's CI, limited to acme, expiring in 30 days; then who it is
  cloudctl token create ci --project acme --role member --ttl 30d
  ANDROMEDE_TOKEN=andro_… cloudctl whoami

Connection settings come from flags, then ANDROMEDE_* variables, then the current context of
the profile file (ANDROMEDE_CONFIG or ~/.config/andromede/config.toml; see `cloudctl config
--help`), then the defaults.";

/// Command-line client for the Andromède sovereign IaaS control plane.
///
/// Manages datacenters, hosts, flavors, images, projects, instances, server groups and volumes
/// through the gRPC API of any node of an Andromède cluster, explains placement decisions,
/// follows the event stream and administers cluster membership.
#[derive(Parser, Debug)]
#[command(name = "cloudctl", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// gRPC endpoint of any node of the cluster [env: ANDROMEDE_ENDPOINT] [default: http://127.0.0.1:7400]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Bearer token sent with every request; prefer the variable or a profile, since command
    /// lines are visible to other local users [env: ANDROMEDE_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// The cluster CA (PEM) an https endpoint's certificate must come from; the dev cloud
    /// prints where it is [env: ANDROMEDE_CA_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// Profile (context) of the configuration file to use; without it, the file's `current`
    /// context, else its `default` profile when present [env: ANDROMEDE_PROFILE]
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Read the contacted node's local copy instead of a linearizable read through the leader
    /// (faster, possibly slightly behind; only affects reads)
    #[arg(long, global = true)]
    pub stale: bool,

    /// Give up on a single API call after this many seconds
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub request_timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Datacenters: where they are, who operates them, what they are certified for
    #[command(subcommand)]
    Datacenter(DatacenterCmd),
    /// Hypervisor hosts and their capacity
    #[command(subcommand)]
    Host(HostCmd),
    /// Instance sizes (vCPUs, memory, disk)
    #[command(subcommand)]
    Flavor(FlavorCmd),
    /// Boot images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Projects (tenants): sovereignty policy, quota and usage
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Virtual machines
    #[command(subcommand)]
    Instance(InstanceCmd),
    /// Affinity and anti-affinity groups of instances
    #[command(subcommand)]
    ServerGroup(ServerGroupCmd),
    /// Block volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Placement dry runs
    #[command(subcommand)]
    Placement(PlacementCmd),
    /// The resource event stream
    #[command(subcommand)]
    Events(EventsCmd),
    /// Raft cluster status and membership
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Compliance of a project's resources and metadata with its sovereignty policy
    #[command(subcommand)]
    Compliance(ComplianceCmd),
    /// API tokens and their roles: cloud-admin, cloud-reader; project admin ⊃ member ⊃ reader
    #[command(subcommand, after_long_help = ROLES)]
    Token(TokenCmd),
    /// Show the token in use: its id, name, scope, role and expiry
    #[command(after_long_help = ROLES)]
    Whoami,
    /// Contexts: named connection settings (endpoint, CA, token file) kept in the profile file
    #[command(subcommand, after_long_help = CONTEXTS)]
    Config(ConfigCmd),
    /// Print a shell completion script (e.g. `cloudctl completions bash > /etc/bash_completion.d/cloudctl`)
    Completions {
        /// Shell to generate the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The profile file and the precedence of settings, shown under `config --help`.
const CONTEXTS: &str = "\
A context is a `[profiles.NAME]` table of the profile file, ANDROMEDE_CONFIG or
~/.config/andromede/config.toml; `current` names the one used by default:

  current = \"prod\"

  [profiles.prod]
  endpoint = \"https://10.20.0.11:7400\"
  ca_cert = \"prod/ca.pem\"              # relative paths: from the file's directory
  token_file = \"prod/token\"            # read and trimmed at each use

  [profiles.lab]
  endpoint = \"http://127.0.0.1:7400\"
  token = \"andro_…\"                    # inline token; wins over token_file

The context used is the one named by --profile, else ANDROMEDE_PROFILE, else `current`, else
`default` when the file has it. Each setting then comes from its flag, else its ANDROMEDE_*
variable, else the context, else the default: a context never overrides what the command line
or the environment says.

`andromede-server dev` writes such a file for the cloud it runs, <data-dir>/cloudctl.toml.

Examples:
  cloudctl config set-context prod --endpoint https://10.20.0.11:7400 --ca-cert ca.pem --token-file ~/.prod-token
  cloudctl config use-context prod
  cloudctl config get-contexts
  ANDROMEDE_CONFIG=$PWD/andromede-data/cloudctl.toml cloudctl whoami";

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// List the contexts of the profile file, marking the current one with `*`
    ///
    /// Shows each context's endpoint, CA and where its token comes from (`token` inline,
    /// `token_file PATH`, or none), never the token itself. The current context is the one a
    /// command would use now, so --profile and ANDROMEDE_PROFILE count. With -o json|yaml, a
    /// list of objects.
    GetContexts,
    /// Print the name of the context a command would use now
    ///
    /// That is --profile, else ANDROMEDE_PROFILE, else the file's `current`, else `default`
    /// when the file has it. Fails when there is none, or when the name matches no context.
    CurrentContext,
    /// Make a context the current one, by setting `current` in the profile file
    ///
    /// The context must exist (see `set-context`). The rest of the file is kept as written,
    /// comments and order included. --profile and ANDROMEDE_PROFILE still win over `current`.
    UseContext {
        /// Name of the context (a `[profiles.NAME]` table)
        name: String,
    },
    /// Create a context, or change some settings of an existing one
    ///
    /// Only the settings given change; the others, and the rest of the file (comments, order),
    /// are kept. The profile file and its directory are created if needed, the file with mode
    /// 0600. Relative paths are taken from the current directory and written absolute. A raw
    /// token is never taken on the command line, where other local users could see it: write
    /// it to a file (mode 0600) and pass --token-file.
    #[command(after_help = "\
Examples:
  cloudctl config set-context prod --endpoint https://10.20.0.11:7400 --ca-cert ./ca.pem --token-file ~/.prod-token
  cloudctl config set-context prod --endpoint https://10.20.0.12:7400    # only the endpoint changes")]
    SetContext(SetContext),
}

#[derive(Args, Debug)]
pub struct SetContext {
    /// Name of the context (a `[profiles.NAME]` table)
    pub name: String,
    /// gRPC endpoint of any node of the cluster (http://HOST:PORT or https://HOST:PORT)
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The cluster CA (PEM) an https endpoint's certificate must come from
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// File holding the token (e.g. a server's bootstrap-admin-token), read at each use
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ComplianceCmd {
    /// Every instance and volume of a project and every control-plane server holding its
    /// metadata, with datacenter, country, operator and the policy's verdict today. Exits 1 when
    /// anything violates the policy (an unlocated server counts: its location cannot be shown).
    Report {
        /// Project (id or name); defaults to the token's project
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
}

/// The role model, shown under `token --help` and `whoami --help`.
const ROLES: &str = "\
Roles: every token acts in one scope, the whole cloud or one project, with one role.

  Cloud scope (no --project):
    cloud-admin   everything: datacenters, hosts, flavors, public images, the cluster,
                  projects and their quotas, every project's resources and tokens
    cloud-reader  reads everything (hosts, cluster status, every project, every token)
                  but console logs, changes nothing

  Project scope (--project P), each role including the one below it:
    admin         member, plus the project's tokens and narrowing (never widening) its
                  sovereignty policy; quotas and widening stay with the cloud-admin
    member        reader, plus creating, changing and deleting the project's instances,
                  volumes, server groups and images, and reading console logs
    reader        the project's resources, the shared catalog (datacenters, flavors,
                  public images), placement dry runs, its events and compliance report

A project token sees nothing of other projects (their resources answer \"not found\") nor
the hosts and the cluster, and commands that take --project default to its own project.
A token creates tokens only in its own scope (the cloud scope: in any project) and with a
role no higher than its own. Details and the table of every RPC: docs/security.md.";

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token; its secret is printed once, and never again
    ///
    /// Without --project (from a cloud-scoped token) it is a cloud token: `--role admin` makes a
    /// cloud-admin, `--role reader` a cloud-reader. With --project, or from a project-scoped
    /// token, it acts in that project with the role given. Only the secret's SHA-256 is kept:
    /// store the printed secret now. With -o json|yaml the answer holds the token and the
    /// secret.
    #[command(after_help = "\
Examples:
  cloudctl token create ops-readonly --role reader
  cloudctl token create ci --project acme --role member --ttl 30d
  SECRET=$(cloudctl token create deploy -p acme --role member --ttl 12h -o json | jq -r .secret)")]
    Create(TokenCreate),
    /// List the tokens this token may see (never their secrets)
    ///
    /// A cloud-scoped token sees every token, a project admin its project's. Revoked and expired
    /// tokens are left out unless --all is given, which adds a STATE column.
    List {
        /// Only this project's tokens (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
        /// Also list revoked and expired tokens
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token: every server refuses it once the revocation is applied
    ///
    /// Revoking the token in use works too; revoke the last cloud-admin token and nobody can
    /// administer the cloud any more.
    Revoke {
        /// Id or name of the token
        #[arg(value_name = "ID|NAME")]
        reference: String,
        /// Project (id or name) in which to look the name up; not needed for ids, defaults to
        /// the token's project
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct TokenCreate {
    /// Name of the token, unique in its scope among tokens not revoked (e.g. who or what uses it)
    pub name: String,
    /// Role of the token: admin or reader in the cloud scope (cloud-admin, cloud-reader), admin,
    /// member or reader in a project; never higher than the creating token's
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Project (id or name) the token acts in; without it, the cloud scope (or, from a
    /// project-scoped token, that token's project)
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Lifetime: a number with a unit, s, m, h, d or w (e.g. 3600s, 12h, 30d; at most 3650d);
    /// without it the token never expires
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// Idempotency key; a random one is generated when absent and reused by automatic retries
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    /// Everything in its scope (cloud-admin in the cloud scope)
    Admin,
    /// A project's resources, read and write (project scope only)
    Member,
    /// Reads only (cloud-reader in the cloud scope)
    Reader,
}

/// The longest lifetime the server accepts: ten years.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A token lifetime such as `30d`, `12h`, `90m` or `3600s` (a bare number is seconds), in
/// seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 3600s, 12h, 30d or 2w"))?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`: use s, m, h, d or w (e.g. 12h, 30d)"
            ))
        }
    };
    let secs = n
        .checked_mul(per)
        .filter(|v| *v <= MAX_TTL_SECS)
        .ok_or_else(|| {
            format!("`{s}` is longer than ten years (3650d), the most a token may live")
        })?;
    if secs == 0 {
        return Err(
            "a lifetime of 0 makes no sense: leave --ttl out for a token that never expires".into(),
        );
    }
    Ok(secs)
}

/// `--wait` and `--timeout`, shared by every command that starts an asynchronous change.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Poll until the change completes (or fails) instead of returning once it is accepted
    #[arg(long)]
    pub wait: bool,

    /// With --wait, give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "wait")]
    pub timeout: u64,
}

/// A resource reference that may be scoped to a project.
#[derive(Args, Debug, Clone)]
pub struct ScopedRef {
    /// Id or name of the resource
    #[arg(value_name = "REF")]
    pub reference: String,

    /// Project (id or name) in which to look the name up; not needed for ids, defaults to the
    /// token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
}

/// A reference to a cloud-wide resource.
#[derive(Args, Debug, Clone)]
pub struct GlobalRef {
    /// Id or name of the resource
    #[arg(value_name = "REF")]
    pub reference: String,
}

// ---------------------------------------------------------------------------------------------
// Datacenters

#[derive(Subcommand, Debug)]
pub enum DatacenterCmd {
    /// Declare a datacenter
    Create(DatacenterCreate),
    /// Change a datacenter's location, operator, certifications or status
    Update(DatacenterUpdate),
    /// Show one datacenter
    Get(GlobalRef),
    /// List datacenters
    List {
        /// Only datacenters in this country (ISO 3166-1 alpha-2)
        #[arg(long, value_name = "CC")]
        country: Option<String>,
        /// Only datacenters under this jurisdiction (EU, EEA or a country code)
        #[arg(long, value_name = "JURISDICTION")]
        jurisdiction: Option<String>,
    },
    /// Delete a datacenter (refused while it has hosts)
    Delete(GlobalRef),
}

#[derive(Args, Debug)]
pub struct DatacenterCreate {
    /// Unique name of the datacenter
    pub name: String,
    /// Country the datacenter is in (ISO 3166-1 alpha-2, e.g. FR)
    #[arg(long, value_name = "CC")]
    pub country: String,
    /// Legal name of the operating company
    #[arg(long, value_name = "NAME")]
    pub operator_name: String,
    /// Country where the operator is incorporated
    #[arg(long, value_name = "CC")]
    pub operator_country: String,
    /// Country of the operator's ultimate parent (defaults to --operator-country)
    #[arg(long, value_name = "CC")]
    pub parent_country: Option<String>,
    /// Largest single non-EU holder's share of the operator, in percent (0-100)
    #[arg(long, value_name = "PERCENT")]
    pub largest_non_eu_holder_percent: Option<f64>,
    /// Total non-EU share of the operator, in percent (0-100)
    #[arg(long, value_name = "PERCENT")]
    pub total_non_eu_percent: Option<f64>,
    /// Certification held (repeatable or comma-separated, e.g. secnumcloud,hds)
    #[arg(long = "cert", value_name = "CERT", value_delimiter = ',')]
    pub certs: Vec<String>,
    /// Idempotency key; a random one is generated when absent
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct DatacenterUpdate {
    /// Id or name of the datacenter
    #[arg(value_name = "REF")]
    pub reference: String,
    /// New country (ISO 3166-1 alpha-2)
    #[arg(long, value_name = "CC")]
    pub country: Option<String>,
    /// New legal name of the operator
    #[arg(long, value_name = "NAME")]
    pub operator_name: Option<String>,
    /// New country of incorporation of the operator
    #[arg(long, value_name = "CC")]
    pub operator_country: Option<String>,
    /// New country of the operator's ultimate parent
    #[arg(long, value_name = "CC")]
    pub parent_country: Option<String>,
    /// New largest single non-EU holder's share, in percent
    #[arg(long, value_name = "PERCENT")]
    pub largest_non_eu_holder_percent: Option<f64>,
    /// New total non-EU share, in percent
    #[arg(long, value_name = "PERCENT")]
    pub total_non_eu_percent: Option<f64>,
    /// Replace the certifications with these (repeatable or comma-separated)
    #[arg(long = "cert", value_name = "CERT", value_delimiter = ',')]
    pub certs: Vec<String>,
    /// Remove every certification
    #[arg(long, conflicts_with = "certs")]
    pub clear_certs: bool,
    /// New status
    #[arg(long, value_enum)]
    pub status: Option<DatacenterStatusArg>,
    /// Refuse the update unless the datacenter is still at this generation
    #[arg(long, value_name = "N")]
    pub expected_generation: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatacenterStatusArg {
    /// Accepts new placements
    Active,
    /// Keeps what runs there, accepts nothing new
    Maintenance,
    /// Out of service
    Retired,
}

// ---------------------------------------------------------------------------------------------
// Hosts

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Register a hypervisor host in a datacenter
    Register(HostRegister),
    /// Change a host's state (down and disabled hosts receive nothing new)
    SetState {
        /// Id or name of the host
        #[arg(value_name = "REF")]
        reference: String,
        /// New state
        #[arg(value_enum)]
        state: HostStateArg,
    },
    /// Show one host
    Get(GlobalRef),
    /// List hosts
    List {
        /// Only hosts of this datacenter (id or name)
        #[arg(long, value_name = "DC")]
        datacenter: Option<String>,
    },
    /// Remove a host (refused while it carries instances or volumes)
    Delete(GlobalRef),
    /// Mark a down host as lost for good
    ///
    /// For a down host that will not come back: pending deletions of instances and volumes on it
    /// complete instead of waiting for the host forever. Its other instances stay HOST_LOST.
    DeclareLost(GlobalRef),
    /// Guests and volumes the host's agent quarantined instead of deleting
    ///
    /// The agent never deletes what its desired state does not list: it stops and tags it, and
    /// reports it here. Delete one on the host with `andromede-agent --state-dir DIR
    /// --delete-orphan ID` (docs/agent.md).
    Orphans(GlobalRef),
    /// One-use, expiring tokens with which a host agent enrolls its host
    #[command(subcommand)]
    JoinToken(JoinTokenCmd),
}

#[derive(Subcommand, Debug)]
pub enum JoinTokenCmd {
    /// Create a token for enrolling one host in a datacenter; the token is shown only once
    Create {
        /// Datacenter (id or name) the host will join
        #[arg(long, value_name = "DC")]
        datacenter: String,
        /// Lifetime of the token, in seconds (at most 604800, 7 days) [default: 3600]
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=MAX_JOIN_TTL_SECS))]
        ttl: Option<u64>,
    },
    /// List join tokens: datacenter, expiry and the host that used each (never their secrets)
    List,
}

/// The server refuses longer-lived join tokens; checking here turns that into a usage error.
pub const MAX_JOIN_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Args, Debug)]
pub struct HostRegister {
    /// Unique name of the host
    pub name: String,
    /// Datacenter (id or name) the host is in
    #[arg(long, value_name = "DC")]
    pub datacenter: String,
    /// Physical vCPUs
    #[arg(long, value_name = "N")]
    pub vcpus: u64,
    /// Physical memory, in MiB
    #[arg(long, value_name = "N")]
    pub memory_mib: u64,
    /// Local disk, in GiB
    #[arg(long, value_name = "N")]
    pub disk_gib: u64,
    /// vCPU overcommit ratio [default: 4.0]
    #[arg(long, value_name = "F")]
    pub cpu_ratio: Option<f64>,
    /// Memory overcommit ratio [default: 1.0]
    #[arg(long, value_name = "F")]
    pub memory_ratio: Option<f64>,
    /// Disk overcommit ratio [default: 1.0]
    #[arg(long, value_name = "F")]
    pub disk_ratio: Option<f64>,
    /// No real agent drives this host: the control plane simulates it
    #[arg(long)]
    pub simulated: bool,
    /// Idempotency key; a random one is generated when absent
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStateArg {
    /// In service
    Up,
    /// Unreachable or broken
    Down,
    /// Being emptied: keeps what runs, accepts nothing new
    Draining,
    /// Taken out of service by an operator
    Disabled,
}

// ---------------------------------------------------------------------------------------------
// Flavors and images

#[derive(Subcommand, Debug)]
pub enum FlavorCmd {
    /// Define a flavor
    Create {
        /// Unique name of the flavor (e.g. m1.small)
        name: String,
        /// vCPUs
        #[arg(long, value_name = "N")]
        vcpus: u64,
        /// Memory, in MiB
        #[arg(long, value_name = "N")]
        memory_mib: u64,
        /// Root disk, in GiB
        #[arg(long, value_name = "N")]
        disk_gib: u64,
        /// Idempotency key; a random one is generated when absent
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Show one flavor
    Get(GlobalRef),
    /// List flavors
    List,
    /// Delete a flavor
    Delete(GlobalRef),
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Register an image
    Create(Box<ImageCreate>),
    /// Show one image
    Get(ScopedRef),
    /// List images
    List {
        /// Only this project's images (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Delete an image
    Delete(ScopedRef),
}

#[derive(Args, Debug)]
pub struct ImageCreate {
    /// Name of the image (unique in its project, or among public images)
    pub name: String,
    /// Path or URL the hosts can fetch the image from
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// SHA-256 of the image file, in hex
    #[arg(long, value_name = "HEX")]
    pub checksum_sha256: String,
    /// Disk format
    #[arg(long, value_name = "FORMAT", default_value = "qcow2")]
    pub format: String,
    /// Smallest root disk the image boots from, in GiB
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_disk_gib: u64,
    /// Owning project (id or name); public when absent
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Kernel guests boot directly (path or URL the hosts can fetch)
    #[arg(
        long,
        value_name = "PATH_OR_URL",
        requires = "kernel_sha256",
        help_heading = "Direct kernel boot"
    )]
    pub kernel: Option<String>,
    /// SHA-256 of the kernel file, in hex
    #[arg(
        long,
        value_name = "HEX",
        requires = "kernel",
        help_heading = "Direct kernel boot"
    )]
    pub kernel_sha256: Option<String>,
    /// Initial ramdisk booted with the kernel (path or URL the hosts can fetch)
    #[arg(
        long,
        value_name = "PATH_OR_URL",
        requires_all = ["initrd_sha256", "kernel"],
        help_heading = "Direct kernel boot"
    )]
    pub initrd: Option<String>,
    /// SHA-256 of the initrd file, in hex
    #[arg(
        long,
        value_name = "HEX",
        requires = "initrd",
        help_heading = "Direct kernel boot"
    )]
    pub initrd_sha256: Option<String>,
    /// Kernel command line (e.g. `console=ttyS0 root=/dev/vda1`)
    #[arg(
        long,
        value_name = "TEXT",
        requires = "kernel",
        help_heading = "Direct kernel boot"
    )]
    pub cmdline: Option<String>,
    /// Idempotency key; a random one is generated when absent
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Projects

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project with its sovereignty policy and quota
    Create(ProjectCreate),
    /// Change a project's description, policy or quota (unspecified parts are kept)
    Update(ProjectUpdate),
    /// Show one project, with its usage
    Get(GlobalRef),
    /// List projects
    List,
    /// Delete a project (refused while it owns resources)
    Delete(GlobalRef),
}

#[derive(Args, Debug)]
pub struct ProjectCreate {
    /// Unique name of the project
    pub name: String,
    /// Free text
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub quota: QuotaArgs,
    /// Idempotency key; a random one is generated when absent
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProjectUpdate {
    /// Id or name of the project
    #[arg(value_name = "REF")]
    pub reference: String,
    /// New description
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Lift the country restriction
    #[arg(long, conflicts_with = "allow_country")]
    pub clear_allow_country: bool,
    /// Lift the jurisdiction restriction
    #[arg(long, conflicts_with = "allow_jurisdiction")]
    pub clear_allow_jurisdiction: bool,
    /// Stop requiring certifications
    #[arg(long, conflicts_with = "require_cert")]
    pub clear_require_cert: bool,
    #[command(flatten)]
    pub quota: QuotaArgs,
    /// Refuse the update unless the project is still at this generation
    #[arg(long, value_name = "N")]
    pub expected_generation: Option<u64>,
}

/// Sovereignty policy flags.
#[derive(Args, Debug, Default)]
pub struct PolicyArgs {
    /// Allowed country (repeatable or comma-separated); none means any country
    #[arg(
        long,
        value_name = "CC",
        value_delimiter = ',',
        help_heading = "Sovereignty policy"
    )]
    pub allow_country: Vec<String>,
    /// Allowed jurisdiction: EU, EEA or a country code (repeatable or comma-separated)
    #[arg(
        long,
        value_name = "JURISDICTION",
        value_delimiter = ',',
        help_heading = "Sovereignty policy"
    )]
    pub allow_jurisdiction: Vec<String>,
    /// Certification every datacenter must hold (repeatable or comma-separated)
    #[arg(
        long,
        value_name = "CERT",
        value_delimiter = ',',
        help_heading = "Sovereignty policy"
    )]
    pub require_cert: Vec<String>,
    /// Only datacenters whose operator is immune to non-EU laws (EU operator and parent,
    /// non-EU holders within SecNumCloud thresholds); `--operator-immunity=false` turns it off
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Sovereignty policy"
    )]
    pub operator_immunity: Option<bool>,
}

/// Quota flags; each takes a number or `unlimited`.
#[derive(Args, Debug, Default, Clone, Copy)]
pub struct QuotaArgs {
    /// Maximum number of instances
    #[arg(long, value_name = "N|unlimited", help_heading = "Quota")]
    pub quota_instances: Option<QuotaLimit>,
    /// Maximum vCPUs over all instances
    #[arg(long, value_name = "N|unlimited", help_heading = "Quota")]
    pub quota_vcpus: Option<QuotaLimit>,
    /// Maximum memory over all instances, in MiB
    #[arg(long, value_name = "N|unlimited", help_heading = "Quota")]
    pub quota_memory_mib: Option<QuotaLimit>,
    /// Maximum number of volumes
    #[arg(long, value_name = "N|unlimited", help_heading = "Quota")]
    pub quota_volumes: Option<QuotaLimit>,
    /// Maximum size over all volumes, in GiB
    #[arg(long, value_name = "N|unlimited", help_heading = "Quota")]
    pub quota_volume_gib: Option<QuotaLimit>,
}

/// One quota limit: a number, or no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaLimit {
    Limited(u64),
    Unlimited,
}

impl QuotaLimit {
    pub fn as_option(self) -> Option<u64> {
        match self {
            QuotaLimit::Limited(n) => Some(n),
            QuotaLimit::Unlimited => None,
        }
    }
}

impl FromStr for QuotaLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(QuotaLimit::Unlimited);
        }
        s.parse::<u64>()
            .map(QuotaLimit::Limited)
            .map_err(|_| format!("`{s}` is neither a non-negative number nor `unlimited`"))
    }
}

// ---------------------------------------------------------------------------------------------
// Instances and server groups

#[derive(Subcommand, Debug)]
pub enum InstanceCmd {
    /// Create (and schedule) an instance
    Create(Box<InstanceCreate>),
    /// Show one instance
    Get(ScopedRef),
    /// List instances
    List {
        /// Only this project's instances (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Power an instance on
    Start(InstanceAction),
    /// Power an instance off
    Stop(InstanceAction),
    /// Reboot an instance
    Reboot(InstanceAction),
    /// Delete an instance
    Delete(InstanceAction),
    /// Print the end of an instance's serial console log, as raw bytes (pipe-friendly)
    ConsoleLog(InstanceConsoleLog),
}

#[derive(Args, Debug)]
pub struct InstanceConsoleLog {
    #[command(flatten)]
    pub target: ScopedRef,
    /// How many bytes of the end of the log to fetch (at most 1048576)
    #[arg(long, value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=MAX_CONSOLE_BYTES))]
    pub bytes: u64,
}

/// The server returns at most 1 MiB of console log per call.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;

#[derive(Args, Debug)]
pub struct InstanceCreate {
    /// Name of the instance, unique in its project
    pub name: String,
    /// Owning project (id or name); defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Flavor (id or name)
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: String,
    /// Image (id or name)
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// Cloud-init user data, inline
    #[arg(long, value_name = "STRING", conflicts_with = "user_data_file")]
    pub user_data: Option<String>,
    /// Cloud-init user data, read from a file
    #[arg(long, value_name = "PATH")]
    pub user_data_file: Option<PathBuf>,
    /// Authorized SSH public key (repeatable); `@PATH` reads it from a file
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,
    /// Server group (id or name) to join
    #[arg(long, value_name = "GROUP")]
    pub server_group: Option<String>,
    #[command(flatten)]
    pub constraints: ConstraintArgs,
    /// Idempotency key; a random one is generated when absent and reused by automatic retries
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Placement constraints: narrow (never widen) the project's policy for one request.
#[derive(Args, Debug, Default, Clone)]
pub struct ConstraintArgs {
    /// Only place in this country (repeatable or comma-separated)
    #[arg(
        long,
        value_name = "CC",
        value_delimiter = ',',
        help_heading = "Placement constraints"
    )]
    pub country: Vec<String>,
    /// Only place in this datacenter, id or name (repeatable or comma-separated)
    #[arg(
        long,
        value_name = "DC",
        value_delimiter = ',',
        help_heading = "Placement constraints"
    )]
    pub datacenter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InstanceAction {
    #[command(flatten)]
    pub target: ScopedRef,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand, Debug)]
pub enum ServerGroupCmd {
    /// Create a server group
    Create {
        /// Name of the group, unique in its project
        name: String,
        /// Owning project (id or name); defaults to the token's project
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
        /// Keep members on the same host (affinity) or on different hosts (anti-affinity)
        #[arg(long, value_enum)]
        policy: GroupPolicyArg,
        /// Refuse a placement that would break the policy instead of only preferring to keep it
        #[arg(long)]
        hard: bool,
        /// Idempotency key; a random one is generated when absent
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Show one server group
    Get(ScopedRef),
    /// List server groups
    List {
        /// Only this project's groups (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Delete a server group
    Delete(ScopedRef),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicyArg {
    /// Members share a host
    Affinity,
    /// Members are spread over distinct hosts
    AntiAffinity,
}

// ---------------------------------------------------------------------------------------------
// Volumes

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreate),
    /// Show one volume
    Get(ScopedRef),
    /// List volumes
    List {
        /// Only this project's volumes (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Delete a volume (it must be detached)
    Delete(VolumeDelete),
    /// Attach a volume to an instance on the same host
    Attach(VolumeAttach),
    /// Detach a volume from its instance
    Detach(VolumeDetach),
    /// Grow a volume (never shrink it), also while it is attached
    Extend(VolumeExtend),
}

#[derive(Args, Debug)]
pub struct VolumeCreate {
    /// Name of the volume, unique in its project
    pub name: String,
    /// Owning project (id or name); defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Size, in GiB
    #[arg(long, value_name = "N")]
    pub size_gib: u64,
    #[command(flatten)]
    pub constraints: ConstraintArgs,
    /// Place the volume on this instance's host (id or name) so it can be attached to it
    #[arg(long, value_name = "INSTANCE")]
    pub near_instance: Option<String>,
    /// Idempotency key; a random one is generated when absent and reused by automatic retries
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct VolumeDelete {
    #[command(flatten)]
    pub target: ScopedRef,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct VolumeAttach {
    /// Id or name of the volume
    #[arg(value_name = "VOLUME")]
    pub volume: String,
    /// Instance (id or name) to attach to
    #[arg(long, value_name = "INSTANCE")]
    pub instance: String,
    /// Project (id or name) in which to look names up; defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct VolumeDetach {
    /// Id or name of the volume
    #[arg(value_name = "VOLUME")]
    pub volume: String,
    /// Project (id or name) in which to look the name up; defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct VolumeExtend {
    /// Id or name of the volume
    #[arg(value_name = "VOLUME")]
    pub volume: String,
    /// New size, in GiB; must be larger than the current one
    #[arg(long, visible_alias = "size-gib", value_name = "GIB")]
    pub size: u64,
    /// Project (id or name) in which to look the name up; defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

// ---------------------------------------------------------------------------------------------
// Placement, events, cluster

#[derive(Subcommand, Debug)]
pub enum PlacementCmd {
    /// Show, filter by filter, which hosts an instance or volume could land on and why
    Explain(PlacementExplain),
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["flavor", "volume_gib"]))]
pub struct PlacementExplain {
    /// Project (id or name) whose policy applies; defaults to the token's project
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Explain an instance of this flavor (id or name)
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// Explain a volume of this size, in GiB
    #[arg(long, value_name = "N")]
    pub volume_gib: Option<u64>,
    #[command(flatten)]
    pub constraints: ConstraintArgs,
    /// Server group (id or name) the instance would join
    #[arg(long, value_name = "GROUP")]
    pub server_group: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum EventsCmd {
    /// Print events as they happen, until interrupted (Ctrl-C)
    Watch {
        /// Replay the events after this revision, then follow new ones (0 replays everything the
        /// server still keeps)
        #[arg(long, value_name = "N", default_value_t = 0)]
        from_revision: u64,
        /// Only events about this kind of resource: instance, volume, host, ... (repeatable or comma-separated)
        #[arg(long, value_name = "KIND", value_delimiter = ',')]
        kind: Vec<String>,
        /// Only events of this project (id or name)
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show Raft state and members as seen by the contacted node
    Status,
    /// Initialize a fresh single-node cluster on the contacted node
    Init,
    /// Add a node as a learner; it catches up from the log or a snapshot
    AddLearner {
        /// Raft id of the new node
        node_id: u64,
        /// Address the other nodes reach it at (e.g. http://10.0.0.12:7400)
        addr: String,
        /// Datacenter (id or name) the new server runs in (required: it will hold every
        /// project's metadata); refused before it receives any data if a project's sovereignty
        /// policy excludes it
        #[arg(long, value_name = "DC")]
        datacenter: String,
    },
    /// Declare the datacenter a server runs in: it holds every project's metadata, so every
    /// project's sovereignty policy must allow it (refused, naming the projects, otherwise)
    Locate {
        /// Raft id of the server
        node_id: u64,
        /// Datacenter (id or name)
        #[arg(long, value_name = "DC")]
        datacenter: String,
    },
    /// Make learners voters
    Promote {
        /// Raft ids of the learners to promote
        #[arg(required = true)]
        node_ids: Vec<u64>,
    },
    /// Remove a node from the voters and learners
    Remove {
        /// Raft id of the node to remove
        node_id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?} should parse: {e}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_instance_create_with_everything() {
        let cli = parse(&[
            "cloudctl",
            "-o",
            "json",
            "instance",
            "create",
            "web-1",
            "--project",
            "acme",
            "--flavor",
            "m1.small",
            "--image",
            "debian-12",
            "--ssh-key",
            "ssh-ed25519 AAA",
            "--country",
            "FR,DE",
            "--country",
            "IT",
            "--datacenter",
            "par1",
            "--request-id",
            "r-1",
            "--wait",
            "--timeout",
            "60",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Instance(InstanceCmd::Create(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.name, "web-1");
        assert_eq!(c.project.as_deref(), Some("acme"));
        assert_eq!(c.constraints.country, ["FR", "DE", "IT"]);
        assert_eq!(c.constraints.datacenter, ["par1"]);
        assert_eq!(c.ssh_keys, ["ssh-ed25519 AAA"]);
        assert_eq!(c.request_id.as_deref(), Some("r-1"));
        assert!(c.wait.wait);
        assert_eq!(c.wait.timeout, 60);
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "cloudctl",
            "instance",
            "list",
            "--stale",
            "--endpoint",
            "http://x:1",
            "-o",
            "yaml",
        ]);
        assert!(cli.global.stale);
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://x:1"));
        assert_eq!(cli.global.output, OutputFormat::Yaml);
    }

    #[test]
    fn user_data_sources_conflict() {
        let err = Cli::try_parse_from([
            "cloudctl",
            "instance",
            "create",
            "a",
            "--project",
            "p",
            "--flavor",
            "f",
            "--image",
            "i",
            "--user-data",
            "x",
            "--user-data-file",
            "/tmp/x",
        ])
        .err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(clap::error::ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn timeout_requires_wait() {
        let err =
            Cli::try_parse_from(["cloudctl", "instance", "stop", "web-1", "--timeout", "5"]).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(clap::error::ErrorKind::MissingRequiredArgument)
        );
    }

    #[test]
    fn explain_needs_flavor_or_volume_size() {
        assert!(
            Cli::try_parse_from(["cloudctl", "placement", "explain", "--project", "p"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "cloudctl",
            "placement",
            "explain",
            "--project",
            "p",
            "--flavor",
            "f",
            "--volume-gib",
            "3",
        ])
        .is_err());
        let cli = parse(&[
            "cloudctl",
            "placement",
            "explain",
            "-p",
            "p",
            "--volume-gib",
            "3",
        ]);
        let Command::Placement(PlacementCmd::Explain(e)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(e.volume_gib, Some(3));
    }

    #[test]
    fn parses_project_quota_and_immunity() {
        let cli = parse(&[
            "cloudctl",
            "project",
            "update",
            "acme",
            "--quota-instances",
            "10",
            "--quota-vcpus",
            "unlimited",
            "--operator-immunity=false",
            "--clear-allow-country",
        ]);
        let Command::Project(ProjectCmd::Update(u)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(u.quota.quota_instances, Some(QuotaLimit::Limited(10)));
        assert_eq!(u.quota.quota_vcpus, Some(QuotaLimit::Unlimited));
        assert_eq!(u.policy.operator_immunity, Some(false));
        assert!(u.clear_allow_country);

        let cli = parse(&[
            "cloudctl",
            "project",
            "create",
            "acme",
            "--operator-immunity",
        ]);
        let Command::Project(ProjectCmd::Create(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.policy.operator_immunity, Some(true));
        assert!(
            Cli::try_parse_from(["cloudctl", "project", "create", "a", "--quota-vcpus", "-1"])
                .is_err()
        );
    }

    #[test]
    fn parses_cluster_and_host_commands() {
        let cli = parse(&["cloudctl", "cluster", "promote", "2", "3"]);
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCmd::Promote { ref node_ids }) if node_ids == &[2, 3]
        ));
        assert!(Cli::try_parse_from(["cloudctl", "cluster", "promote"]).is_err());
        let cli = parse(&["cloudctl", "host", "set-state", "h1", "draining"]);
        assert!(matches!(
            cli.command,
            Command::Host(HostCmd::SetState {
                state: HostStateArg::Draining,
                ..
            })
        ));
        let cli = parse(&[
            "cloudctl",
            "server-group",
            "create",
            "g",
            "-p",
            "acme",
            "--policy",
            "anti-affinity",
            "--hard",
        ]);
        assert!(matches!(
            cli.command,
            Command::ServerGroup(ServerGroupCmd::Create {
                policy: GroupPolicyArg::AntiAffinity,
                hard: true,
                ..
            })
        ));
    }

    #[test]
    fn parses_join_tokens_and_declare_lost() {
        let cli = parse(&[
            "cloudctl",
            "host",
            "join-token",
            "create",
            "--datacenter",
            "par1",
            "--ttl",
            "600",
        ]);
        assert!(matches!(
            cli.command,
            Command::Host(HostCmd::JoinToken(JoinTokenCmd::Create { ref datacenter, ttl: Some(600) }))
                if datacenter == "par1"
        ));
        for bad in ["0", "604801"] {
            assert!(Cli::try_parse_from([
                "cloudctl",
                "host",
                "join-token",
                "create",
                "--datacenter",
                "par1",
                "--ttl",
                bad,
            ])
            .is_err());
        }
        let cli = parse(&["cloudctl", "host", "join-token", "list"]);
        assert!(matches!(
            cli.command,
            Command::Host(HostCmd::JoinToken(JoinTokenCmd::List))
        ));
        let cli = parse(&["cloudctl", "host", "declare-lost", "par1-h01"]);
        assert!(matches!(
            cli.command,
            Command::Host(HostCmd::DeclareLost(ref r)) if r.reference == "par1-h01"
        ));
    }

    #[test]
    fn console_log_bytes_default_and_bounds() {
        let cli = parse(&["cloudctl", "instance", "console-log", "web-1", "-p", "acme"]);
        let Command::Instance(InstanceCmd::ConsoleLog(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.bytes, 65536);
        assert_eq!(c.target.project.as_deref(), Some("acme"));
        assert!(
            Cli::try_parse_from(["cloudctl", "instance", "console-log", "a", "--bytes", "0"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "cloudctl",
            "instance",
            "console-log",
            "a",
            "--bytes",
            "1048577"
        ])
        .is_err());
    }

    #[test]
    fn parses_volume_extend() {
        let cli = parse(&[
            "cloudctl", "volume", "extend", "data-1", "--size", "200", "-p", "acme", "--wait",
        ]);
        let Command::Volume(VolumeCmd::Extend(e)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((e.volume.as_str(), e.size), ("data-1", 200));
        assert!(e.wait.wait);
        assert!(Cli::try_parse_from(["cloudctl", "volume", "extend", "data-1"]).is_err());
    }

    #[test]
    fn kernel_flags_come_with_their_checksums() {
        let base = [
            "cloudctl",
            "image",
            "create",
            "deb",
            "--source",
            "/img/deb.raw",
            "--checksum-sha256",
            "ab",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = match with(&[
            "--kernel",
            "/img/vmlinuz",
            "--kernel-sha256",
            "cd",
            "--initrd",
            "/img/initrd",
            "--initrd-sha256",
            "ef",
            "--cmdline",
            "console=ttyS0",
        ]) {
            Ok(c) => c,
            Err(e) => panic!("should parse: {e}"),
        };
        let Command::Image(ImageCmd::Create(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.kernel.as_deref(), Some("/img/vmlinuz"));
        assert_eq!(c.initrd_sha256.as_deref(), Some("ef"));
        assert_eq!(c.cmdline.as_deref(), Some("console=ttyS0"));
        assert!(with(&[]).is_ok());
        assert!(with(&["--kernel", "/k"]).is_err());
        assert!(with(&["--kernel-sha256", "cd"]).is_err());
        assert!(with(&["--initrd", "/i", "--initrd-sha256", "ef"]).is_err());
        assert!(with(&["--cmdline", "quiet"]).is_err());
    }

    #[test]
    fn parses_tokens_and_their_lifetimes() {
        let cli = parse(&[
            "cloudctl", "token", "create", "ci", "-p", "acme", "--role", "member", "--ttl", "30d",
        ]);
        let Command::Token(TokenCmd::Create(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((c.name.as_str(), c.role), ("ci", RoleArg::Member));
        assert_eq!(c.project.as_deref(), Some("acme"));
        assert_eq!(c.ttl, Some(30 * 86_400));
        let cli = parse(&["cloudctl", "token", "create", "ops", "--role", "reader"]);
        assert!(matches!(
            cli.command,
            Command::Token(TokenCmd::Create(TokenCreate {
                ttl: None,
                project: None,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["cloudctl", "token", "create", "x"]).is_err());
        assert!(
            Cli::try_parse_from(["cloudctl", "token", "create", "x", "--role", "owner"]).is_err()
        );
        let cli = parse(&["cloudctl", "token", "list", "--all"]);
        assert!(matches!(
            cli.command,
            Command::Token(TokenCmd::List {
                all: true,
                project: None
            })
        ));
        let cli = parse(&["cloudctl", "token", "revoke", "ci", "-p", "acme"]);
        assert!(matches!(
            cli.command,
            Command::Token(TokenCmd::Revoke { ref reference, .. }) if reference == "ci"
        ));
        assert!(matches!(
            parse(&["cloudctl", "whoami"]).command,
            Command::Whoami
        ));

        assert_eq!(parse_ttl("3600s"), Ok(3600));
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("90m"), Ok(5400));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("2w"), Ok(1_209_600));
        assert_eq!(parse_ttl("3650d"), Ok(MAX_TTL_SECS));
        for bad in [
            "",
            "d",
            "0",
            "0h",
            "1y",
            "-5s",
            "3651d",
            "99999999999999999999w",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_commands_default_to_the_tokens_project() {
        let cli = parse(&[
            "cloudctl", "instance", "create", "w", "--flavor", "f", "--image", "i",
        ]);
        let Command::Instance(InstanceCmd::Create(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.project, None);
        for args in [
            &["cloudctl", "volume", "create", "v", "--size-gib", "1"][..],
            &[
                "cloudctl",
                "server-group",
                "create",
                "g",
                "--policy",
                "affinity",
            ],
            &["cloudctl", "placement", "explain", "--flavor", "f"],
            &["cloudctl", "compliance", "report"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn parses_config_subcommands() {
        assert!(matches!(
            parse(&["cloudctl", "config", "get-contexts", "-o", "json"]),
            Cli {
                command: Command::Config(ConfigCmd::GetContexts),
                global: GlobalArgs {
                    output: OutputFormat::Json,
                    ..
                }
            }
        ));
        assert!(matches!(
            parse(&["cloudctl", "config", "current-context"]).command,
            Command::Config(ConfigCmd::CurrentContext)
        ));
        assert!(matches!(
            parse(&["cloudctl", "config", "use-context", "prod"]).command,
            Command::Config(ConfigCmd::UseContext { ref name }) if name == "prod"
        ));
        assert!(Cli::try_parse_from(["cloudctl", "config", "use-context"]).is_err());
        assert!(Cli::try_parse_from(["cloudctl", "config"]).is_err());

        let cli = parse(&[
            "cloudctl",
            "config",
            "set-context",
            "prod",
            "--endpoint",
            "https://p:7400",
            "--ca-cert",
            "ca.pem",
            "--token-file",
            "/run/t",
        ]);
        let Command::Config(ConfigCmd::SetContext(c)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(c.name, "prod");
        assert_eq!(c.endpoint.as_deref(), Some("https://p:7400"));
        assert_eq!(c.ca_cert, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.token_file, Some(PathBuf::from("/run/t")));
        let cli = parse(&["cloudctl", "config", "set-context", "lab"]);
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCmd::SetContext(SetContext {
                endpoint: None,
                ca_cert: None,
                token_file: None,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["cloudctl", "config", "set-context"]).is_err());
    }

    #[test]
    fn unknown_subcommand_is_a_usage_error() {
        let err = Cli::try_parse_from(["cloudctl", "instance", "explode"]).err();
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
    }
}
