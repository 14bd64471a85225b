//! Validated requests: what a server accepts after checking a protocol message. Every
//! `TryFrom<pb::…>` names the field that is wrong; the same checks run in the client
//! before sending, so bad input never reaches the log.

use thiserror::Error;
use tonic::Status;

use crate::limits::{
    KEY_BYTES_MAX, SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX, TXN_OPS_MAX, VALUE_BYTES_MAX,
};
use crate::pb::kv as pb;

/// A request field that failed validation.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl From<ValidationError> for Status {
    fn from(e: ValidationError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        reason: reason.into(),
    }
}

/// Checks a key: not empty, at most [`KEY_BYTES_MAX`] bytes.
pub fn check_key(field: &'static str, key: &[u8]) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(invalid(field, "key is empty"));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(invalid(
            field,
            format!("key is {} bytes, limit is {KEY_BYTES_MAX}", key.len()),
        ));
    }
    Ok(())
}

/// Checks a value: at most [`VALUE_BYTES_MAX`] bytes.
pub fn check_value(field: &'static str, value: &[u8]) -> Result<(), ValidationError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(invalid(
            field,
            format!("value is {} bytes, limit is {VALUE_BYTES_MAX}", value.len()),
        ));
    }
    Ok(())
}

/// Read consistency asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Stale,
}

