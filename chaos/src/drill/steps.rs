//! The fault and recovery steps of each scenario, and the final convergence wait.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reprise_api::client::Retry;
use reprise_api::pb::admin as apb;
use reprise_api::Client;

use super::{DrillError, DrillOptions, Run, Scenario};
use crate::backend::local::{self, Cut, LocalCluster};
use crate::checker::convergence::NodeChecksum;

const RTO_DEADLINE: Duration = Duration::from_secs(30);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);

/// Warm up, inject the scenario's fault, measure RTO, run a phase under the fault,
/// recover, run again. Returns RTO.
pub(crate) async fn fault_and_recover(
    run: &mut Run<'_>,
    opts: &DrillOptions,
) -> Result<Option<u64>, DrillError> {
    run.run_ops(opts.ops_per_phase).await?;
    let leader = leader(&run.cluster).await?;
    let site = run.cluster.file.node(leader)?.site.clone();
    // The partition scenario cuts off a follower site; the others act on the leader's.
    let site = match opts.scenario {
        Scenario::Partition | Scenario::PartitionOneWay => run
            .cluster
            .file
            .nodes
            .iter()
            .map(|n| n.site.clone())
            .find(|s| *s != site)
            .ok_or_else(|| DrillError::Stuck("a partition needs a second site".into()))?,
        _ => site,
    };
    let victims: Vec<u64> = match opts.scenario {
        Scenario::LeaderPause | Scenario::ClockSkew => vec![leader],
        _ => run
            .cluster
            .file
            .nodes
            .iter()
            .filter(|n| n.site == site && run.cluster.children.contains_key(&n.id))
            .map(|n| n.id)
            .collect(),
    };
    run.event(format!(
        "leader is node {leader}; injecting {} on {site} (nodes {victims:?})",
        opts.scenario
    ));
    let fault_ns = inject(run, opts.scenario, &site, &victims).await?;
    let rto = wait_rto(run, fault_ns).await;
    match rto {
        Some(ms) => run.event(format!(
            "first acknowledged write {ms} ms after the fault (RTO)"
        )),
        None => run.event("no write was acknowledged after the fault"),
    }
    if rto.is_some() {
        // Keep the fault in place while a phase of operations runs on what is left.
        run.run_ops(opts.ops_per_phase).await?;
        run.event(format!(
            "{} operations acknowledged under the fault",
            opts.ops_per_phase
        ));
        if matches!(
            opts.scenario,
            Scenario::Partition | Scenario::PartitionOneWay | Scenario::LeaderIsolation
        ) {
            isolation_took_effect(run, &victims).await?;
        }
    }
    recover(run, opts.scenario, &site, &victims).await?;
    run.run_ops(opts.ops_per_phase).await?;
    Ok(rto)
}

async fn inject(
    run: &mut Run<'_>,
    scenario: Scenario,
    site: &str,
    victims: &[u64],
) -> Result<u64, DrillError> {
    let mut fault_ns = run.recorder.now_ns();
    let at_ms = run.recorder.now_ns() / 1_000_000;
    match scenario {
        Scenario::SiteLoss | Scenario::SiteFire => {
            let dead = kill_and_check(run, victims)?;
            run.fault(
                "kill -9 site",
                format!("{site} (nodes {victims:?})"),
                at_ms,
                dead,
            );
            if scenario == Scenario::SiteFire {
                let wiped = wipe_and_check(run, victims)?;
                run.fault(
                    "wipe disks",
                    format!("{site} (nodes {victims:?})"),
                    at_ms,
                    wiped,
                );
            }
        }
        Scenario::ClockSkew => fault_ns = skew_then_kill(run, victims, at_ms).await?,
        Scenario::QuorumLoss => {
            return Err(DrillError::Stuck(
                "quorum loss is injected by its own steps (drill::quorum_loss)".into(),
            ))
        }
        Scenario::Partition | Scenario::LeaderIsolation => {
            let cut = cut_off(run, victims, Cut::Both).await?;
            run.fault(
                "partition (both directions)",
                format!("{site} (nodes {victims:?}) from every other site"),
                at_ms,
                cut,
            );
        }
        Scenario::PartitionOneWay => {
            let cut = cut_off(run, victims, Cut::IntoVictims).await?;
            run.fault("partition (one way: into the site)", format!(
                    "messages from every other site to {site} (nodes {victims:?}) dropped; {site} still sends"
                ), at_ms, cut);
        }
        Scenario::LeaderPause => {
            for v in victims {
                run.cluster.signal(*v, Signal::SIGSTOP)?;
            }
            // Signal delivery is asynchronous: give the kernel a moment to stop them.
            let started = Instant::now();
            let is_stopped = |run: &Run<'_>| {
                victims.iter().all(|v| {
                    run.cluster
                        .children
                        .get(v)
                        .and_then(|c| local::process_state(c.id()))
                        == Some('T')
                })
            };
            while !is_stopped(run) && started.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let stopped = is_stopped(run);
            run.fault(
                "SIGSTOP leader",
                format!("nodes {victims:?}"),
                at_ms,
                stopped,
            );
        }
    }
    run.event(format!(
        "fault injected: {}",
        run.faults
            .iter()
            .map(|f| f.kind.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    ));
    Ok(fault_ns)
}

