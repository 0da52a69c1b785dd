//! The NoCloud seed disk (FAT volume labelled `cidata` holding `meta-data` and `user-data`),
//! built in pure Rust so hosts need no mkfs or mtools.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::hypervisor::VmSpec;

/// Big enough for generous user-data; FAT12 formats this quickly.
const SEED_BYTES: u64 = 4 * 1024 * 1024;

/// A YAML scalar: a JSON string is valid YAML and escapes everything that needs it.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// NoCloud `meta-data` for the guest.
pub fn meta_data(spec: &VmSpec) -> String {
    let mut out = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(&spec.id),
        yaml_str(&spec.name)
    );
    if !spec.ssh_keys.is_empty() {
        out.push_str("public-keys:\n");
        for key in &spec.ssh_keys {
            out.push_str(&format!("  - {}\n", yaml_str(key)));
        }
    }
    out
}

/// Writes the seed image to `path` (replacing any file there).
pub fn write_seed(path: &Path, spec: &VmSpec) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.set_len(SEED_BYTES)?;
    fatfs::format_volume(
        &mut file,
        fatfs::FormatVolumeOptions::new().volume_label(*b"cidata     "),
    )?;
    {
        let fs = fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            root.create_file("meta-data")?
                .write_all(meta_data(spec).as_bytes())?;
            root.create_file("user-data")?
                .write_all(spec.user_data.as_bytes())?;
        }
        fs.unmount()?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::{FileSource, ImageSpec};
    use std::io::Read;

    fn spec() -> VmSpec {
        VmSpec {
            id: "i-1".into(),
            name: "web-1".into(),
            project_id: "p".into(),
            vcpus: 1,
            memory_mib: 128,
            disk_gib: 1,
            image: ImageSpec {
                id: "img".into(),
                format: "raw".into(),
                disk: FileSource {
                    source: "/x".into(),
                    sha256: "0".into(),
                },
                kernel: None,
                initrd: None,
                cmdline: String::new(),
            },
            user_data: "#cloud-config\nruncmd: [echo hi]\n".into(),
            ssh_keys: vec!["ssh-ed25519 AAAA test@x".into()],
            host_id: "h".into(),
        }
    }

    #[test]
    fn meta_data_names_instance_host_and_keys() {
        let md = meta_data(&spec());
        assert_eq!(
            md,
            "instance-id: \"i-1\"\nlocal-hostname: \"web-1\"\npublic-keys:\n  - \"ssh-ed25519 AAAA test@x\"\n"
        );
    }

    #[test]
    fn seed_image_is_a_cidata_fat_volume_with_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        write_seed(&path, &spec()).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label().trim_end(), "cidata");
        let mut user = String::new();
        fs.root_dir()
            .open_file("user-data")
            .unwrap()
            .read_to_string(&mut user)
            .unwrap();
        assert_eq!(user, spec().user_data);
        let mut meta = String::new();
        fs.root_dir()
            .open_file("meta-data")
            .unwrap()
            .read_to_string(&mut meta)
            .unwrap();
        assert!(meta.contains("local-hostname: \"web-1\""));
    }
}
