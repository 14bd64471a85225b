//! Per-key registers with unique written values: reads, writes and compare-and-swaps on a
//! few keys, recorded for the linearizability checker. Every written value is unique in
//! the run, so each read maps to exactly one write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reprise_api::pb::kv as pb;
use reprise_api::Client;

use super::StopFlag;
use crate::history::{Input, Output, Value};
use crate::recorder::{outcome_of, Recorder};

/// Key prefix of the register workload.
pub const PREFIX: &str = "reg/";

/// Shape of the register workload.
#[derive(Debug, Clone, Copy)]
pub struct RegisterConfig {
    pub keys: u32,
    pub processes: u32,
    pub seed: u64,
    /// Id of the first process (several groups of processes can share one history).
    pub first_process: u64,
    /// Only read (for clients pinned to one node, which must not be redirected by writes).
    pub read_only: bool,
}

impl RegisterConfig {
    /// `processes` read-write clients on `keys` keys.
    pub fn new(keys: u32, processes: u32, seed: u64) -> Self {
        RegisterConfig {
            keys,
            processes,
            seed,
            first_process: 0,
            read_only: false,
        }
    }
}

fn decode(kv: Option<&pb::KeyValue>) -> Value {
    // A value that is not one of ours decodes to u64::MAX, which no operation wrote.
    kv.map(|kv| {
        std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX)
    })
}

/// Runs `config.processes` client processes until `stop`; returns their task handles.
pub fn spawn(
    clients: Vec<Arc<Client>>,
    config: RegisterConfig,
    recorder: Arc<Recorder>,
    stop: StopFlag,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Values are unique across groups too: each group counts in its own range.
    let values = Arc::new(AtomicU64::new(1 + (config.first_process << 40)));
    (0..config.processes)
        .map(|p| {
            let client = clients[p as usize % clients.len()].clone();
            let (recorder, stop, values) = (recorder.clone(), stop.clone(), values.clone());
            let mut rng = StdRng::seed_from_u64(config.seed ^ (u64::from(p) << 32));
            tokio::spawn(async move {
                while !stop.stopped() {
                    let key = format!("{PREFIX}{}", rng.random_range(0..config.keys));
                    let dice: u32 = if config.read_only {
                        0
                    } else {
                        rng.random_range(0..10)
                    };
                    let process = config.first_process + u64::from(p);
                    one_op(&client, &recorder, process, &key, dice, &values).await;
                }
            })
        })
        .collect()
}

async fn one_op(
    client: &Client,
    rec: &Recorder,
    process: u64,
    key: &str,
    dice: u32,
    values: &AtomicU64,
) {
    let start = rec.now_ns();
    match dice {
        0..=4 => {
            let r = client.get(key.as_bytes(), false).await;
            let out = outcome_of(&r, |resp| Output::Read(decode(resp.kv.as_ref())));
            rec.record(process, key, Input::Read, start, out);
        }
        5..=8 => {
            let v = values.fetch_add(1, Ordering::Relaxed);
            let r = client.put(key.as_bytes(), v.to_string().as_bytes()).await;
            if let Ok(resp) = &r {
                rec.record_stamp(resp.header.as_ref());
            }
            rec.record(
                process,
                key,
                Input::Write(v),
                start,
                outcome_of(&r, |_| Output::Write),
            );
        }
        _ => {
            // CAS from whatever the register holds now (a fresh read), to a new value.
            let expected = match client.get(key.as_bytes(), false).await {
                Ok(resp) => decode(resp.kv.as_ref()),
                Err(_) => return,
            };
            let new = values.fetch_add(1, Ordering::Relaxed);
            let start = rec.now_ns();
            let r = client.txn(cas_request(key, expected, new)).await;
            if let Ok(resp) = &r {
                rec.record_stamp(resp.header.as_ref());
            }
            let out = outcome_of(&r, |resp| Output::Cas {
                applied: resp.succeeded,
            });
            rec.record(process, key, Input::Cas { expected, new }, start, out);
        }
    }
}

fn cas_request(key: &str, expected: Value, new: u64) -> pb::TxnRequest {
    let target = match expected {
        Some(v) => pb::compare::Target::Value(v.to_string().into_bytes()),
        None => pb::compare::Target::Absent(true),
    };
    pb::TxnRequest {
        compares: vec![pb::Compare {
            key: key.as_bytes().to_vec(),
            op: pb::CompareOp::Equal as i32,
            target: Some(target),
        }],
        success: vec![pb::TxnOp {
            op: Some(pb::txn_op::Op::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: new.to_string().into_bytes(),
            })),
        }],
        failure: vec![],
    }
}

/// Final linearizable read of every register key, recorded (process id `u64::MAX`).
pub async fn final_reads(client: &Client, config: RegisterConfig, rec: &Recorder) {
    for k in 0..config.keys {
        let key = format!("{PREFIX}{k}");
        let start = rec.now_ns();
        let r = client.get(key.as_bytes(), false).await;
        let out = outcome_of(&r, |resp| Output::Read(decode(resp.kv.as_ref())));
        rec.record(u64::MAX, &key, Input::Read, start, out);
    }
}
