//! Append-only set: every operation inserts a new unique key under `set/`. At the end a
//! scan must contain every acknowledged insert (no acknowledged write lost) and nothing
//! that was never attempted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use reprise_api::Client;

use super::StopFlag;
use crate::history::{Input, Output};
use crate::recorder::{outcome_of, Recorder};

/// Key prefix of the set workload.
pub const PREFIX: &str = "set/";

/// What the set workload attempted and what was acknowledged.
#[derive(Debug, Default, Clone)]
pub struct SetLog {
    pub attempted: BTreeSet<String>,
    pub acked: BTreeSet<String>,
    /// The HLC stamp each acknowledged insert was committed with.
    pub acked_hlc: BTreeMap<String, u64>,
}

/// Runs `processes` inserters until `stop`.
pub fn spawn(
    clients: Vec<Arc<Client>>,
    processes: u32,
    recorder: Arc<Recorder>,
    log: Arc<Mutex<SetLog>>,
    stop: StopFlag,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..processes)
        .map(|p| {
            let client = clients[p as usize % clients.len()].clone();
            let (recorder, log, stop) = (recorder.clone(), log.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n: u64 = 0;
                while !stop.stopped() {
                    let key = format!("{PREFIX}{p:03}/{n:010}");
                    lock(&log).attempted.insert(key.clone());
                    let start = recorder.now_ns();
                    let r = client.put(key.as_bytes(), b"1").await;
                    if let Ok(resp) = &r {
                        let mut log = lock(&log);
                        log.acked.insert(key.clone());
                        if let Some(h) = &resp.header {
                            log.acked_hlc.insert(key.clone(), h.hlc);
                        }
                        recorder.record_stamp(resp.header.as_ref());
                    }
                    let out = outcome_of(&r, |_| Output::Write);
                    recorder.record(1000 + u64::from(p), &key, Input::Write(n), start, out);
                    n += 1;
                }
            })
        })
        .collect()
}

fn lock(log: &Mutex<SetLog>) -> std::sync::MutexGuard<'_, SetLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every key under `set/`, read linearizably page by page.
pub async fn read_all(client: &Client) -> Result<BTreeSet<String>, reprise_api::ClientError> {
    let mut present = BTreeSet::new();
    let mut token = Vec::new();
    loop {
        let req = reprise_api::pb::kv::ScanRequest {
            prefix: PREFIX.as_bytes().to_vec(),
            limit: reprise_api::limits::SCAN_LIMIT_MAX,
            page_token: token,
            ..Default::default()
        };
        let page = client.scan(req).await?;
        present.extend(
            page.kvs
                .into_iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned()),
        );
        if page.next_page_token.is_empty() {
            return Ok(present);
        }
        token = page.next_page_token;
    }
}
