//! The deployment files are judged by the schemas of the tools that read them, offline:
//! docker compose's specification (check-jsonschema's bundled copy), Kubernetes' (the
//! kubernetes-validate package) and KEDA's CRDs (@kubernetes-models/keda). They cannot run
//! here (no Docker engine, no cluster), so this is what keeps them from rotting.
//! `scripts/services.sh tools` (run by `make test`) installs the validators.

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::tools_dir;

fn deployments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("deployments")
}

fn check(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|err| {
        panic!("{what}: cannot start ({err}); run `scripts/services.sh tools`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deployments().join("k8s"))
        .expect("k8s dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "yaml")
                && path
                    .file_name()
                    .is_some_and(|name| name != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    check(
        "check-jsonschema (compose specification)",
        Command::new(tools_dir().join("venv/bin/check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(deployments().join("compose.yaml")),
    );
    for config in ["prometheus/prometheus.yml", "prometheus/compose.yml"] {
        check(
            "promtool check config",
            Command::new("promtool")
                .args(["check", "config"])
                .arg(deployments().join(config)),
        );
    }
}

#[test]
fn the_kubernetes_manifests_follow_the_kubernetes_and_keda_schemas() {
    let files = manifests();
    assert!(files.len() >= 6, "{files:?}");
    let report = check(
        "kubernetes-validate --strict",
        Command::new(tools_dir().join("venv/bin/kubernetes-validate"))
            .args(["--strict", "--no-warn"])
            .args(&files),
    );
    for kind in [
        "deployment/coinpulse-api",
        "service/coinpulse-api",
        "poddisruptionbudget/coinpulse-api",
        "deployment/coinpulse-worker",
        "job/coinpulse-migrate",
        "configmap/coinpulse-config",
        "secret/coinpulse-secrets",
    ] {
        assert!(report.contains(kind), "{kind} was not validated:\n{report}");
    }
    let keda = check(
        "KEDA schemas",
        Command::new("node")
            .env("NODE_PATH", tools_dir().join("node/node_modules"))
            .arg(deployments().join("../scripts/validate-keda.cjs"))
            .args(&files),
    );
    assert!(keda.contains("2 KEDA resources valid"), "{keda}");

    // Every resource the kustomization lists exists, and every manifest is listed.
    let kustomization =
        std::fs::read_to_string(deployments().join("k8s/kustomization.yaml")).expect("read");
    for file in &files {
        let name = file
            .file_name()
            .and_then(|name| name.to_str())
            .expect("name");
        if name == "secret.example.yaml" {
            assert!(
                !kustomization.contains(&format!("- {name}")),
                "never apply the example secret"
            );
        } else {
            assert!(
                kustomization.contains(&format!("- {name}")),
                "{name} is not in kustomization.yaml"
            );
        }
    }
}
