//! Real S3 servers for the S3 backup-target tests: s3s-fs (a filesystem-backed S3
//! implementation that checks request signatures) served in-process on 127.0.0.1, one
//! server per site so that a site fire can take its server down and wipe its disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

pub const ACCESS_KEY: &str = "reprise-test-access";
pub const SECRET_KEY: &str = "reprise-test-secret-key";
/// The environment variable the targets name for the secret (set for the nodes and for
/// every `reprise` command the tests run).
pub const SECRET_ENV: &str = "REPRISE_TEST_S3_SECRET";
/// A variable holding a wrong secret, for the refusal test.
pub const WRONG_SECRET_ENV: &str = "REPRISE_TEST_S3_WRONG_SECRET";

/// The environment every process using the test buckets needs.
pub fn env() -> Vec<(String, String)> {
    vec![
        (SECRET_ENV.into(), SECRET_KEY.into()),
        (WRONG_SECRET_ENV.into(), "not-the-secret".into()),
    ]
}
/// Key prefix every site's target uses.
pub const PREFIX: &str = "pit";

/// One site's S3 server and its single bucket (named after the site).
pub struct S3Site {
    pub site: String,
    pub root: PathBuf,
    pub endpoint: String,
    server: JoinHandle<()>,
    /// Open connections, cut when the site burns.
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl S3Site {
    /// Starts a server for `site` storing under `root/` (bucket directory `root/site`).
    pub async fn start(site: &str, root: &Path) -> S3Site {
        std::fs::create_dir_all(root.join(site)).expect("create bucket directory");
        let fs = FileSystem::new(root).expect("s3s-fs root");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind s3");
        let addr: SocketAddr = listener.local_addr().expect("s3 address");
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = connections.clone();
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                tracked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task.abort_handle());
            }
        });
        S3Site {
            site: site.to_string(),
            root: root.to_path_buf(),
            endpoint: format!("http://{addr}"),
            server,
            connections,
        }
    }

    /// The directory holding `<backup_id>/` directories (the bucket under the prefix).
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join(&self.site).join(PREFIX)
    }

    /// The site burns: the server stops accepting connections and its disk is wiped.
    pub fn burn(&self) {
        self.server.abort();
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.abort();
        }
        std::fs::remove_dir_all(&self.root).expect("wipe the site's S3 disk");
    }

    /// The targets-file section of this site.
    pub fn targets_toml(&self) -> String {
        format!(
            "[[site]]\nname = \"{site}\"\n[[site.target]]\nkind = \"s3\"\nendpoint = \"{ep}\"\nbucket = \"{site}\"\nprefix = \"{PREFIX}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_env = \"{SECRET_ENV}\"\n",
            site = self.site,
            ep = self.endpoint
        )
    }
}

impl Drop for S3Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}
