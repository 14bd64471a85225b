//! reprise-ops: the single `reprise` binary and the operator workflows behind it: the
//! CLI, local multi-site clusters on 127.0.0.1, cluster status with site-aware fault
//! tolerance, key-value commands, and the failover demo.

pub mod backup_sources;
pub mod bench_backup;
pub mod bench_compare;
pub mod bench_etcd;
pub mod cli;
pub mod cmd_backup;
pub mod cmd_bench;
pub mod cmd_chaos;
pub mod cmd_cluster;
pub mod cmd_drill;
pub mod cmd_kv;
pub mod cmd_local;
pub mod cmd_node;
pub mod cmd_restore;
pub mod demo;
pub mod output;
pub mod scratch_dir;
pub mod targets_file;
