//! Where drills run their clusters. Today: local processes on 127.0.0.1.

pub mod local;
