//! `reprise cluster status|members|init|add-node|remove-node` (and `local …`, in
//! `local.rs`). Status asks every member for its own view and computes the site-aware
//! fault tolerance from the real membership.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reprise_api::client::Retry;
use reprise_api::pb::admin as apb;
use reprise_api::topology::{fault_tolerance, FaultTolerance};
use reprise_api::{Client, ClientError};
use reprise_node::NodeConfig;
use serde::Serialize;

use crate::cli::Global;
use crate::cmd_local::LocalCommand;
use crate::output::{print_json, print_table, CliError, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, every member's state, and how many sites and nodes can be lost.
    Status,
    /// Members with their sites and roles.
    Members,
    /// Bootstrap a new cluster from the `initial_members` of a node config.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
    /// Add a node (as a learner, then as a voter once it caught up).
    AddNode {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        addr: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        zone: Option<String>,
        /// Leave it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the membership.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to node ID (a caught-up voter), e.g. before maintenance on a site.
    TransferLeader {
        #[arg(long)]
        to: u64,
    },
    /// Local clusters of processes on 127.0.0.1.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
}

/// One member as `cluster status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub id: u64,
    pub site: String,
    pub zone: Option<String>,
    pub addr: String,
    pub voter: bool,
    pub role: String,
    pub reachable: bool,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
}

/// What `cluster status -o json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster_name: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    pub fault_tolerance: FaultTolerance,
    pub archive: ArchiveStatus,
}

/// The log archive as the leader (or the best reachable node) reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveStatus {
    pub enabled: bool,
    /// Highest log index stored in the archive on every site.
    pub archived_index: u64,
    /// Applied entries not yet archived (trailing archive marks count too).
    pub lag_entries: u64,
    /// Milliseconds since the archive last caught up (leader only; None = not known).
    pub behind_ms: Option<u64>,
    /// The last archiving error, if the last attempt failed.
    pub error: Option<String>,
}

/// Finds the leader's view (or any node's when there is no leader) through `client`.
async fn any_view(client: &Client) -> CliResult<apb::NodeStatus> {
    let mut best: Option<apb::NodeStatus> = None;
    let mut last_error = String::new();
    for ep in client.endpoint_list() {
        match client.status_of(&ep).await {
            Ok(s) if s.role == "leader" => return Ok(s),
            Ok(s) => {
                if best.as_ref().is_none_or(|b| s.term > b.term) {
                    best = Some(s);
                }
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    if let Some(b) = &best {
        if let Some(leader) = b.members.iter().find(|m| Some(m.id) == b.leader_id) {
            if let Ok(s) = client.status_of(&leader.addr).await {
                return Ok(s);
            }
        }
    }
    best.ok_or_else(|| CliError::Unavailable(format!("no endpoint reachable: {last_error}")))
}

/// Gathers the status of every member.
pub async fn gather(client: &Client) -> CliResult<ClusterStatus> {
    let view = any_view(client).await?;
    let mut members = Vec::new();
    let mut term = view.term;
    let mut leader = view.leader_id;
    for m in &view.members {
        let own = client.status_of(&m.addr).await.ok();
        if let Some(s) = &own {
            if s.term > term {
                term = s.term;
                leader = s.leader_id;
            }
        }
        members.push(MemberStatus {
            id: m.id,
            site: m.site.clone(),
            zone: (!m.zone.is_empty()).then(|| m.zone.clone()),
            addr: m.addr.clone(),
            voter: m.voter,
            role: own
                .as_ref()
                .map(|s| s.role.clone())
                .unwrap_or_else(|| "unreachable".into()),
            reachable: own.is_some(),
            last_log_index: own.as_ref().map(|s| s.last_log_index),
            applied_index: own.as_ref().map(|s| s.applied_index),
        });
    }
    let ft = fault_tolerance(members.iter().filter(|m| m.voter).map(|m| m.site.as_str()));
    let archive = ArchiveStatus {
        enabled: view.archive_enabled,
        archived_index: view.archived_index,
        lag_entries: view.applied_index.saturating_sub(view.archived_index),
        behind_ms: view.archive_behind_ms.filter(|ms| *ms != u64::MAX),
        error: (!view.archive_error.is_empty()).then(|| view.archive_error.clone()),
    };
    Ok(ClusterStatus {
        archive,
        cluster_name: view.cluster_name,
        leader,
        term,
        members,
        fault_tolerance: ft,
    })
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn print_status(s: &ClusterStatus) {
    let leader = s
        .leader
        .map(|l| format!("node {l}"))
        .unwrap_or_else(|| "none".into());
    println!(
        "cluster {}   leader: {leader}   term: {}",
        s.cluster_name, s.term
    );
    let ft = &s.fault_tolerance;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    println!(
        "fault tolerance: {}, {} ({} voters over {}, quorum {})",
        plural(ft.sites, "site"),
        plural(ft.nodes, "node"),
        ft.voters,
        plural(ft.voters_per_site.len(), "site"),
        ft.quorum
    );
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.site.clone(),
                m.addr.clone(),
                m.role.clone(),
                if m.voter { "voter" } else { "learner" }.into(),
                if m.reachable { "yes" } else { "NO" }.into(),
                opt(m.last_log_index),
                opt(m.applied_index),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "SITE",
            "ADDR",
            "ROLE",
            "KIND",
            "REACHABLE",
            "LAST LOG",
            "APPLIED",
        ],
        &rows,
    );
    let a = &s.archive;
    if a.enabled {
        println!(
            "log archive: through index {} ({} entries behind{})",
            a.archived_index,
            a.lag_entries,
            a.behind_ms
                .map(|ms| format!(", caught up {ms} ms ago"))
                .unwrap_or_default()
        );
        if let Some(e) = &a.error {
            println!("warning: the log archive is falling behind: {e}");
        }
    } else {
        println!("log archive: off (archive.interval_ms = 0)");
    }
    for w in &ft.warnings {
        println!("warning: {w}");
    }
}

fn print_membership(resp: &apb::MembershipResponse, format: Format) -> CliResult {
    #[derive(Serialize)]
    struct Out<'a> {
        index: u64,
        members: Vec<MemberOut<'a>>,
    }
    #[derive(Serialize)]
    struct MemberOut<'a> {
        id: u64,
        site: &'a str,
        addr: &'a str,
        voter: bool,
    }
    let out = Out {
        index: resp.index,
        members: resp
            .members
            .iter()
            .map(|m| MemberOut {
                id: m.id,
                site: &m.site,
                addr: &m.addr,
                voter: m.voter,
            })
            .collect(),
    };
    match format {
        Format::Json => print_json(&out),
        Format::Table => {
            println!("membership committed at index {}", resp.index);
            let rows: Vec<Vec<String>> = out
                .members
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.site.to_string(),
                        m.addr.to_string(),
                        if m.voter { "voter" } else { "learner" }.into(),
                    ]
                })
                .collect();
            print_table(&["ID", "SITE", "ADDR", "KIND"], &rows);
            Ok(())
        }
    }
}

