//! The files of `deploy/`: the Kubernetes sidecar manifest, the systemd unit and the
//! Containerfile say what the README promises (probes on the listen port, tokens as mounted
//! secrets, hardening, notify and watchdog, a locked build run unprivileged).

use std::path::Path;

use serde_json::{Value as Json, json};

fn deploy(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn kubernetes_sidecar_probes_the_daemon_on_its_listen_port() {
    let docs: Vec<Json> =
        serde_saphyr::from_multiple(&deploy("kubernetes/sidecar.yaml")).expect("valid YAML");
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod")
        .expect("a Pod in the manifest");
    let spec = &pod["spec"];
    assert!(
        spec["terminationGracePeriodSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 30)
    );
    let containers = spec["containers"].as_array().expect("containers");
    assert!(
        containers.len() >= 2,
        "an app container and the mockops sidecar"
    );
    let mockops = containers
        .iter()
        .find(|c| c["name"] == "mockops")
        .expect("a mockops container");

    let args: Vec<&str> = mockops["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert_eq!(args.first(), Some(&"daemon"));
    let listen = args
        .iter()
        .position(|a| *a == "--listen")
        .and_then(|i| args.get(i + 1))
        .expect("--listen ADDR:PORT");
    let port: u64 = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("a port");
    let port_name = mockops["ports"][0]["name"].as_str().expect("a named port");
    assert_eq!(mockops["ports"][0]["containerPort"].as_u64(), Some(port));

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &mockops[probe]["httpGet"];
        assert_eq!(get["path"], json!(path), "{probe}");
        let probe_port = &get["port"];
        assert!(
            probe_port.as_u64() == Some(port) || probe_port.as_str() == Some(port_name),
            "{probe} port {probe_port}"
        );
    }

    // The API is not open: reads and writes need tokens, mounted so the daemon accepts them
    // (not writable by the group, nothing for others).
    assert!(!args.contains(&"--anonymous-read"), "{args:?}");
    for flag in ["--api-token-file", "--api-read-token-file"] {
        assert!(args.contains(&flag), "{flag} in {args:?}");
    }
    for v in spec["volumes"].as_array().expect("volumes") {
        if let Some(mode) = v["secret"]["defaultMode"].as_u64() {
            assert_eq!(mode & 0o027, 0, "{v}");
        }
    }

    let security = &mockops["securityContext"];
    assert_eq!(security["runAsNonRoot"], json!(true));
    assert_eq!(security["readOnlyRootFilesystem"], json!(true));
    assert_eq!(security["allowPrivilegeEscalation"], json!(false));
    assert_eq!(mockops["resources"]["limits"]["memory"], json!("128Mi"));

    let mounts: Vec<&str> = mockops["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    let state_dir = args
        .iter()
        .position(|a| *a == "--state-dir")
        .and_then(|i| args.get(i + 1))
        .expect("--state-dir");
    assert!(
        mounts.contains(state_dir),
        "{state_dir} is mounted: {mounts:?}"
    );
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"].is_string()),
        "secrets come from a Secret as files"
    );
}

#[test]
fn systemd_unit_is_hardened_and_notifies() {
    let unit = deploy("systemd/mockops.service");
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "NotifyAccess=main",
        "Restart=on-failure",
        "StateDirectory=mockops",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "missing `{line}` in the unit"
        );
    }
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(exec.contains("/usr/local/bin/mockops daemon"), "{exec}");
    assert!(exec.contains("--state-dir /var/lib/mockops"), "{exec}");
    assert!(
        unit.contains("LoadCredential="),
        "secrets come as credentials"
    );

    // Where systemd is installed, it must accept the unit (with a program that exists).
    if which("systemd-analyze") {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("mockops.service");
        std::fs::write(&copy, unit.replace("/usr/local/bin/mockops", "/bin/true")).expect("write");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn containerfile_builds_locked_and_runs_unprivileged() {
    let file = deploy("Containerfile");
    assert!(file.contains("FROM rust:1.95-bookworm AS build"));
    assert!(file.contains("cargo build --release --locked"));
    assert!(file.contains("FROM debian:bookworm-slim"));
    assert!(
        file.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
    assert!(file.contains(r#"ENTRYPOINT ["mockops"]"#));
    assert!(file.lines().any(|l| l.starts_with("EXPOSE 8480")));
}
