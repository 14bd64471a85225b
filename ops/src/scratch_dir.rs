//! Where the benchmarks put the data of the clusters they start: a directory on a
//! filesystem that really writes to a disk. On a memory-backed `/tmp` (tmpfs, the default
//! of recent Debian) an fsync costs nothing, and a comparison of durable writes would
//! measure neither system's durability; `/var/tmp` is taken then, and a run refuses to
//! start when every candidate is in memory.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

/// Filesystems whose files live in memory only.
const MEMORY_FILESYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// The base directory for scratch clusters: the system's temporary directory, or
/// `/var/tmp` when the former is memory-backed.
pub fn base() -> anyhow::Result<PathBuf> {
    let candidates = [std::env::temp_dir(), PathBuf::from("/var/tmp")];
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for dir in &candidates {
        match filesystem_of(&mountinfo, dir) {
            Some(fs) if MEMORY_FILESYSTEMS.contains(&fs.as_str()) => continue,
            _ if dir.is_dir() => return Ok(dir.clone()),
            _ => continue,
        }
    }
    Err(anyhow!(
        "no directory on a disk for the benchmark's data: {} are memory-backed or missing, \
         and fsync there would cost nothing (set TMPDIR to a directory on a disk)",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    ))
}

/// "ext4 at /var/tmp": what `dir` is stored on, for a report.
pub fn describe(dir: &Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let fs = filesystem_of(&mountinfo, dir).unwrap_or_else(|| "an unknown filesystem".into());
    format!("{fs} at {}", dir.display())
}

/// The type of the filesystem holding `dir`, from the text of `/proc/self/mountinfo`: the
/// mount with the longest mount point that contains it.
fn filesystem_of(mountinfo: &str, dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mountinfo
        .lines()
        .filter_map(|line| {
            // "36 35 98:0 / /mnt rw,noatime master:1 - ext3 /dev/root rw": the mount point
            // is the fifth field, the type the first after the " - " separator.
            let (mount, rest) = line.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?;
            let fs = rest.split(' ').next()?;
            let point = unescape(point);
            dir.starts_with(&point)
                .then(|| (point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// Mount points escape spaces, tabs, newlines and backslashes as octal (`\040`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
31 22 254:2 / /var/tmp rw,relatime shared:6 - xfs /dev/vda2 rw
32 22 254:3 / /srv/my\\040data rw,relatime shared:7 - btrfs /dev/vda3 rw";

    #[test]
    fn the_longest_mount_point_holding_a_directory_names_its_filesystem() {
        let fs = |p: &str| filesystem_of(MOUNTINFO, Path::new(p));
        assert_eq!(fs("/tmp/reprise-bench-1").as_deref(), Some("tmpfs"));
        assert_eq!(fs("/var/tmp/x").as_deref(), Some("xfs"));
        assert_eq!(fs("/var/lib").as_deref(), Some("ext4"));
        assert_eq!(fs("/srv/my data/x").as_deref(), Some("btrfs"));
        assert_eq!(fs("/tmpfoo").as_deref(), Some("ext4"));
    }

    #[test]
    fn no_mount_table_names_no_filesystem() {
        assert_eq!(filesystem_of("", Path::new("/tmp")), None);
    }
}