/// Sends an admin call to the leader.
async fn on_leader<T, F, Fut>(client: &Client, f: F) -> Result<T, ClientError>
where
    F: FnMut(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    client.call(Retry::OnlyIfNotApplied, f).await
}

/// Runs a cluster command other than `local`.
pub async fn run(cmd: ClusterCommand, global: &Global) -> CliResult {
    match cmd {
        ClusterCommand::Status => {
            let status = gather(&global.client()?).await?;
            match global.output {
                Format::Json => print_json(&status),
                Format::Table => {
                    print_status(&status);
                    Ok(())
                }
            }
        }
        ClusterCommand::Members => {
            let status = gather(&global.client()?).await?;
            match global.output {
                Format::Json => print_json(&status.members),
                Format::Table => {
                    let rows: Vec<Vec<String>> = status
                        .members
                        .iter()
                        .map(|m| {
                            let kind = if m.voter { "voter" } else { "learner" };
                            let zone = m.zone.clone().unwrap_or_else(|| "-".into());
                            vec![
                                m.id.to_string(),
                                m.site.clone(),
                                zone,
                                m.addr.clone(),
                                kind.into(),
                            ]
                        })
                        .collect();
                    print_table(&["ID", "SITE", "ZONE", "ADDR", "KIND"], &rows);
                    Ok(())
                }
            }
        }
        ClusterCommand::Init { config } => {
            let config = NodeConfig::load(&config).map_err(|e| CliError::Runtime(e.into()))?;
            if config.initial_members.is_empty() {
                return Err(CliError::Runtime(anyhow::anyhow!(
                    "the config lists no initial_members"
                )));
            }
            let members: Vec<apb::MemberInfo> = config
                .initial_members
                .iter()
                .map(|(id, m)| apb::MemberInfo {
                    id: *id,
                    addr: m.addr.clone(),
                    site: m.site.clone(),
                    zone: m.zone.clone().unwrap_or_default(),
                    voter: true,
                })
                .collect();
            let client = Client::new(
                std::slice::from_ref(&config.member.addr),
                Default::default(),
            )?;
            let count = members.len();
            client
                .initialize(members)
                .await
                .context("initialize cluster")?;
            println!("cluster initialized with {count} members");
            Ok(())
        }
        ClusterCommand::AddNode {
            id,
            addr,
            site,
            zone,
            learner,
        } => {
            let client = global.client()?;
            let member = apb::MemberInfo {
                id,
                addr,
                site,
                zone: zone.unwrap_or_default(),
                voter: !learner,
            };
            let resp = on_leader(&client, |c| {
                let req = apb::AddNodeRequest {
                    member: Some(member.clone()),
                    as_voter: !learner,
                };
                async move { Client::admin(c).add_node(req).await }
            })
            .await?;
            print_membership(&resp, global.output)
        }
        ClusterCommand::RemoveNode { id } => {
            let client = global.client()?;
            let resp = on_leader(&client, |c| async move {
                Client::admin(c)
                    .remove_node(apb::RemoveNodeRequest { id })
                    .await
            })
            .await?;
            print_membership(&resp, global.output)
        }
        ClusterCommand::TransferLeader { to } => {
            let client = global.client()?;
            let resp = on_leader(&client, |c| async move {
                Client::admin(c)
                    .transfer_leader(apb::TransferLeaderRequest { to })
                    .await
            })
            .await?;
            match global.output {
                Format::Json => print_json(
                    &serde_json::json!({"leader": resp.leader_id, "took_ms": resp.took_ms}),
                ),
                Format::Table => {
                    println!(
                        "leader is now node {} (transfer took {} ms)",
                        resp.leader_id, resp.took_ms
                    );
                    Ok(())
                }
            }
        }
        ClusterCommand::Local { .. } => Ok(()),
    }
}
