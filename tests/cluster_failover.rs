//! Multi-process failover: SIGKILL the leader (3 sites × 1 node) or a whole site
//! (3 sites × 2 nodes) while clients write; writes resume through the survivors, no
//! acknowledged write is lost, and the killed nodes restart and catch up.

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_lost_writes, TestCluster, Writer};

/// Kills `victims`, returns the time until the writer's next acknowledged write.
async fn kill_and_time_recovery(
    tc: &mut TestCluster,
    writer: &Writer,
    victims: &[u64],
) -> Duration {
    let before = writer.acked();
    let killed_at = Instant::now();
    for v in victims {
        tc.cluster.kill9(*v).expect("kill -9");
    }
    common::wait_for(
        "a write acknowledged after the kill",
        Duration::from_secs(30),
        || async { (writer.acked() > before).then_some(()) },
    )
    .await;
    killed_at.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_three_sites_one_node_each() {
    let mut tc = TestCluster::start(3, 1).await;
    let writer = Writer::start(&tc, "failover", 4);
    writer.wait_progress(50).await;
    let leader = tc.leader().await;
    let failover = kill_and_time_recovery(&mut tc, &writer, &[leader]).await;
    println!(
        "FAILOVER kill -9 leader (node {leader}) -> first acknowledged write: {} ms",
        failover.as_millis()
    );
    writer.wait_progress(50).await;
    let new_leader = tc.leader().await;
    assert_ne!(new_leader, leader, "the killed node cannot lead");
    tc.cluster
        .restart(leader)
        .await
        .expect("restart killed leader");
    writer.wait_progress(50).await;
    let history = writer.stop().await;
    assert_no_lost_writes(&tc.client(), &history).await;
    tc.assert_converged().await;
    println!(
        "acknowledged {} writes, {} of unknown outcome, {} failed",
        history.acked.len(),
        history.unknown.len(),
        history.failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_site_kill_three_sites_two_nodes_each() {
    let mut tc = TestCluster::start(3, 2).await;
    let writer = Writer::start(&tc, "sitekill", 4);
    writer.wait_progress(50).await;
    let leader = tc.leader().await;
    let site = tc.site_of(leader);
    let victims: Vec<u64> = tc
        .cluster
        .file
        .nodes
        .iter()
        .filter(|n| n.site == site)
        .map(|n| n.id)
        .collect();
    assert_eq!(victims.len(), 2);
    let failover = kill_and_time_recovery(&mut tc, &writer, &victims).await;
    println!("FAILOVER kill -9 site {site} (nodes {victims:?}, with the leader) -> first acknowledged write: {} ms", failover.as_millis());
    writer.wait_progress(100).await;
    for v in &victims {
        tc.cluster.restart(*v).await.expect("restart");
    }
    writer.wait_progress(50).await;
    let history = writer.stop().await;
    assert_no_lost_writes(&tc.client(), &history).await;
    tc.assert_converged().await;
}
