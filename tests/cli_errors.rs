//! The CLI against a real cluster: documented exit codes, one-line errors, bad input
//! refused with nothing written, malformed configs refused naming the problem, and the
//! JSON shape of `cluster status`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{exe, reprise, reprise_offline_ok, TestCluster};

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_one_line_error(o: &Output, code_wanted: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(code(o), code_wanted, "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error must be one line: {err:?}"
    );
    assert!(
        err.contains(needle),
        "error {err:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_bad_input() {
    let tc = TestCluster::start(3, 1).await;
    let eps = tc.cluster.file.endpoints();

    assert_one_line_error(&reprise(&eps, &["kv", "put", "", "v"]), 2, "key is empty");
    let long_key = "k".repeat(reprise_api::limits::KEY_BYTES_MAX + 1);
    assert_one_line_error(&reprise(&eps, &["kv", "put", &long_key, "v"]), 2, "limit");
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        big.path(),
        vec![b'x'; reprise_api::limits::VALUE_BYTES_MAX + 1],
    )
    .unwrap();
    let big_path = big.path().to_str().unwrap();
    assert_one_line_error(
        &reprise(&eps, &["kv", "put", "big", "--file", big_path]),
        2,
        "value",
    );
    let scan = reprise(&eps, &["-o", "json", "kv", "scan"]);
    assert_eq!(code(&scan), 0, "{}", stderr(&scan));
    let keys: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    assert_eq!(
        keys.as_array().map(Vec::len),
        Some(0),
        "bad input must write nothing: {keys}"
    );

    assert_one_line_error(&reprise(&eps, &["kv", "get", "missing"]), 3, "not found");

    // Value from stdin.
    let mut child = Command::new(exe())
        .args(["--endpoints", &eps, "kv", "put", "greeting"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let got = reprise(&eps, &["kv", "get", "greeting"]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim_end(),
        "hello from stdin"
    );

    // A stale read says which applied index it observed and that it was not linearizable.
    // The contacted node may lag by a heartbeat, so wait for it to have applied the put.
    let v = common::wait_for(
        "a stale read to observe the put",
        std::time::Duration::from_secs(10),
        || async {
            let stale = reprise(&eps, &["-o", "json", "kv", "get", "greeting", "--stale"]);
            let v: serde_json::Value = serde_json::from_slice(&stale.stdout).ok()?;
            (v["kv"]["value"] == "hello from stdin").then_some(v)
        },
    )
    .await;
    assert_eq!(v["linearizable"], false, "{v}");
    assert!(v["applied_index"].as_u64().is_some_and(|i| i > 0), "{v}");

    // CAS: a failed comparison is "not applied" (exit 1), not an error, and changes nothing.
    assert_one_line_error(
        &reprise(
            &eps,
            &["kv", "cas", "greeting", "new", "--expect-value", "wrong"],
        ),
        1,
        "not applied",
    );
    let got = reprise(&eps, &["kv", "get", "greeting"]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim_end(),
        "hello from stdin"
    );
    let ok = reprise(
        &eps,
        &["kv", "cas", "greeting", "new", "--expect-version", "1"],
    );
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let ok = reprise(&eps, &["kv", "cas", "fresh", "first", "--expect-absent"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));

    // Status JSON.
    let status = reprise(&eps, &["-o", "json", "cluster", "status"]);
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(s["leader"].as_u64().is_some(), "{s}");
    assert!(s["term"].as_u64().is_some(), "{s}");
    assert_eq!(s["members"].as_array().map(Vec::len), Some(3), "{s}");
    assert_eq!(s["fault_tolerance"]["sites"], 1, "{s}");
    assert_eq!(s["fault_tolerance"]["nodes"], 1, "{s}");
    for m in s["members"].as_array().unwrap() {
        assert_eq!(m["reachable"], true, "{m}");
        assert!(m["site"].as_str().unwrap().starts_with("site-"), "{m}");
    }
}

#[test]
fn unreachable_endpoints_exit_4() {
    let o = reprise("127.0.0.1:1", &["--timeout-ms", "1500", "kv", "get", "a"]);
    assert_one_line_error(&o, 4, "127.0.0.1:1");
}

#[test]
fn malformed_configs_are_refused_naming_the_problem() {
    let dir = tempfile::TempDir::new().unwrap();
    let base = format!(
        "id = 1\nsite = \"a\"\nlisten_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nsites = [\"a\", \"b\"]\n",
        dir.path().join("data").display()
    );
    let cases = [
        (base.replace("site = \"a\"", "site = \"nowhere\""), "unknown site \"nowhere\""),
        (format!("{base}[[initial_members]]\nid = 2\nsite = \"a\"\naddr = \"x:1\"\n[[initial_members]]\nid = 2\nsite = \"b\"\naddr = \"y:1\"\n"), "duplicate id 2"),
        (base.replace("sites = [\"a\", \"b\"]\n", ""), "sites"),
        (base.replace("listen_addr = \"127.0.0.1:0\"", "listen_addr = \"not an address\""), "listen_addr"),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("node.toml");
        std::fs::write(&path, &text).unwrap();
        let o = Command::new(exe())
            .args(["node", "start", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_one_line_error(&o, 2, needle);
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused config must not create the data dir"
    );
}

/// Kills, on drop, every pid it was told about: the test's processes die even when it fails.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z, after the pid's comm in parentheses) is dead but not yet reaped.
    !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
}

/// Nodes restarted at the same moment are all recorded in `cluster.json`, so `cluster
/// local down` stops every one of them (concurrent starts used to overwrite each other's
/// pid, leaving nodes running that `down` did not know of).
#[test]
fn nodes_started_together_are_all_stopped_by_down() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8 temp dir");
    reprise_offline_ok(&["cluster", "local", "up", "--dir", d]);
    let file = reprise_chaos::backend::local::ClusterFile::read(dir.path()).expect("cluster.json");
    let mut guard = KillOnDrop(file.nodes.iter().map(|n| n.pid).collect());
    reprise_offline_ok(&["cluster", "local", "down", "--dir", d]);

    // A second `up` into the stopped cluster's directory would start nodes on new ports
    // over data that names the old ones: refused before anything starts.
    let again = common::reprise_offline(&["cluster", "local", "up", "--dir", d]);
    assert!(
        !again.status.success(),
        "up over a stopped cluster must fail"
    );
    assert!(
        stderr(&again).contains("already holds a stopped local cluster"),
        "stderr: {}",
        stderr(&again)
    );
    let unchanged = reprise_chaos::backend::local::ClusterFile::read(dir.path()).expect("read");
    let pids = |f: &reprise_chaos::backend::local::ClusterFile| -> Vec<u32> {
        f.nodes.iter().map(|n| n.pid).collect()
    };
    assert_eq!(
        pids(&unchanged),
        pids(&file),
        "the refused up started nothing"
    );

    let starts: Vec<_> = file
        .nodes
        .iter()
        .map(|n| {
            Command::new(exe())
                .args(["cluster", "local", "start", "--dir", d, "--id"])
                .arg(n.id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run reprise cluster local start")
        })
        .collect();
    let mut started = Vec::new();
    for start in starts {
        let out = start.wait_with_output().expect("wait for start");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pid = text
            .rsplit("(pid ")
            .next()
            .and_then(|t| t.trim_end().trim_end_matches(')').parse::<u32>().ok());
        guard.0.extend(pid);
        assert!(out.status.success(), "start: {}", stderr(&out));
        started.push(pid.expect("start prints the pid"));
    }
    let recorded = reprise_chaos::backend::local::ClusterFile::read(dir.path()).expect("read");
    let mut recorded: Vec<u32> = recorded.nodes.iter().map(|n| n.pid).collect();
    recorded.sort();
    started.sort();
    assert_eq!(recorded, started, "every started node is recorded");

    reprise_offline_ok(&["cluster", "local", "down", "--dir", d]);
    let running: Vec<u32> = started.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        running.is_empty(),
        "nodes left running after down: {running:?}"
    );
}
