//! The backup targets file (`deploy/config/backup-targets.toml` is the documented example):
//! which targets each site keeps its backup shards in. Read by `reprise backup targets
//! set` (which replicates it into the cluster config) and by `reprise restore --targets`
//! (which needs no live cluster). Secrets may be given inline or named by an environment
//! variable (`secret_access_key_env`), which is read when the file is.

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
    /// `node` (a node of the site; the default) or `s3`.
    kind: String,
    endpoint: Option<String>,
    bucket: Option<String>,
    /// Default: empty (the bucket's root).
    #[serde(default)]
    prefix: String,
    /// Default: `us-east-1`.
    region: Option<String>,
    access_key_id: Option<String>,
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
        "s3" => {
            let need = |v: Option<String>, name: &str| {
                v.ok_or_else(|| anyhow!("an s3 target needs `{name}`"))
            };
            let endpoint = need(t.endpoint, "endpoint")?;
            let bucket = need(t.bucket, "bucket")?;
            let access_key_id = need(t.access_key_id, "access_key_id")?;
            let secret = match (t.secret_access_key, t.secret_access_key_env) {
                (Some(s), None) => s,
                (None, Some(var)) => std::env::var(&var).map_err(|_| {
                    anyhow!("environment variable {var} (secret_access_key_env) is not set")
                })?,
                (Some(_), Some(_)) => {
                    bail!("give either secret_access_key or secret_access_key_env, not both")
                }
                (None, None) => {
                    bail!("an s3 target needs secret_access_key or secret_access_key_env")
                }
            };
            Ok(TargetSpec::S3(S3Spec {
                endpoint,
                bucket,
                prefix: t.prefix,
                region: t.region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key: secret,
            }))
        }
        other => bail!("unknown target kind {other:?} (expected \"node\" or \"s3\")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/backup-targets.toml");
        std::env::set_var("REPRISE_EXAMPLE_SITE3_SECRET", "from-env");
        let t = read(&path).expect("example parses");
        assert_eq!(t.sites.len(), 3);
        assert_eq!(t.for_site("site-2"), vec![TargetSpec::Node]);
        match &t.for_site("site-3")[0] {
            TargetSpec::S3(s) => assert_eq!(s.secret_access_key, "from-env"),
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
    }
}