fn consistency(raw: i32) -> Result<Consistency, ValidationError> {
    match pb::Consistency::try_from(raw) {
        Ok(pb::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(pb::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(invalid("consistency", format!("unknown value {raw}"))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Put {
    /// What `try_from` checks, without taking the request (a client checks before
    /// sending, and a value can be megabytes).
    pub fn check(r: &pb::PutRequest) -> Result<(), ValidationError> {
        check_key("key", &r.key)?;
        check_value("value", &r.value)
    }
}

impl TryFrom<pb::PutRequest> for Put {
    type Error = ValidationError;
    fn try_from(r: pb::PutRequest) -> Result<Self, ValidationError> {
        Put::check(&r)?;
        Ok(Put {
            key: r.key,
            value: r.value,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub key: Vec<u8>,
}

impl TryFrom<pb::DeleteRequest> for Delete {
    type Error = ValidationError;
    fn try_from(r: pb::DeleteRequest) -> Result<Self, ValidationError> {
        check_key("key", &r.key)?;
        Ok(Delete { key: r.key })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    pub key: Vec<u8>,
    pub consistency: Consistency,
}

impl TryFrom<pb::GetRequest> for Get {
    type Error = ValidationError;
    fn try_from(r: pb::GetRequest) -> Result<Self, ValidationError> {
        check_key("key", &r.key)?;
        Ok(Get {
            key: r.key,
            consistency: consistency(r.consistency)?,
        })
    }
}

/// Which keys a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Keys starting with `prefix`, from `from` (inclusive) on.
    Prefix { prefix: Vec<u8>, from: Vec<u8> },
    /// Keys in `[from, end)`; `end` None = to the last key.
    Range { from: Vec<u8>, end: Option<Vec<u8>> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub range: ScanRange,
    pub limit: u32,
    pub consistency: Consistency,
}

impl TryFrom<pb::ScanRequest> for Scan {
    type Error = ValidationError;
    fn try_from(r: pb::ScanRequest) -> Result<Self, ValidationError> {
        if r.limit > SCAN_LIMIT_MAX {
            return Err(invalid(
                "limit",
                format!("{} is over the limit of {SCAN_LIMIT_MAX}", r.limit),
            ));
        }
        let limit = if r.limit == 0 {
            SCAN_LIMIT_DEFAULT
        } else {
            r.limit
        };
        for (field, k) in [
            ("prefix", &r.prefix),
            ("start", &r.start),
            ("end", &r.end),
            ("page_token", &r.page_token),
        ] {
            if k.len() > KEY_BYTES_MAX {
                return Err(invalid(
                    field,
                    format!("{} bytes, limit is {KEY_BYTES_MAX}", k.len()),
                ));
            }
        }
        let range = if !r.prefix.is_empty() {
            if !r.start.is_empty() || !r.end.is_empty() {
                return Err(invalid(
                    "prefix",
                    "give either a prefix or a start/end range, not both",
                ));
            }
            ScanRange::Prefix {
                prefix: r.prefix,
                from: r.page_token,
            }
        } else {
            let from = if r.page_token.is_empty() {
                r.start
            } else {
                r.page_token
            };
            let end = (!r.end.is_empty()).then_some(r.end);
            if end
                .as_ref()
                .is_some_and(|e| e.as_slice() <= from.as_slice())
            {
                return Err(invalid("end", "end must be greater than start"));
            }
            ScanRange::Range { from, end }
        };
        Ok(Scan {
            range,
            limit,
            consistency: consistency(r.consistency)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(u64),
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put(Put),
    Delete(Delete),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl TryFrom<pb::Compare> for Compare {
    type Error = ValidationError;
    fn try_from(c: pb::Compare) -> Result<Self, ValidationError> {
        check_key("compare.key", &c.key)?;
        let op = match pb::CompareOp::try_from(c.op) {
            Ok(pb::CompareOp::Equal) => CompareOp::Equal,
            Ok(pb::CompareOp::NotEqual) => CompareOp::NotEqual,
            Ok(pb::CompareOp::Greater) => CompareOp::Greater,
            Ok(pb::CompareOp::Less) => CompareOp::Less,
            Err(_) => return Err(invalid("compare.op", format!("unknown value {}", c.op))),
        };
        let target = match c.target {
            Some(pb::compare::Target::Value(v)) => {
                check_value("compare.value", &v)?;
                CompareTarget::Value(v)
            }
            Some(pb::compare::Target::Version(v)) => CompareTarget::Version(v),
            Some(pb::compare::Target::Absent(true)) => CompareTarget::Absent,
            Some(pb::compare::Target::Absent(false)) | None => {
                return Err(invalid(
                    "compare.target",
                    "missing: give a value, a version or absent",
                ))
            }
        };
        if target == CompareTarget::Absent && !matches!(op, CompareOp::Equal | CompareOp::NotEqual)
        {
            return Err(invalid(
                "compare.op",
                "absent can only be compared with EQUAL or NOT_EQUAL",
            ));
        }
        Ok(Compare {
            key: c.key,
            op,
            target,
        })
    }
}

impl TryFrom<pb::TxnOp> for TxnOp {
    type Error = ValidationError;
    fn try_from(o: pb::TxnOp) -> Result<Self, ValidationError> {
        match o.op {
            Some(pb::txn_op::Op::Put(p)) => Ok(TxnOp::Put(p.try_into()?)),
            Some(pb::txn_op::Op::Delete(d)) => Ok(TxnOp::Delete(d.try_into()?)),
            None => Err(invalid("txn.op", "missing: give a put or a delete")),
        }
    }
}

impl TryFrom<pb::TxnRequest> for Txn {
    type Error = ValidationError;
    fn try_from(r: pb::TxnRequest) -> Result<Self, ValidationError> {
        let total = r.compares.len() + r.success.len() + r.failure.len();
        if total > TXN_OPS_MAX {
            return Err(invalid(
                "txn",
                format!("{total} compares and operations, limit is {TXN_OPS_MAX}"),
            ));
        }
        if r.compares.is_empty() && r.success.is_empty() && r.failure.is_empty() {
            return Err(invalid("txn", "empty transaction"));
        }
        Ok(Txn {
            compares: r
                .compares
                .into_iter()
                .map(Compare::try_from)
                .collect::<Result<_, _>>()?,
            success: r
                .success
                .into_iter()
                .map(TxnOp::try_from)
                .collect::<Result<_, _>>()?,
            failure: r
                .failure
                .into_iter()
                .map(TxnOp::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_oversized_keys_and_values() {
        let e = Put::try_from(pb::PutRequest {
            key: vec![],
            value: vec![],
        })
        .unwrap_err();
        assert_eq!(e.field, "key");
        let e = Put::try_from(pb::PutRequest {
            key: vec![b'k'; KEY_BYTES_MAX + 1],
            value: vec![],
        })
        .unwrap_err();
        assert!(e.reason.contains("limit"), "{e}");
        let e = Put::try_from(pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![0; VALUE_BYTES_MAX + 1],
        })
        .unwrap_err();
        assert_eq!(e.field, "value");
        assert!(Put::try_from(pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![0; VALUE_BYTES_MAX]
        })
        .is_ok());
    }

    #[test]
    fn scan_page_token_continues_a_prefix_scan() {
        let s = Scan::try_from(pb::ScanRequest {
            prefix: b"a/".to_vec(),
            page_token: b"a/5".to_vec(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.range,
            ScanRange::Prefix {
                prefix: b"a/".to_vec(),
                from: b"a/5".to_vec()
            }
        );
        assert_eq!(s.limit, SCAN_LIMIT_DEFAULT);
        let bad = pb::ScanRequest {
            start: b"b".to_vec(),
            end: b"a".to_vec(),
            ..Default::default()
        };
        assert_eq!(Scan::try_from(bad).unwrap_err().field, "end");
    }

    #[test]
    fn txn_without_target_is_refused() {
        let r = pb::TxnRequest {
            compares: vec![pb::Compare {
                key: b"k".to_vec(),
                op: 0,
                target: None,
            }],
            ..Default::default()
        };
        assert_eq!(Txn::try_from(r).unwrap_err().field, "compare.target");
    }
}
