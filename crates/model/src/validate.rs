//! Input validation: every rule names the field it checks, so errors can say exactly what is wrong.

use crate::jurisdiction::{is_country, is_jurisdiction};

pub const MAX_NAME: usize = 63;
pub const MAX_USER_DATA: usize = 64 * 1024;
pub const MAX_SSH_KEYS: usize = 32;
pub const MAX_SSH_KEY: usize = 16 * 1024;
pub const MAX_REQUEST_ID: usize = 128;
pub const MAX_LIST: usize = 64;
pub const MAX_TEXT: usize = 1024;
pub const MAX_VCPUS: u64 = 4096;
pub const MAX_MEMORY_MIB: u64 = 64 * 1024 * 1024;
pub const MAX_DISK_GIB: u64 = 1024 * 1024;

/// One broken rule: the field path and what the rule is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// Collects violations so a request is answered with all of its problems at once.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A resource name: 1–63 characters of lowercase letters, digits and `-`, starting with a
    /// letter or digit (a DNS label, so it can become a hostname).
    pub fn name(&mut self, field: &str, v: &str) {
        if v.is_empty() {
            self.add(field, "must not be empty");
        } else if v.len() > MAX_NAME {
            self.add(
                field,
                format!("must be at most {MAX_NAME} characters (got {})", v.len()),
            );
        } else if !v
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || v.starts_with('-')
            || v.ends_with('-')
        {
            self.add(
                field,
                "must be lowercase letters, digits and '-', not starting or ending with '-'",
            );
        }
    }

    /// A reference to another resource by id or name: required, bounded.
    pub fn reference(&mut self, field: &str, v: &str) {
        if v.is_empty() {
            self.add(field, "must not be empty");
        } else if v.len() > 128 {
            self.add(field, "must be at most 128 characters");
        }
    }

    pub fn optional_reference(&mut self, field: &str, v: &str) {
        if !v.is_empty() {
            self.reference(field, v);
        }
    }

    pub fn country(&mut self, field: &str, v: &str) {
        if !is_country(v) {
            self.add(
                field,
                format!("{v:?} is not an ISO 3166-1 alpha-2 country code (e.g. FR)"),
            );
        }
    }

    pub fn countries(&mut self, field: &str, v: &[String]) {
        self.list_len(field, v);
        for (i, c) in v.iter().enumerate() {
            self.country(&format!("{field}[{i}]"), c);
        }
    }

    pub fn jurisdictions(&mut self, field: &str, v: &[String]) {
        self.list_len(field, v);
        for (i, j) in v.iter().enumerate() {
            if !is_jurisdiction(j) {
                self.add(
                    format!("{field}[{i}]"),
                    format!("{j:?} is not a jurisdiction (EU, EEA or a country code)"),
                );
            }
        }
    }

    /// Certification labels: lowercase identifiers such as `secnumcloud` or `iso27001`.
    pub fn labels(&mut self, field: &str, v: &[String]) {
        self.list_len(field, v);
        for (i, l) in v.iter().enumerate() {
            if l.is_empty()
                || l.len() > 32
                || !l
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                self.add(
                    format!("{field}[{i}]"),
                    "must be 1-32 lowercase letters, digits, '-' or '_'",
                );
            }
        }
    }

    pub fn list_len(&mut self, field: &str, v: &[String]) {
        if v.len() > MAX_LIST {
            self.add(field, format!("must have at most {MAX_LIST} entries"));
        }
    }

    pub fn positive(&mut self, field: &str, v: u64, max: u64) {
        if v == 0 {
            self.add(field, "must be greater than 0");
        } else if v > max {
            self.add(field, format!("must be at most {max}"));
        }
    }

    pub fn percent(&mut self, field: &str, v: f64) {
        if !v.is_finite() || !(0.0..=100.0).contains(&v) {
            self.add(field, "must be a percentage between 0 and 100");
        }
    }

    /// Allocation ratio: 0 means "use the default"; otherwise finite, > 0 and at most 64.
    pub fn ratio(&mut self, field: &str, v: f64) {
        if !v.is_finite() || !(0.0..=64.0).contains(&v) {
            self.add(field, "must be between 0 (default) and 64");
        }
    }

    pub fn text(&mut self, field: &str, v: &str, max: usize) {
        if v.len() > max {
            self.add(
                field,
                format!("must be at most {max} bytes (got {})", v.len()),
            );
        }
    }

    /// Where hosts fetch an image file from: required, at most 4096 bytes, and one of the
    /// schemes the agent fetches (an absolute path, `file:///…`, `http://host…`, `https://host…`).
    pub fn image_source(&mut self, field: &str, v: &str) {
        const SUPPORTED: &str =
            "an absolute path, file:///path, http://host/path or https://host/path";
        if v.is_empty() {
            self.add(field, format!("is required: {SUPPORTED}"));
            return;
        }
        if v.len() > 4096 {
            self.add(field, "must be at most 4096 bytes");
            return;
        }
        if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.add(field, "must not contain spaces or control characters");
            return;
        }
        let ok = if let Some(path) = v.strip_prefix("file://") {
            path.starts_with('/')
        } else if let Some(rest) = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"))
        {
            rest.split(['/', '?', '#'])
                .next()
                .is_some_and(|authority| !authority.is_empty())
        } else {
            v.starts_with('/')
        };
        if !ok {
            let scheme = v.split_once("://").map(|(s, _)| s);
            match scheme {
                Some(s) if !matches!(s, "file" | "http" | "https") => self.add(
                    field,
                    format!("scheme {s}:// is not supported; use {SUPPORTED}"),
                ),
                _ => self.add(field, format!("must be {SUPPORTED}")),
            }
        }
    }

    pub fn request_id(&mut self, field: &str, v: &str) {
        if v.len() > MAX_REQUEST_ID {
            self.add(
                field,
                format!("must be at most {MAX_REQUEST_ID} characters"),
            );
        } else if v.chars().any(|c| c.is_control()) {
            self.add(field, "must not contain control characters");
        }
    }

    /// An enum field received as its wire integer: unknown or unspecified values are refused.
    pub fn enum_value(&mut self, field: &str, known: bool, allow_unspecified: bool, v: i32) {
        if !known || (v == 0 && !allow_unspecified) {
            self.add(field, format!("{v} is not a valid value"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut v = Violations::new();
        v.name("name", "web-1");
        assert!(v.is_empty());
        v.name("name", "");
        v.name("name", &"a".repeat(10_000));
        v.name("name", "Web_1");
        v.name("name", "-x");
        assert_eq!(v.0.len(), 4);
        assert!(v.0.iter().all(|x| x.field == "name"));
    }

    #[test]
    fn numbers_and_codes() {
        let mut v = Violations::new();
        v.positive("vcpus", 0, 10);
        v.positive("vcpus", 11, 10);
        v.country("country", "XX");
        v.percent("p", f64::NAN);
        v.ratio("r", -1.0);
        v.enum_value("state", false, false, 99);
        assert_eq!(v.0.len(), 6);
    }

    #[test]
    fn image_sources_name_the_supported_schemes() {
        let mut v = Violations::new();
        for ok in [
            "/srv/img/root.qcow2",
            "file:///srv/img/root.qcow2",
            "http://store.example:8080/root.qcow2",
            "https://store.example/root.qcow2?v=2",
        ] {
            v.image_source("source", ok);
        }
        assert!(v.is_empty(), "{:?}", v.0);
        v.image_source("source", "ftp://store.example/root.qcow2");
        assert_eq!(v.0.len(), 1);
        assert_eq!(v.0[0].field, "source");
        assert!(
            v.0[0].description.contains("ftp:// is not supported"),
            "{:?}",
            v.0
        );
        assert!(v.0[0].description.contains("https://"), "{:?}", v.0);
        for bad in ["", "rel/root.qcow2", "file://host/x", "https:///x", "/a b"] {
            let mut v = Violations::new();
            v.image_source("kernel.source", bad);
            assert_eq!(v.0.len(), 1, "{bad:?}");
            assert_eq!(v.0[0].field, "kernel.source");
        }
    }
}
