//! Turning the replicated backup-target configuration into stores: the targets each site
//! writes to (a node of the site by default, or the configured buckets), every store that
//! may hold something (for listing and retention), and the store holding one placed shard
//! (for verify and restore; credentials come from the configuration, never the manifest).

use std::collections::BTreeMap;
use std::sync::Arc;

use std::path::Path;

use reprise_storage::backup::dir_store::DirStore;
use reprise_storage::backup::manifest::ShardPlacement;
use reprise_storage::backup::s3::S3Store;
use reprise_storage::backup::target::{
    BackupStore, BackupTargets, HeldBackup, Location, TargetError, TargetSpec,
};
use reprise_storage::{Member, NodeId};

use crate::node_store::NodeStore;

/// A store shared between tasks.
pub type Store = Arc<dyn BackupStore>;

fn open(spec: &TargetSpec, site_node: Option<(NodeId, &Member)>) -> Result<Store, TargetError> {
    match spec {
        TargetSpec::Node => {
            let (id, m) = site_node.ok_or_else(|| {
                TargetError::Config("a node target on a site without members".into())
            })?;
            Ok(Arc::new(NodeStore::new(id, &m.addr)))
        }
        TargetSpec::S3(s) => Ok(Arc::new(S3Store::new(s)?)),
        TargetSpec::Dir { path } => Ok(Arc::new(DirStore::new(Path::new(path)))),
    }
}

/// The stores each site of the membership writes backups to, by site.
pub fn site_stores(
    targets: &BackupTargets,
    members: &BTreeMap<NodeId, Member>,
) -> Result<BTreeMap<String, Vec<Store>>, TargetError> {
    let mut out: BTreeMap<String, Vec<Store>> = BTreeMap::new();
    for (id, m) in members {
        if out.contains_key(&m.site) {
            continue;
        }
        let stores = targets
            .for_site(&m.site)
            .iter()
            .map(|spec| open(spec, Some((*id, m))))
            .collect::<Result<_, _>>()?;
        out.insert(m.site.clone(), stores);
    }
    Ok(out)
}

/// Every store anything may be held in: each member (node targets keep shards wherever
/// a site's node is) and each configured bucket, with the site it belongs to.
pub fn all_stores(
    targets: &BackupTargets,
    members: &BTreeMap<NodeId, Member>,
) -> Result<Vec<(String, Store)>, TargetError> {
    let mut out: Vec<(String, Store)> = members
        .iter()
        .map(|(id, m)| {
            (
                m.site.clone(),
                Arc::new(NodeStore::new(*id, &m.addr)) as Store,
            )
        })
        .collect();
    for (site, specs) in &targets.sites {
        for spec in specs {
            if !matches!(spec, TargetSpec::Node) {
                out.push((site.clone(), open(spec, None)?));
            }
        }
    }
    Ok(out)
}

/// The store holding a placed shard: the node the manifest names, or the configured
/// bucket at the recorded location.
pub fn store_for(
    placement: &ShardPlacement,
    targets: &BackupTargets,
) -> Result<Store, TargetError> {
    match &placement.location {
        Location::Node => Ok(Arc::new(NodeStore::new(placement.node, &placement.addr))),
        Location::Dir { path } => Ok(Arc::new(DirStore::new(Path::new(path)))),
        loc @ Location::S3 { .. } => match targets.s3_for(loc) {
            Some(spec) => Ok(Arc::new(S3Store::new(spec)?)),
            None => Err(TargetError::Config(format!(
                "shard {} of site {} is in {loc}, but no configured backup target has credentials for it (pass the targets file)",
                placement.shard, placement.site
            ))),
        },
    }
}

/// What one store holds, or why it could not be asked.
pub struct Holding {
    pub site: String,
    pub store: String,
    pub held: Result<Vec<HeldBackup>, TargetError>,
}

/// Asks every store what it holds, concurrently.
pub async fn holdings(stores: &[(String, Store)]) -> Vec<Holding> {
    let tasks: Vec<_> = stores
        .iter()
        .map(|(site, store)| {
            let (site, store) = (site.clone(), store.clone());
            let task = tokio::spawn({
                let store = store.clone();
                async move { store.list().await }
            });
            (site, store, task)
        })
        .collect();
    let mut out = Vec::new();
    for (site, store, task) in tasks {
        let held = task.await.unwrap_or_else(|e| {
            Err(TargetError::Unavailable {
                target: store.describe(),
                reason: format!("listing task failed: {e}"),
            })
        });
        out.push(Holding {
            store: store.describe(),
            held,
            site,
        });
    }
    out
}
