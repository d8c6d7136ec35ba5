//! Every YAML and JSON file under deploy/ parses.

use std::path::Path;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

#[test]
fn every_deploy_file_parses() {
    let mut found = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &mut found,
    );
    assert!(!found.is_empty(), "deploy/ has files");
    for path in found {
        let text = std::fs::read_to_string(&path).expect("read");
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            // A file may hold several documents (Kubernetes manifests do).
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc);
                value.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}

#[test]
fn envoy_config_points_ext_authz_at_keysmith() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/envoy/envoy.yaml");
    let text = std::fs::read_to_string(path).expect("read");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let clusters = v["static_resources"]["clusters"]
        .as_sequence()
        .expect("clusters");
    assert!(clusters.iter().any(|c| c["name"] == "keysmith"));
    assert!(text.contains(keysmith::grpc::SCOPES_EXTENSION));
}
