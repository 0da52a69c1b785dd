//! Pure builders and scanners for the libvirt XML the driver writes and reads (domains, disks,
//! storage pool), kept free of I/O so they can be unit-tested.

use std::path::{Path, PathBuf};

use crate::hypervisor::VmSpec;

/// The XML namespace of the metadata element naming the project, instance and name.
pub const METADATA_NS: &str = "https://andromede.dev/xmlns/libvirt/instance/1";
/// The namespace of the element that marks a domain quarantined (see `Hypervisor::quarantine`).
pub const QUARANTINE_NS: &str = "https://andromede.dev/xmlns/libvirt/quarantine/1";
/// Every managed domain's name starts with this.
pub const NAME_PREFIX: &str = "andromede-";

/// How the guest's NIC is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A libvirt virtual network by name.
    Network(String),
    /// QEMU's user-mode (slirp) networking; needs no bridge.
    User,
}

/// Files on the host the domain definition points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFiles {
    pub root: PathBuf,
    pub seed: PathBuf,
    pub console: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
}

pub fn domain_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// Escapes text for use in element content and single- or double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn p(path: &Path) -> String {
    escape(&path.to_string_lossy())
}

/// The persistent definition of one guest. `virt_type` is `kvm` or `qemu` (TCG).
pub fn domain_xml(
    spec: &VmSpec,
    virt_type: &str,
    files: &DomainFiles,
    net: &NetworkMode,
) -> String {
    let mut os = String::from("    <type arch='x86_64'>hvm</type>\n");
    if let Some(kernel) = &files.kernel {
        os.push_str(&format!("    <kernel>{}</kernel>\n", p(kernel)));
        if let Some(initrd) = &files.initrd {
            os.push_str(&format!("    <initrd>{}</initrd>\n", p(initrd)));
        }
        os.push_str(&format!(
            "    <cmdline>{}</cmdline>\n",
            escape(&spec.image.cmdline)
        ));
    } else {
        os.push_str("    <boot dev='hd'/>\n");
    }
    let nic = match net {
        NetworkMode::Network(name) => format!(
            "    <interface type='network'>\n      <source network='{}'/>\n      <model type='virtio'/>\n    </interface>\n",
            escape(name)
        ),
        NetworkMode::User => {
            "    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n".to_string()
        }
    };
    let console = p(&files.console);
    // The console log is appended to across restarts so a reboot or stop/start keeps history;
    // delete removes the file.
    format!(
        "<domain type='{virt_type}'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <metadata>
    <andromede:instance xmlns:andromede='{ns}'>
      <andromede:project>{project}</andromede:project>
      <andromede:id>{uuid}</andromede:id>
      <andromede:name>{hostname}</andromede:name>
      <andromede:host>{host}</andromede:host>
    </andromede:instance>
  </metadata>
  <memory unit='MiB'>{mem}</memory>
  <currentMemory unit='MiB'>{mem}</currentMemory>
  <vcpu placement='static'>{vcpus}</vcpu>
  <os>
{os}  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{root}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{seed}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
{nic}    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{console}' append='on'/>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
",
        name = escape(&domain_name(&spec.id)),
        uuid = escape(&spec.id),
        ns = METADATA_NS,
        project = escape(&spec.project_id),
        hostname = escape(&spec.name),
        host = escape(&spec.host_id),
        mem = spec.memory_mib,
        vcpus = spec.vcpus,
        root = p(&files.root),
        seed = p(&files.seed),
    )
}

/// A data disk (volume) as attached to a guest.
pub fn volume_disk_xml(path: &Path, target: &str) -> String {
    format!(
        "<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='{}'/>
  <target dev='{}' bus='virtio'/>
</disk>
",
        p(path),
        escape(target)
    )
}

/// A directory storage pool.
pub fn dir_pool_xml(name: &str, dir: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        p(dir)
    )
}

/// One `<disk>` of a domain as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry {
    pub source: Option<String>,
    pub target: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of `attr` on the first `<elem ...>` tag inside `block`.
