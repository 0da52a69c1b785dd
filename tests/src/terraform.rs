//! Driving the real `terraform` binary against a test server: a filesystem mirror holding the
//! freshly built provider, a CLI config pointing at it, and one working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The provider's address in configurations, and the version the mirror serves it as.
pub const SOURCE: &str = "andromede/andromede";
pub const VERSION: &str = "0.1.0";

/// `terraform` from PATH (or `TERRAFORM`); the acceptance test fails, never skips, without it.
pub fn terraform_bin() -> PathBuf {
    let bin = std::env::var("TERRAFORM").unwrap_or_else(|_| "terraform".to_owned());
    match Command::new(&bin).arg("version").output() {
        Ok(o) if o.status.success() => PathBuf::from(bin),
        Ok(o) => panic!(
            "`{bin} version` failed ({}): the Terraform acceptance test needs a working terraform binary",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "terraform is missing ({bin}: {e}): install Terraform (>= 1.5) or set TERRAFORM to its path; \
             the acceptance test cannot run without it"
        ),
    }
}

/// One Terraform working directory using the provider from `bin_dir` through a filesystem mirror.
pub struct Workspace {
    pub dir: PathBuf,
    cli_config: PathBuf,
    terraform: PathBuf,
    endpoint: String,
    token: String,
    /// The provider blocks of `main.tf` (by default one, configured from the environment).
    pub providers: String,
}

/// What one command printed, and whether (and how) it succeeded.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Workspace {
    pub fn new(root: &Path, provider: &Path, endpoint: &str, token: &str) -> Self {
        let mirror = root.join("mirror");
        let pkg = mirror
            .join("registry.terraform.io")
            .join(SOURCE)
            .join(VERSION)
            .join("linux_amd64");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::copy(
            provider,
            pkg.join(format!("terraform-provider-andromede_v{VERSION}")),
        )
        .unwrap();
        let cli_config = root.join("terraform.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/andromede/*\"]\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .unwrap();
        let dir = root.join("work");
        std::fs::create_dir_all(&dir).unwrap();
        Workspace {
            dir,
            cli_config,
            terraform: terraform_bin(),
            endpoint: endpoint.to_owned(),
            token: token.to_owned(),
            providers: "provider \"andromede\" {}\n".to_owned(),
        }
    }

    /// Writes `main.tf`: the provider requirement, the provider blocks, then `body`. Unless the
    /// blocks say otherwise, the endpoint and token come from ANDROMEDE_ENDPOINT /
    /// ANDROMEDE_TOKEN, as a user would set them.
    pub fn write(&self, body: &str) {
        let text = format!(
            "terraform {{\n  required_providers {{\n    andromede = {{\n      source  = \"{SOURCE}\"\n      version = \"{VERSION}\"\n    }}\n  }}\n}}\n\n{}\n{body}\n",
            self.providers
        );
        std::fs::write(self.dir.join("main.tf"), text).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// `run` with extra environment variables, e.g. what a user's shell may carry.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = Command::new(&self.terraform)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("ANDROMEDE_ENDPOINT", &self.endpoint)
            .env("ANDROMEDE_TOKEN", &self.token)
            .env_remove("TF_LOG")
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Runs and insists on success, showing everything Terraform said otherwise.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "terraform {args:?} failed:\n{}", r.all());
        r
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes.
    pub fn plan(&self) -> Run {
        let r = self.run(&["plan", "-detailed-exitcode", "-no-color"]);
        assert!(r.code == 0 || r.code == 2, "plan failed:\n{}", r.all());
        r
    }

    pub fn apply(&self) -> Run {
        self.ok(&["apply", "-auto-approve", "-no-color"])
    }

    /// `terraform output -raw NAME`.
    pub fn output(&self, name: &str) -> String {
        self.ok(&["output", "-raw", name]).stdout.trim().to_owned()
    }
}
