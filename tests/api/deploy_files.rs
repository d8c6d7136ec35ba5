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
    // The path keysmith judges is the one the upstream gets.
    let hcm =
        &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
    // Deny when keysmith cannot answer; ext_authz runs before the router.
    let filters = hcm["http_filters"].as_sequence().expect("http filters");
    assert_eq!(filters[0]["name"], "envoy.filters.http.ext_authz");
    assert_eq!(filters[0]["typed_config"]["failure_mode_allow"], false);
    assert_eq!(
        filters.last().expect("router")["name"],
        "envoy.filters.http.router"
    );
}

#[test]
fn scanner_rules_match_real_secrets_only() {
    // The README's regex, as the scanner files carry it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/scanners");
    let gitleaks = std::fs::read_to_string(root.join("gitleaks.toml")).expect("read");
    let trufflehog = std::fs::read_to_string(root.join("trufflehog.yaml")).expect("read");
    assert!(gitleaks.contains(r"\b(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b"));
    assert!(trufflehog.contains(r"\b(?:sk|pk)_(?:live|test)_[0-9A-Za-z]{49}\b"));
    // 49 = 43 body digits + 6 checksum digits, for every kind of key.
    for (t, e) in [("sk", "live"), ("pk", "test")] {
        let key_type = if t == "sk" {
            keysmith::domain::KeyType::Secret
        } else {
            keysmith::domain::KeyType::Publishable
        };
        let env = if e == "live" {
            keysmith::domain::Environment::Live
        } else {
            keysmith::domain::Environment::Test
        };
        let key = keysmith::domain::ApiKey::generate(key_type, env).expect("rng");
        let secret = key.expose_secret();
        assert_eq!(secret.len() - format!("{t}_{e}_").len(), 49);
        assert!(secret[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
