//! Membership changes under load: add a fourth node at a new site (learner, then voter),
//! remove an original node, with writes continuing and nothing lost.

mod common;

use common::{assert_no_lost_writes, TestCluster, Writer};
use reprise_api::client::Retry;
use reprise_api::pb::admin as apb;
use reprise_api::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_node_at_new_site_and_remove_an_old_one_while_writing() {
    let mut tc = TestCluster::start(3, 1).await;
    let writer = Writer::start(&tc, "members", 2);
    writer.wait_progress(50).await;

    let new = tc
        .cluster
        .spawn_new_node(4, "site-4")
        .await
        .expect("start node 4");
    let client = tc.client();
    let member = apb::MemberInfo {
        id: 4,
        addr: new.addr.clone(),
        site: "site-4".into(),
        zone: String::new(),
        voter: true,
    };
    let added = client
        .call(Retry::OnlyIfNotApplied, |c| {
            let req = apb::AddNodeRequest {
                member: Some(member.clone()),
                as_voter: true,
            };
            async move { Client::admin(c).add_node(req).await }
        })
        .await
        .expect("add node 4");
    let m4 = added
        .members
        .iter()
        .find(|m| m.id == 4)
        .expect("node 4 in membership");
    assert!(m4.voter && m4.site == "site-4", "{m4:?}");
    writer.wait_progress(50).await;

    // Adding the same id again is refused: a replacement needs a new id.
    let again = client
        .call(Retry::OnlyIfNotApplied, |c| {
            let req = apb::AddNodeRequest {
                member: Some(member.clone()),
                as_voter: true,
            };
            async move { Client::admin(c).add_node(req).await }
        })
        .await;
    assert!(again.is_err(), "re-adding node 4 must fail");

    let leader = tc.leader().await;
    let victim = [1u64, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a non-leader");
    let removed = client
        .call(Retry::OnlyIfNotApplied, |c| async move {
            Client::admin(c)
                .remove_node(apb::RemoveNodeRequest { id: victim })
                .await
        })
        .await
        .expect("remove node");
    assert!(
        removed.members.iter().all(|m| m.id != victim),
        "{:?}",
        removed.members
    );
    writer.wait_progress(50).await;
    tc.cluster.kill9(victim).expect("stop the removed node");

    // Hand leadership to the new node while writes continue.
    let moved = client
        .call(Retry::OnlyIfNotApplied, |c| async move {
            Client::admin(c)
                .transfer_leader(apb::TransferLeaderRequest { to: 4 })
                .await
        })
        .await
        .expect("transfer leadership to node 4");
    assert_eq!(moved.leader_id, 4);
    println!("leadership moved to node 4 in {} ms", moved.took_ms);
    assert_eq!(tc.leader().await, 4);
    writer.wait_progress(50).await;

    let history = writer.stop().await;
    assert_no_lost_writes(&client, &history).await;
    tc.assert_converged().await;
    let status = client.status_of(&new.addr).await.expect("status of node 4");
    assert_eq!(status.members.len(), 3, "{:?}", status.members);
}
