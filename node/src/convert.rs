//! Conversions between validated protocol requests (`reprise_api::model`) and storage
//! commands, and from stored values to protocol messages.

use reprise_api::model;
use reprise_api::pb::kv as pb;
use reprise_storage::command::{Compare, CompareOp, CompareTarget, Operation, Txn, TxnOp};
use reprise_storage::KeyValue;

/// The storage operation of a validated transaction.
pub fn txn(t: model::Txn) -> Operation {
    let op = |o: model::TxnOp| match o {
        model::TxnOp::Put(p) => TxnOp::Put {
            key: p.key,
            value: p.value.into(),
        },
        model::TxnOp::Delete(d) => TxnOp::Delete { key: d.key },
    };
    Operation::Txn(Txn {
        compares: t.compares.into_iter().map(compare).collect(),
        success: t.success.into_iter().map(op).collect(),
        failure: t.failure.into_iter().map(op).collect(),
    })
}

fn compare(c: model::Compare) -> Compare {
    let op = match c.op {
        model::CompareOp::Equal => CompareOp::Equal,
        model::CompareOp::NotEqual => CompareOp::NotEqual,
        model::CompareOp::Greater => CompareOp::Greater,
        model::CompareOp::Less => CompareOp::Less,
    };
    let target = match c.target {
        model::CompareTarget::Value(v) => CompareTarget::Value(Some(v)),
        model::CompareTarget::Absent => CompareTarget::Value(None),
        model::CompareTarget::Version(v) => CompareTarget::Version(v),
    };
    Compare {
        key: c.key,
        op,
        target,
    }
}

/// Protocol form of a stored key.
pub fn key_value(kv: KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        value: kv.value.value.to_vec(),
        version: kv.value.version,
        create_index: kv.value.create_index,
        mod_index: kv.value.mod_index,
        mod_hlc: kv.value.mod_hlc,
    }
}
