//! The metrics endpoint: `GET /metrics` in the Prometheus text format on `metrics_addr`
//! (off unless configured). Raft position and role, and the log archive's lag, so that an
//! alert can fire when the archive falls behind (the RPO a restore would have).
//! A deliberately small HTTP/1.1 server: one request per connection, bounded request
//! size, nothing but GET /metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::NodeState;

/// Longest request head accepted.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// A client that does not send its request within this is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint reports, read from the node at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub node: u64,
    pub site: String,
    pub term: u64,
    pub is_leader: bool,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub archive_enabled: bool,
    pub archived_index: u64,
    /// On the leader: seconds since the archive last caught up (None elsewhere, or never).
    pub archive_behind_seconds: Option<f64>,
    pub archive_failing: bool,
}

/// Reads a sample from the running node.
pub fn sample(state: &NodeState) -> Sample {
    let m = state.raft.metrics().borrow().clone();
    let status = crate::archiver::lock(&state.archive_status);
    let is_leader = m.state == ServerState::Leader;
    Sample {
        node: state.id,
        site: state.member.site.clone(),
        term: m.current_term,
        is_leader,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        archive_enabled: state.archive_enabled,
        archived_index: state.archived.load(Ordering::Acquire),
        archive_behind_seconds: is_leader
            .then(|| status.caught_up_at.map(|t| t.elapsed().as_secs_f64()))
            .flatten(),
        archive_failing: !status.last_error.is_empty(),
    }
}

/// The Prometheus text exposition of `s`.
pub fn render(s: &Sample) -> String {
    let labels = format!("node=\"{}\",site=\"{}\"", s.node, s.site.replace('"', "'"));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    };
    gauge("reprise_term", "Current Raft term.", s.term.to_string());
    gauge(
        "reprise_is_leader",
        "1 if this node is the leader.",
        u8::from(s.is_leader).to_string(),
    );
    gauge(
        "reprise_last_log_index",
        "Last log index in this node's log.",
        s.last_log_index.to_string(),
    );
    gauge(
        "reprise_applied_index",
        "Last log index applied to the state machine.",
        s.applied_index.to_string(),
    );
    if s.archive_enabled {
        gauge(
            "reprise_archive_archived_index",
            "Highest log index stored in the log archive on every site.",
            s.archived_index.to_string(),
        );
        gauge(
            "reprise_archive_lag_entries",
            "Applied entries not yet in the log archive.",
            s.applied_index.saturating_sub(s.archived_index).to_string(),
        );
        gauge(
            "reprise_archive_failing",
            "1 if the last archive attempt failed.",
            u8::from(s.archive_failing).to_string(),
        );
        if let Some(behind) = s.archive_behind_seconds {
            gauge(
                "reprise_archive_behind_seconds",
                "On the leader: seconds since the archive last caught up.",
                format!("{behind:.3}"),
            );
        }
    }
    out
}

/// Serves `render()` on `listener` until aborted.
pub fn spawn(
    listener: TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> JoinHandle<()> {
    let render = Arc::new(render);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                // Out of file descriptors, say: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut socket))
                    .await
                {
                    Ok(Some(head)) if head.starts_with("GET /metrics ") => {
                        response("200 OK", "text/plain; version=0.0.4", &render())
                    }
                    Ok(Some(_)) => response("404 Not Found", "text/plain", "only GET /metrics\n"),
                    _ => return,
                };
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    })
}

/// The request head (up to the blank line), or None when it is too long or cut off.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > REQUEST_BYTES_MAX {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_lag_is_exposed_only_when_the_archive_runs() {
        let mut s = Sample {
            node: 2,
            site: "site-1".into(),
            term: 3,
            is_leader: true,
            last_log_index: 120,
            applied_index: 118,
            archive_enabled: true,
            archived_index: 100,
            archive_behind_seconds: Some(1.5),
            archive_failing: false,
        };
        let text = render(&s);
        assert!(text.contains("reprise_archive_lag_entries{node=\"2\",site=\"site-1\"} 18\n"));
        assert!(text.contains("reprise_archive_behind_seconds{node=\"2\",site=\"site-1\"} 1.500\n"));
        assert!(text.contains("reprise_is_leader{node=\"2\",site=\"site-1\"} 1\n"));
        s.archive_enabled = false;
        assert!(!render(&s).contains("archive"));
    }

    #[tokio::test]
    async fn serves_get_metrics_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(listener, || "reprise_term 7\n".to_string());
        let ask = |request: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).await.unwrap();
            reply
        };
        let ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nreprise_term 7\n"), "{ok}");
        let other = ask("GET / HTTP/1.1\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        server.abort();
    }
}
