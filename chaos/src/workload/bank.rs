//! Bank transfers with `Txn`: accounts under `bank/`, each transfer a compare-and-swap on
//! the versions of both accounts; readers scan every account and record the balances,
//! which the bank checker requires to sum to the initial total with none negative.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reprise_api::pb::kv as pb;
use reprise_api::{Client, ClientError};
use serde::Serialize;

use super::StopFlag;
use crate::history::{Input, Output};
use crate::recorder::{outcome_of, Recorder};

/// Key prefix of the bank workload.
pub const PREFIX: &str = "bank/";
/// Opening balance of every account.
pub const OPENING_BALANCE: i64 = 100;

/// One scan of all accounts.
#[derive(Debug, Clone, Serialize)]
pub struct BankRead {
    pub at_ns: u64,
    pub applied_index: u64,
    pub balances: Vec<i64>,
}

fn account(i: u32) -> String {
    format!("{PREFIX}{i:04}")
}

/// Opens `accounts` accounts with the opening balance.
pub async fn open_accounts(client: &Client, accounts: u32) -> Result<(), ClientError> {
    for i in 0..accounts {
        client
            .put(
                account(i).as_bytes(),
                OPENING_BALANCE.to_string().as_bytes(),
            )
            .await?;
    }
    Ok(())
}

fn balance(kv: &pb::KeyValue) -> i64 {
    std::str::from_utf8(&kv.value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MIN)
}

/// Runs `processes` bank clients (transfers, and a full read every fourth operation).
pub fn spawn(
    clients: Vec<Arc<Client>>,
    accounts: u32,
    processes: u32,
    seed: u64,
    recorder: Arc<Recorder>,
    reads: Arc<Mutex<Vec<BankRead>>>,
    stop: StopFlag,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..processes)
        .map(|p| {
            let client = clients[p as usize % clients.len()].clone();
            let (recorder, reads, stop) = (recorder.clone(), reads.clone(), stop.clone());
            let mut rng = StdRng::seed_from_u64(seed.rotate_left(17) ^ u64::from(p));
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.stopped() {
                    n += 1;
                    if n.is_multiple_of(4) {
                        if let Ok(read) = read_all(&client, accounts, &recorder).await {
                            reads.lock().unwrap_or_else(|e| e.into_inner()).push(read);
                        }
                        continue;
                    }
                    let from = rng.random_range(0..accounts);
                    let to = (from + rng.random_range(1..accounts)) % accounts;
                    transfer(&client, &recorder, 2000 + u64::from(p), from, to, &mut rng).await;
                }
            })
        })
        .collect()
}

async fn transfer(
    client: &Client,
    rec: &Recorder,
    process: u64,
    from: u32,
    to: u32,
    rng: &mut StdRng,
) {
    let (Ok(a), Ok(b)) = (
        client.get(account(from).as_bytes(), false).await,
        client.get(account(to).as_bytes(), false).await,
    ) else {
        return;
    };
    let (Some(a), Some(b)) = (a.kv, b.kv) else {
        return;
    };
    let (ba, bb) = (balance(&a), balance(&b));
    if ba <= 0 {
        return;
    }
    let amount = rng.random_range(1..=ba);
    let version = |key: &str, v: u64| pb::Compare {
        key: key.as_bytes().to_vec(),
        op: pb::CompareOp::Equal as i32,
        target: Some(pb::compare::Target::Version(v)),
    };
    let put = |key: &str, v: i64| pb::TxnOp {
        op: Some(pb::txn_op::Op::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: v.to_string().into_bytes(),
        })),
    };
    let (ka, kb) = (account(from), account(to));
    let req = pb::TxnRequest {
        compares: vec![version(&ka, a.version), version(&kb, b.version)],
        success: vec![put(&ka, ba - amount), put(&kb, bb + amount)],
        failure: vec![],
    };
    let start = rec.now_ns();
    let r = client.txn(req).await;
    let out = outcome_of(&r, |resp| Output::Cas {
        applied: resp.succeeded,
    });
    rec.record(
        process,
        "bank/transfer",
        Input::Cas {
            expected: None,
            new: amount as u64,
        },
        start,
        out,
    );
}

/// Reads every account in one scan (atomic to readers).
pub async fn read_all(
    client: &Client,
    accounts: u32,
    rec: &Recorder,
) -> Result<BankRead, ClientError> {
    let req = pb::ScanRequest {
        prefix: PREFIX.as_bytes().to_vec(),
        limit: accounts + 1,
        ..Default::default()
    };
    let page = client.scan(req).await?;
    Ok(BankRead {
        at_ns: rec.now_ns(),
        applied_index: page.header.map(|h| h.applied_index).unwrap_or(0),
        balances: page.kvs.iter().map(balance).collect(),
    })
}
