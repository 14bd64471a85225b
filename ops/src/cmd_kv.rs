//! `reprise kv put|get|delete|scan|cas`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Subcommand};
use reprise_api::pb::kv as pb;
use serde::Serialize;

use crate::cli::Global;
use crate::output::{print_json, print_table, show_bytes, CliError, CliResult, Format};

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Set KEY to VALUE (or to the contents of --file, or of stdin when neither is given).
    Put {
        key: String,
        value: Option<String>,
        /// Read the value from this file ("-" for stdin).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
    },
    /// Print KEY's value. Exit code 3 when the key does not exist.
    Get {
        key: String,
        /// Serve from the contacted node's local state, possibly stale.
        #[arg(long)]
        stale: bool,
    },
    /// Delete KEY.
    Delete { key: String },
    /// List keys starting with PREFIX (all keys when PREFIX is empty).
    Scan {
        #[arg(default_value = "")]
        prefix: String,
        /// Stop after this many keys.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        stale: bool,
    },
    /// Set KEY to NEW_VALUE only if its current state matches. Exit code 1 when not applied.
    #[command(group(ArgGroup::new("expect").required(true).args(["expect_value", "expect_version", "expect_absent"])))]
    Cas {
        key: String,
        new_value: String,
        /// Apply only if the current value equals this.
        #[arg(long)]
        expect_value: Option<String>,
        /// Apply only if the current version equals this (0 = absent).
        #[arg(long)]
        expect_version: Option<u64>,
        /// Apply only if the key does not exist.
        #[arg(long)]
        expect_absent: bool,
    },
}

#[derive(Serialize)]
struct WriteOut {
    key: String,
    index: u64,
    hlc: u64,
    leader_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<bool>,
}

#[derive(Serialize)]
struct KvOut {
    key: String,
    value: String,
    version: u64,
    create_index: u64,
    mod_index: u64,
    mod_hlc: u64,
}

impl From<pb::KeyValue> for KvOut {
    fn from(kv: pb::KeyValue) -> Self {
        KvOut {
            key: show_bytes(&kv.key),
            value: show_bytes(&kv.value),
            version: kv.version,
            create_index: kv.create_index,
            mod_index: kv.mod_index,
            mod_hlc: kv.mod_hlc,
        }
    }
}

fn read_value(value: Option<String>, file: Option<PathBuf>) -> CliResult<Vec<u8>> {
    match (value, file) {
        (Some(v), _) => Ok(v.into_bytes()),
        (None, Some(path)) if path.as_os_str() != "-" => {
            Ok(std::fs::read(&path)
                .with_context(|| format!("read value from {}", path.display()))?)
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("read value from stdin")?;
            Ok(buf)
        }
    }
}

fn write_out(key: &str, header: Option<pb::WriteHeader>) -> WriteOut {
    let h = header.unwrap_or_default();
    WriteOut {
        key: key.to_string(),
        index: h.index,
        hlc: h.hlc,
        leader_id: h.leader_id,
        version: None,
        existed: None,
        applied: None,
    }
}

fn report_write(out: &WriteOut, format: Format, what: &str) -> CliResult {
    match format {
        Format::Json => print_json(out),
        Format::Table => {
            println!(
                "{what} {} at index {} (hlc {}, leader {})",
                out.key, out.index, out.hlc, out.leader_id
            );
            Ok(())
        }
    }
}