fn attr_of(block: &str, elem: &str, attr: &str) -> Option<String> {
    let open = format!("<{elem} ");
    let start = block.find(&open)?;
    let rest = &block[start + open.len()..];
    let tag = &rest[..rest.find('>')?];
    for quote in ['\'', '"'] {
        let key = format!("{attr}={quote}");
        let mut from = 0;
        while let Some(i) = tag[from..].find(&key) {
            let at = from + i;
            // Must be a whole attribute name, not the tail of a longer one.
            let whole = at == 0 || tag[..at].ends_with(char::is_whitespace);
            let value_start = at + key.len();
            if whole {
                let end = tag[value_start..].find(quote)?;
                return Some(unescape(&tag[value_start..value_start + end]));
            }
            from = value_start;
        }
    }
    None
}

/// The host id a domain's metadata names (empty when it names none).
pub fn owner_host(domain_xml: &str) -> String {
    let open = "<andromede:host>";
    domain_xml
        .find(open)
        .and_then(|i| {
            let rest = &domain_xml[i + open.len()..];
            rest.find("</andromede:host>")
                .map(|j| unescape(rest[..j].trim()))
        })
        .unwrap_or_default()
}

/// Whether a domain's XML carries the quarantine mark.
pub fn is_quarantined(domain_xml: &str) -> bool {
    domain_xml.contains(QUARANTINE_NS)
}

/// Every `<disk>` in a domain's XML, in document order.
pub fn disks(domain_xml: &str) -> Vec<DiskEntry> {
    let mut out = Vec::new();
    let mut rest = domain_xml;
    while let Some(start) = rest.find("<disk ") {
        let after = &rest[start..];
        let end = after.find("</disk>").unwrap_or(after.len());
        let block = &after[..end];
        out.push(DiskEntry {
            source: attr_of(block, "source", "file"),
            target: attr_of(block, "target", "dev"),
        });
        rest = &after[end..];
    }
    out
}

