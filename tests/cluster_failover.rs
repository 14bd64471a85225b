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

/// Regression, quiet rejoin (`node/src/rejoin.rs`): a restarted follower used to campaign
/// at its first timer tick in a higher term, and the leader stepped down as soon as its
/// AppendEntries met that term: every follower restart cost an election. Now the leader
/// and its term survive repeated follower restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_restarted_follower_deposed_the_leader() {
    let mut tc = TestCluster::start(3, 1).await;
    let client = tc.client();
    let leader = tc.leader().await;
    let leader_addr = tc.cluster.addr(leader).expect("leader address");
    let term = client.status_of(&leader_addr).await.expect("status").term;
    let follower = tc.follower_of(leader);
    let follower_addr = tc.cluster.addr(follower).expect("follower address");
    for round in 0..3 {
        tc.cluster.kill9(follower).expect("kill -9 the follower");
        tc.cluster
            .restart(follower)
            .await
            .expect("restart the follower");
        let put = client
            .put(format!("rejoin/{round}").as_bytes(), b"x")
            .await
            .expect("a write after the restart");
        let index = put.header.map(|h| h.index).unwrap_or(0);
        // Caught up = the leader's AppendEntries reached the restarted node, which is when
        // a higher term there would have deposed the leader.
        common::wait_for(
            "the restarted follower to apply the write",
            Duration::from_secs(20),
            || async {
                let s = client.status_of(&follower_addr).await.ok()?;
                (s.applied_index >= index).then_some(())
            },
        )
        .await;
    }
    let after = client.status_of(&leader_addr).await.expect("status");
    assert_eq!(
        (after.role.as_str(), after.term),
        ("leader", term),
        "node {leader} led term {term} before three restarts of node {follower}"
    );
}