/// Runs a kv command.
pub async fn run(cmd: KvCommand, global: &Global) -> CliResult {
    let client = global.client()?;
    let format = global.output;
    match cmd {
        KvCommand::Put { key, value, file } => {
            let value = read_value(value, file)?;
            let resp = client.put(key.as_bytes(), &value).await?;
            let mut out = write_out(&key, resp.header);
            out.version = Some(resp.version);
            report_write(&out, format, "put")
        }
        KvCommand::Get { key, stale } => {
            let resp = client.get(key.as_bytes(), stale).await?;
            let kv = resp
                .kv
                .ok_or_else(|| CliError::NotFound(format!("key {key:?} not found")))?;
            match format {
                Format::Json => {
                    let h = resp.header.unwrap_or_default();
                    print_json(&serde_json::json!({
                        "kv": KvOut::from(kv),
                        "applied_index": h.applied_index,
                        "served_by": h.served_by,
                        "linearizable": h.linearizable,
                    }))
                }
                Format::Table => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout();
                    stdout
                        .write_all(&kv.value)
                        .and_then(|_| stdout.write_all(b"\n"))
                        .context("write value")?;
                    Ok(())
                }
            }
        }
        KvCommand::Delete { key } => {
            let resp = client.delete(key.as_bytes()).await?;
            let mut out = write_out(&key, resp.header);
            out.existed = Some(resp.existed);
            report_write(
                &out,
                format,
                if resp.existed {
                    "deleted"
                } else {
                    "deleted (was absent)"
                },
            )
        }
        KvCommand::Scan {
            prefix,
            limit,
            stale,
        } => scan(&client, prefix, limit, stale, format).await,
        KvCommand::Cas {
            key,
            new_value,
            expect_value,
            expect_version,
            expect_absent,
        } => {
            let target = match (expect_value, expect_version, expect_absent) {
                (Some(v), _, _) => pb::compare::Target::Value(v.into_bytes()),
                (_, Some(v), _) => pb::compare::Target::Version(v),
                _ => pb::compare::Target::Absent(true),
            };
            let req = pb::TxnRequest {
                compares: vec![pb::Compare {
                    key: key.clone().into_bytes(),
                    op: pb::CompareOp::Equal as i32,
                    target: Some(target),
                }],
                success: vec![pb::TxnOp {
                    op: Some(pb::txn_op::Op::Put(pb::PutRequest {
                        key: key.clone().into_bytes(),
                        value: new_value.into_bytes(),
                    })),
                }],
                failure: vec![],
            };
            let resp = client.txn(req).await?;
            let mut out = write_out(&key, resp.header);
            out.applied = Some(resp.succeeded);
            if !resp.succeeded {
                if format == Format::Json {
                    print_json(&out)?;
                }
                return Err(CliError::NotApplied(format!(
                    "cas on {key:?} not applied: the current state did not match (checked at index {})",
                    out.index
                )));
            }
            report_write(&out, format, "cas applied to")
        }
    }
}

async fn scan(
    client: &reprise_api::Client,
    prefix: String,
    limit: u32,
    stale: bool,
    format: Format,
) -> CliResult {
    let mut kvs = Vec::new();
    let mut token = Vec::new();
    loop {
        let page =
            (limit as usize - kvs.len()).min(reprise_api::limits::SCAN_LIMIT_MAX as usize) as u32;
        let consistency = if stale {
            pb::Consistency::Stale
        } else {
            pb::Consistency::Linearizable
        };
        let req = if prefix.is_empty() {
            pb::ScanRequest {
                limit: page,
                page_token: token.clone(),
                consistency: consistency as i32,
                ..Default::default()
            }
        } else {
            pb::ScanRequest {
                prefix: prefix.clone().into_bytes(),
                limit: page,
                page_token: token.clone(),
                consistency: consistency as i32,
                ..Default::default()
            }
        };
        let resp = client.scan(req).await?;
        kvs.extend(resp.kvs.into_iter().map(KvOut::from));
        token = resp.next_page_token;
        if token.is_empty() || kvs.len() >= limit as usize {
            break;
        }
    }
    match format {
        Format::Json => print_json(&kvs),
        Format::Table => {
            let rows: Vec<Vec<String>> = kvs
                .iter()
                .map(|kv| vec![kv.key.clone(), kv.version.to_string(), kv.value.clone()])
                .collect();
            print_table(&["KEY", "VERSION", "VALUE"], &rows);
            Ok(())
        }
    }
}
