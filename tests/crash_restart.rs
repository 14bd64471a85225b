//! Crash tests: SIGKILL nodes many times in the middle of a stream of writes, and the
//! whole cluster at once; after every restart the log opens, every acknowledged write is
//! present, and the replicas converge to the same state checksum.

mod common;

use common::{assert_no_lost_writes, TestCluster, Writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_kill9_during_writes_loses_nothing() {
    let mut tc = TestCluster::start(3, 1).await;
    let writer = Writer::start(&tc, "crash", 4);
    let rounds = 8;
    for round in 0..rounds {
        writer.wait_progress(30).await;
        // Alternate between the leader and a follower.
        let leader = tc.leader().await;
        let victim = if round % 2 == 0 {
            leader
        } else {
            tc.follower_of(leader)
        };
        tc.cluster.kill9(victim).expect("kill -9");
        writer.wait_progress(30).await;
        tc.cluster
            .restart(victim)
            .await
            .expect("restart after kill -9");
    }
    writer.wait_progress(30).await;
    let history = writer.stop().await;
    assert_no_lost_writes(&tc.client(), &history).await;
    tc.assert_converged().await;
    println!(
        "{rounds} kill -9 rounds, {} acknowledged writes checked",
        history.acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_kill9_then_restart_keeps_every_acknowledged_write() {
    let mut tc = TestCluster::start(3, 1).await;
    let writer = Writer::start(&tc, "allcrash", 4);
    writer.wait_progress(200).await;
    for id in tc.cluster.running() {
        tc.cluster.kill9(id).expect("kill -9");
    }
    let history = writer.stop().await;
    for id in tc
        .cluster
        .file
        .nodes
        .iter()
        .map(|n| n.id)
        .collect::<Vec<_>>()
    {
        tc.cluster.restart(id).await.expect("restart");
    }
    assert_no_lost_writes(&tc.client(), &history).await;
    tc.assert_converged().await;
}
