//! Keeps a node from starting an election while it still owes a leader its refusal to vote.
//!
//! A leader's read lease (`read_index.rs`) counts on every node that acknowledged one of
//! its heartbeats refusing to vote, for itself as for anyone, for `election_timeout_max`
//! after accepting it. openraft 0.9's election timer honours that; `Trigger::elect`, which
//! leader transfer uses to make its target campaign (`transfer.rs`), does not. So every
//! AppendEntries and InstallSnapshot is handed to Raft under the shared side of this gate
//! and stamped when it arrives, and a triggered campaign takes the exclusive side: no such
//! message is then being handled, every earlier one has been answered, and the campaign
//! goes ahead only if the last one arrived at least `election_timeout_max` ago. The
//! election is queued to Raft before the gate is released, so a message arriving later is
//! answered after the election began, with the higher vote, and wins its sender no lease.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::RwLock;
use tokio::time::Instant;

/// Why a triggered campaign was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CampaignRefused {
    #[error(
        "a leader's message arrived {}ms ago; this node may campaign only {}ms after the last one",
        .since.as_millis(),
        .owed.as_millis()
    )]
    LeaderHeardRecently { since: Duration, owed: Duration },
}

/// Orders leader messages against triggered campaigns (see the module comment).
#[derive(Default)]
pub struct CampaignGate {
    gate: RwLock<()>,
    last_arrival: Mutex<Option<Instant>>,
}

impl CampaignGate {
    fn last_arrival(&self) -> MutexGuard<'_, Option<Instant>> {
        // Only an instant is held under the lock.
        self.last_arrival.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a leader's message to Raft (`handle`), stamped with its arrival.
    pub async fn deliver<T>(&self, handle: impl Future<Output = T>) -> T {
        let _shared = self.gate.read().await;
        *self.last_arrival() = Some(Instant::now());
        handle.await
    }

    /// Runs `elect` unless a leader's message arrived less than `owed` ago; no message is
    /// handled while it runs.
    pub async fn campaign<T, F: Future<Output = T>>(
        &self,
        owed: Duration,
        elect: impl FnOnce() -> F,
    ) -> Result<T, CampaignRefused> {
        let _exclusive = self.gate.write().await;
        if let Some(at) = *self.last_arrival() {
            let since = at.elapsed();
            if since < owed {
                return Err(CampaignRefused::LeaderHeardRecently { since, owed });
            }
        }
        Ok(elect().await)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const OWED: Duration = Duration::from_millis(180);

    #[tokio::test(start_paused = true)]
    async fn a_campaign_is_refused_until_owed_has_passed_since_the_last_message() {
        let gate = CampaignGate::default();
        assert_eq!(gate.campaign(OWED, || async { 1 }).await, Ok(1));
        gate.deliver(async {}).await;
        tokio::time::advance(Duration::from_millis(179)).await;
        assert!(matches!(
            gate.campaign(OWED, || async { 2 }).await,
            Err(CampaignRefused::LeaderHeardRecently { .. })
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(gate.campaign(OWED, || async { 3 }).await, Ok(3));
    }

    /// The gate orders the two ways round: a message being handled holds a campaign back
    /// (which is then refused, the message being recent), and a message arriving during a
    /// campaign is handled only after the election was queued.
    #[tokio::test(start_paused = true)]
    async fn messages_and_campaigns_never_overlap() {
        let gate = Arc::new(CampaignGate::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let step = |what: &'static str| {
            let order = order.clone();
            move || order.lock().unwrap().push(what)
        };

        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let message = tokio::spawn({
            let (gate, done) = (gate.clone(), step("message answered"));
            async move {
                gate.deliver(async move { answered.await.map(|_| done()) })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let campaign = tokio::spawn({
            let (gate, done) = (gate.clone(), step("election queued"));
            async move { gate.campaign(OWED, || async move { done() }).await }
        });
        tokio::task::yield_now().await;
        answer.send(()).unwrap();
        message.await.unwrap().unwrap();
        assert!(
            campaign.await.unwrap().is_err(),
            "a recent message refuses it"
        );
        assert_eq!(*order.lock().unwrap(), ["message answered"]);

        tokio::time::advance(OWED).await;
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let campaign = tokio::spawn({
            let (gate, done) = (gate.clone(), step("election queued"));
            async move {
                gate.campaign(OWED, || async move { wait.await.map(|_| done()) })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let message = tokio::spawn({
            let (gate, done) = (gate.clone(), step("message answered"));
            async move { gate.deliver(async move { done() }).await }
        });
        tokio::task::yield_now().await;
        go.send(()).unwrap();
        campaign.await.unwrap().unwrap().unwrap();
        message.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["message answered", "election queued", "message answered"]
        );
    }
}
