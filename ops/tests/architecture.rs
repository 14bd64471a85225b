//! Architecture invariants from ARCHITECTURE.md, checked on `cargo metadata`: storage and
//! api are leaves, node never imports ops or chaos, chaos never imports ops, storage never
//! imports tonic, api never imports openraft or imbl.

use std::collections::BTreeMap;
use std::process::Command;

fn dependencies() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn dependency_direction_holds() {
    let deps = dependencies();
    let forbidden: &[(&str, &[&str])] = &[
        (
            "reprise-storage",
            &[
                "reprise-api",
                "reprise-node",
                "reprise-ops",
                "tonic",
                "clap",
            ],
        ),
        (
            "reprise-api",
            &[
                "reprise-storage",
                "reprise-node",
                "reprise-ops",
                "openraft",
                "imbl",
            ],
        ),
        ("reprise-node", &["reprise-ops", "reprise-chaos", "clap"]),
        ("reprise-chaos", &["reprise-ops", "clap"]),
    ];
    for (krate, banned) in forbidden {
        let have = deps
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate} missing from the workspace"));
        for b in *banned {
            assert!(
                !have.iter().any(|d| d == b),
                "{krate} must not depend on {b}"
            );
        }
    }
    for (krate, needed) in [
        ("reprise-node", ["reprise-storage", "reprise-api"]),
        ("reprise-ops", ["reprise-node", "reprise-api"]),
    ] {
        for n in needed {
            assert!(
                deps[krate].iter().any(|d| d == n),
                "{krate} should depend on {n}"
            );
        }
    }
}