/// The first `vdX` name (from `vdc`) that none of `used` takes; the root and seed disks hold
/// `vda` and `vdb`.
pub fn free_target(used: &[String]) -> Option<String> {
    (b'c'..=b'z')
        .map(|c| format!("vd{}", c as char))
        .find(|t| !used.iter().any(|u| u == t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::{FileSource, ImageSpec};

    fn spec() -> VmSpec {
        VmSpec {
            id: "6f1c1a5e-3b1e-4c55-9a0e-0d3c2b1a0f11".into(),
            name: "web<1>".into(),
            project_id: "proj-a".into(),
            vcpus: 2,
            memory_mib: 384,
            disk_gib: 1,
            image: ImageSpec {
                id: "tiny".into(),
                format: "qcow2".into(),
                disk: FileSource {
                    source: "/x/root.qcow2".into(),
                    sha256: "00".into(),
                },
                kernel: None,
                initrd: None,
                cmdline: "console=ttyS0 rdinit=/init".into(),
            },
            user_data: String::new(),
            ssh_keys: vec![],
            host_id: "host-<7>".into(),
        }
    }

    #[test]
    fn domains_name_their_host() {
        let x = domain_xml(
            &spec(),
            "kvm",
            &DomainFiles {
                root: "/p/r".into(),
                seed: "/p/s".into(),
                console: "/c/l".into(),
                kernel: None,
                initrd: None,
            },
            &NetworkMode::User,
        );
        assert_eq!(owner_host(&x), "host-<7>");
        assert_eq!(owner_host("<domain/>"), "");
        assert!(!is_quarantined(&x));
    }

    fn files(kernel: bool) -> DomainFiles {
        DomainFiles {
            root: "/pool/inst-1-root.qcow2".into(),
            seed: "/pool/inst-1-seed.img".into(),
            console: "/console/inst-1.log".into(),
            kernel: kernel.then(|| "/pool/image-tiny.kernel".into()),
            initrd: kernel.then(|| "/pool/image-tiny.initrd".into()),
        }
    }

    #[test]
    fn domain_xml_carries_identity_sizes_and_devices() {
        let xml = domain_xml(
            &spec(),
            "qemu",
            &files(true),
            &NetworkMode::Network("default".into()),
        );
        assert!(xml.starts_with("<domain type='qemu'>"));
        assert!(xml.contains("<name>andromede-6f1c1a5e-3b1e-4c55-9a0e-0d3c2b1a0f11</name>"));
        assert!(xml.contains("<uuid>6f1c1a5e-3b1e-4c55-9a0e-0d3c2b1a0f11</uuid>"));
        assert!(xml.contains("<vcpu placement='static'>2</vcpu>"));
        assert!(xml.contains("<memory unit='MiB'>384</memory>"));
        assert!(xml.contains("<features>\n    <acpi/>\n  </features>"));
        assert!(!xml.contains("<graphics"));
        assert!(xml.contains("<kernel>/pool/image-tiny.kernel</kernel>"));
        assert!(xml.contains("<initrd>/pool/image-tiny.initrd</initrd>"));
        assert!(xml.contains("<cmdline>console=ttyS0 rdinit=/init</cmdline>"));
        assert!(xml.contains("<source network='default'/>"));
        assert!(xml.contains("<serial type='file'>"));
        assert!(xml.contains("<source path='/console/inst-1.log' append='on'/>"));
        assert!(xml.contains(&format!("xmlns:andromede='{METADATA_NS}'")));
        assert!(xml.contains("<andromede:project>proj-a</andromede:project>"));
        // The name is escaped, not injected.
        assert!(xml.contains("<andromede:name>web&lt;1&gt;</andromede:name>"));
        let d = disks(&xml);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].source.as_deref(), Some("/pool/inst-1-root.qcow2"));
        assert_eq!(d[0].target.as_deref(), Some("vda"));
        assert_eq!(d[1].target.as_deref(), Some("vdb"));
    }

    #[test]
    fn domain_xml_without_kernel_boots_from_disk_and_user_nic() {
        let xml = domain_xml(&spec(), "kvm", &files(false), &NetworkMode::User);
        assert!(xml.starts_with("<domain type='kvm'>"));
        assert!(!xml.contains("<kernel>"));
        assert!(!xml.contains("<cmdline>"));
        assert!(xml.contains("<boot dev='hd'/>"));
        assert!(xml.contains("<interface type='user'>"));
    }

    #[test]
    fn disks_reads_libvirt_formatted_xml() {
        let xml = "<domain><devices>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
            <source file='/p/vol-a&amp;b.qcow2' index='2'/><backingStore/>\
            <target dev='vdc' bus='virtio'/></disk>\
            <disk type=\"file\"><source file=\"/p/x\"/><target bus=\"virtio\" dev=\"vdd\"/></disk>\
            </devices></domain>";
        let d = disks(xml);
        assert_eq!(
            d,
            vec![
                DiskEntry {
                    source: Some("/p/vol-a&b.qcow2".into()),
                    target: Some("vdc".into())
                },
                DiskEntry {
                    source: Some("/p/x".into()),
                    target: Some("vdd".into())
                },
            ]
        );
    }

    #[test]
    fn free_target_skips_used_names() {
        let used = vec!["vda".to_string(), "vdb".into(), "vdc".into(), "vde".into()];
        assert_eq!(free_target(&used).as_deref(), Some("vdd"));
        assert_eq!(free_target(&[]).as_deref(), Some("vdc"));
    }

    #[test]
    fn volume_disk_and_pool_xml() {
        let x = volume_disk_xml(Path::new("/p/vol-1.qcow2"), "vdc");
        assert!(x.contains("<source file='/p/vol-1.qcow2'/>"));
        assert!(x.contains("<target dev='vdc' bus='virtio'/>"));
        let pool = dir_pool_xml("andromede", Path::new("/var/lib/andromede/pool"));
        assert!(pool.contains("<pool type='dir'>"));
        assert!(pool.contains("<path>/var/lib/andromede/pool</path>"));
    }
}
