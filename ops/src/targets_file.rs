//! The backup targets file (`deploy/config/backup-targets.toml` is the documented example):
//! which targets each site keeps its backup shards in. Read by `reprise backup targets
//! set` (which replicates it into the cluster config) and by `reprise restore --targets`
//! (which needs no live cluster). A bucket's secret key is never written here nor
//! replicated: `secret_access_key_env` names the environment variable that holds it, in
//! every process that uses the bucket (the nodes, and `reprise restore`).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use reprise_storage::backup::target::{BackupTargets, S3Spec, TargetSpec};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    site: Vec<SiteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteEntry {
    name: String,
    #[serde(default)]
    target: Vec<TargetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    /// `node` (a node of the site; the default), `s3` or `dir`.
    kind: String,
    /// dir: absolute path of a directory of the site (its NAS, a mounted gateway).
    path: Option<String>,
    endpoint: Option<String>,
    bucket: Option<String>,
    /// Default: empty (the bucket's root).
    #[serde(default)]
    prefix: String,
    /// Default: `us-east-1`.
    region: Option<String>,
    access_key_id: Option<String>,
    /// Refused with an explanation: secrets are never replicated.
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
}

/// Parses the targets file at `path`.
pub fn read(path: &Path) -> anyhow::Result<BackupTargets> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse(&text).with_context(|| format!("backup targets file {}", path.display()))
}

/// Parses the text of a targets file.
pub fn parse(text: &str) -> anyhow::Result<BackupTargets> {
    let file: File = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
    let mut out = BackupTargets::default();
    for site in file.site {
        if out.sites.contains_key(&site.name) {
            bail!("site {:?} is listed twice", site.name);
        }
        let mut targets = Vec::new();
        for (i, t) in site.target.into_iter().enumerate() {
            let at = format!("site {} target {}", site.name, i + 1);
            targets.push(target(t).with_context(|| at)?);
        }
        out.sites.insert(site.name, targets);
    }
    Ok(out)
}

fn target(t: TargetEntry) -> anyhow::Result<TargetSpec> {
    match t.kind.as_str() {
        "node" => Ok(TargetSpec::Node),
        "dir" => Ok(TargetSpec::Dir {
            path: t.path.ok_or_else(|| anyhow!("a dir target needs `path`"))?,
        }),
        "s3" => {
            let need = |v: Option<String>, name: &str| {
                v.ok_or_else(|| anyhow!("an s3 target needs `{name}`"))
            };
            let endpoint = need(t.endpoint, "endpoint")?;
            let bucket = need(t.bucket, "bucket")?;
            let access_key_id = need(t.access_key_id, "access_key_id")?;
            if t.secret_access_key.is_some() {
                bail!(
                    "secret_access_key is not accepted: it would be replicated into the Raft log, snapshots and backups; put the secret in an environment variable of every node (and of the restoring command) and name it with secret_access_key_env"
                );
            }
            let secret_access_key_env = need(t.secret_access_key_env, "secret_access_key_env")?;
            Ok(TargetSpec::S3(S3Spec {
                endpoint,
                bucket,
                prefix: t.prefix,
                region: t.region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key_env,
            }))
        }
        other => bail!("unknown target kind {other:?} (expected \"node\", \"s3\" or \"dir\")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/backup-targets.toml");
        let t = read(&path).expect("example parses");
        assert_eq!(t.sites.len(), 3);
        assert_eq!(t.for_site("site-2"), vec![TargetSpec::Node]);
        match &t.for_site("site-3")[0] {
            TargetSpec::S3(s) => assert_eq!(s.secret_access_key_env, "REPRISE_SITE3_SECRET"),
            other => panic!("site-3: {other:?}"),
        }
    }

    #[test]
    fn mistakes_are_named() {
        let e = format!(
            "{:#}",
            parse("[[site]]\nname = \"a\"\n[[site.target]]\nkind = \"s3\"\nbucket = \"b\"\n")
                .unwrap_err()
        );
        assert!(
            e.contains("endpoint") && e.contains("site a target 1"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse("[[site]]\nname = \"a\"\n[[site.target]]\nkind = \"ftp\"\n").unwrap_err()
        );
        assert!(e.contains("ftp"), "{e}");
        let e = format!("{:#}", parse("[[site]]\nnam = \"a\"\n").unwrap_err());
        assert!(e.contains("nam"), "{e}");
        let inline = "[[site]]\nname = \"a\"\n[[site.target]]\nkind = \"s3\"\nendpoint = \"http://x\"\nbucket = \"bbb\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
        let e = format!("{:#}", parse(inline).unwrap_err());
        assert!(e.contains("secret_access_key_env"), "{e}");
    }
}