async fn wait_rto(run: &Run<'_>, fault_ns: u64) -> Option<u64> {
    let started = Instant::now();
    while started.elapsed() < RTO_DEADLINE {
        if let Some(done) = run.recorder.first_ok_write_after(fault_ns) {
            return Some((done - fault_ns) / 1_000_000);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn recover(
    run: &mut Run<'_>,
    scenario: Scenario,
    site: &str,
    victims: &[u64],
) -> Result<(), DrillError> {
    match scenario {
        Scenario::SiteLoss | Scenario::ClockSkew => {
            for v in victims {
                run.cluster.restart(*v).await?;
            }
            run.event(format!(
                "recovery: restarted nodes {victims:?} on their disks"
            ));
        }
        Scenario::SiteFire => replace_site(run, site, victims).await?,
        Scenario::QuorumLoss => {
            return Err(DrillError::Stuck(
                "quorum loss recovers by its own steps (drill::quorum_loss)".into(),
            ))
        }
        Scenario::LeaderPause => {
            for v in victims {
                run.cluster.signal(*v, Signal::SIGCONT)?;
            }
            run.event(format!("recovery: resumed nodes {victims:?} (SIGCONT)"));
        }
        Scenario::Partition | Scenario::PartitionOneWay | Scenario::LeaderIsolation => {
            let healed = cut_off(run, victims, Cut::Heal).await?;
            if !healed {
                return Err(DrillError::Stuck(format!(
                    "could not heal the partition of nodes {victims:?}"
                )));
            }
            run.event(format!("recovery: healed the partition of {site}"));
        }
    }
    Ok(())
}

/// Evidence that a partition really cut the victims off: while the others committed a
/// phase of operations, the victims' logs stayed behind the others' applied index.
async fn isolation_took_effect(run: &mut Run<'_>, victims: &[u64]) -> Result<(), DrillError> {
    let client = run.cluster.client()?;
    let (mut victims_last, mut others_applied) = (0u64, 0u64);
    for id in run.cluster.running() {
        let s = client.status_of(&run.cluster.addr(id)?).await?;
        if victims.contains(&id) {
            victims_last = victims_last.max(s.last_log_index);
        } else {
            others_applied = others_applied.max(s.applied_index);
        }
    }
    let at_ms = run.recorder.now_ns() / 1_000_000;
    run.fault(
        "isolated nodes fell behind",
        format!(
            "nodes {victims:?}: last log index {victims_last}, others applied {others_applied}"
        ),
        at_ms,
        victims_last < others_applied,
    );
    Ok(())
}

/// Sets the partition on every running node; whether every node confirmed it.
async fn cut_off(run: &Run<'_>, victims: &[u64], cut: Cut) -> Result<bool, DrillError> {
    Ok(run.cluster.cut(victims, cut).await?)
}

/// The site-fire runbook: a node whose disk is gone rejoins under a new id (learner, then
/// voter), and the old id leaves the membership.
async fn replace_site(run: &mut Run<'_>, site: &str, victims: &[u64]) -> Result<(), DrillError> {
    let client = run.cluster.client()?;
    for old in victims {
        let new = run
            .cluster
            .file
            .nodes
            .iter()
            .map(|n| n.id)
            .max()
            .unwrap_or(0)
            + 1;
        let node = run.cluster.spawn_new_node(new, site).await?;
        let member = apb::MemberInfo {
            id: new,
            addr: node.addr.clone(),
            site: site.to_string(),
            zone: String::new(),
            voter: true,
        };
        client
            .call(Retry::OnlyIfNotApplied, |c| {
                let req = apb::AddNodeRequest {
                    member: Some(member.clone()),
                    as_voter: true,
                };
                async move { Client::admin(c).add_node(req).await }
            })
            .await?;
        let old = *old;
        client
            .call(Retry::OnlyIfNotApplied, |c| async move {
                Client::admin(c)
                    .remove_node(apb::RemoveNodeRequest { id: old })
                    .await
            })
            .await?;
        run.event(format!("recovery: node {old} replaced by node {new} in {site} (added as voter, old id removed)"));
    }
    Ok(())
}

pub(crate) async fn leader(cluster: &LocalCluster) -> Result<u64, DrillError> {
    let client = cluster.client()?;
    let started = Instant::now();
    while started.elapsed() < RTO_DEADLINE {
        for id in cluster.running() {
            if let Ok(s) = client.status_of(&cluster.addr(id)?).await {
                if s.role == "leader" {
                    return Ok(s.id);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(DrillError::Stuck("no leader found".into()))
}

/// Commits a barrier, then waits until every running node applied the same index and
/// returns their state checksums.
pub(crate) async fn converged_checksums(
    cluster: &LocalCluster,
) -> Result<Vec<NodeChecksum>, DrillError> {
    let client = cluster.client()?;
    local::barrier(&client).await?;
    let started = Instant::now();
    loop {
        let mut sums = Vec::new();
        for id in cluster.running() {
            if let Ok(s) = client.checksum_of(&cluster.addr(id)?).await {
                sums.push(NodeChecksum {
                    node: id,
                    applied_index: s.applied_index,
                    digest: s.digest,
                });
            }
        }
        let same = sums
            .windows(2)
            .all(|w| w[0].applied_index == w[1].applied_index);
        if (same && sums.len() == cluster.running().len()) || started.elapsed() > CONVERGE_DEADLINE
        {
            return Ok(sums);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How far behind the followers' clocks are set in the clock-skew scenario.
const SKEW_MS: i64 = 60_000;

/// Sets every node but `victims` 60 s behind (verified by the clock reading each node
/// reports), then kills the victims (the leader) so a skewed node must take over.
async fn skew_then_kill(run: &mut Run<'_>, victims: &[u64], at_ms: u64) -> Result<u64, DrillError> {
    let followers: Vec<u64> = run
        .cluster
        .running()
        .into_iter()
        .filter(|id| !victims.contains(id))
        .collect();
    let mut skewed = true;
    for f in &followers {
        let addr = run.cluster.addr(*f)?;
        let client = Client::new(std::slice::from_ref(&addr), Default::default())?;
        let resp = client
            .call(Retry::Idempotent, |c| async move {
                Client::admin(c)
                    .set_clock_skew(apb::ClockSkewRequest { skew_ms: -SKEW_MS })
                    .await
            })
            .await?;
        let real_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        skewed &= real_ms.saturating_sub(resp.now_ms) >= (SKEW_MS as u64) - 5_000;
    }
    let kind = format!("clock skew -{} s", SKEW_MS / 1000);
    run.fault(&kind, format!("nodes {followers:?}"), at_ms, skewed);
    let kill_ns = run.recorder.now_ns();
    let dead = kill_and_check(run, victims)?;
    let at_ms = kill_ns / 1_000_000;
    run.fault("kill -9 leader", format!("nodes {victims:?}"), at_ms, dead);
    Ok(kill_ns)
}

/// kill -9 every victim; whether each process is really gone.
pub(crate) fn kill_and_check(run: &mut Run<'_>, victims: &[u64]) -> Result<bool, DrillError> {
    act_then_check(
        run,
        victims,
        |c, v| c.kill9(v),
        |n| !local::is_our_process(n),
    )
}

/// Wipes every victim's data directory; whether each is really gone.
pub(crate) fn wipe_and_check(run: &mut Run<'_>, victims: &[u64]) -> Result<bool, DrillError> {
    act_then_check(run, victims, |c, v| c.wipe(v), |n| !n.data_dir.exists())
}

/// Applies `act` to every victim, then whether `done` holds for each of them.
fn act_then_check(
    run: &mut Run<'_>,
    victims: &[u64],
    act: impl Fn(&mut local::LocalCluster, u64) -> Result<(), local::LocalError>,
    done: impl Fn(&local::LocalNode) -> bool,
) -> Result<bool, DrillError> {
    for v in victims {
        act(&mut run.cluster, *v)?;
    }
    Ok(victims
        .iter()
        .all(|v| run.cluster.file.node(*v).is_ok_and(&done)))
}
