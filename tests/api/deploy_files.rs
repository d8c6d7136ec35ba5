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
    assert!(text.contains(keysmith::grpc::KEYSPACE_EXTENSION));
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

/// The scanner rules, by rule name: gitleaks' `regex = '''…'''` lines
/// under each `id`, TruffleHog's detectors' regex maps, and the README's.
fn scanner_rules() -> Vec<(String, String, regex::Regex)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/scanners");
    let mut rules = Vec::new();
    let gitleaks = std::fs::read_to_string(root.join("gitleaks.toml")).expect("read");
    let mut id = None;
    for line in gitleaks.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("id = ") {
            id = Some(v.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("regex = ") {
            let pattern = v
                .strip_prefix("'''")
                .and_then(|v| v.strip_suffix("'''"))
                .expect("a literal regex string");
            let name = id.take().expect("a rule id before its regex");
            let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("gitleaks {name}: {e}"));
            rules.push(("gitleaks".to_owned(), name, re));
        }
    }
    let text = std::fs::read_to_string(root.join("trufflehog.yaml")).expect("read");
    let trufflehog: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    for detector in trufflehog["detectors"].as_sequence().expect("detectors") {
        let name = detector["name"].as_str().expect("name").to_owned();
        let regexes = detector["regex"].as_mapping().expect("regex map");
        for pattern in regexes.values() {
            let pattern = pattern.as_str().expect("regex string");
            let re =
                regex::Regex::new(pattern).unwrap_or_else(|e| panic!("trufflehog {name}: {e}"));
            rules.push(("trufflehog".to_owned(), name.clone(), re));
        }
    }
    // The README's pattern for other scanners, held to the same samples.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read");
    let line = readme
        .lines()
        .find(|l| l.starts_with(r"\b(sk|pk)_"))
        .expect("the README shows the key pattern");
    let re = regex::Regex::new(line).expect("README regex");
    rules.push(("readme".to_owned(), "keysmith-api-key".to_owned(), re));
    rules
}

/// Real secrets of every kind keysmith issues, by the rule that must find them.
fn issued_secrets() -> Vec<(&'static str, String)> {
    use keysmith::domain::{ApiKey, Environment, KeyType};
    let mut out = Vec::new();
    for t in [KeyType::Secret, KeyType::Publishable] {
        for e in [Environment::Live, Environment::Test] {
            for _ in 0..20 {
                let key = ApiKey::generate(t, e).expect("rng");
                out.push(("keysmith-api-key", key.expose_secret().to_owned()));
            }
        }
    }
    for _ in 0..20 {
        let token = keysmith::domain::admin_token::AdminToken::generate().expect("rng");
        out.push(("keysmith-admin-token", token.expose_secret().to_owned()));
        let secret = keysmith::domain::webhook::SigningSecret::generate().expect("rng");
        out.push(("keysmith-webhook-secret", secret.expose_secret().to_owned()));
    }
    out
}

/// Strings one edit away from a secret: what a rule must not flag.
fn near_misses(secret: &str) -> Vec<String> {
    let (prefix, body) = secret.split_at(secret.rfind('_').expect("prefix") + 1);
    let mut out = vec![
        format!("{prefix}{}", &body[1..]),                  // a digit short
        format!("{secret}7"),                               // a digit long
        format!("{prefix}{}-{}", &body[..10], &body[11..]), // not base62
        format!("x{secret}"),                               // inside a longer word
        format!("{}{body}", prefix.to_uppercase()),         // wrong case
        format!("{}{body}", prefix.replacen('_', "", 1)),   // a separator lost
    ];
    if prefix.contains("live") || prefix.contains("test") {
        out.push(format!(
            "{}{body}",
            prefix.replace("live", "prod").replace("test", "prod")
        ));
        out.push(format!("rk_{}", &secret[3..]));
    }
    out
}

#[test]
fn scanner_rules_match_real_secrets_only() {
    let rules = scanner_rules();
    let names = |tool: &str| -> Vec<&str> {
        let mut v: Vec<&str> = rules
            .iter()
            .filter(|(t, ..)| t == tool)
            .map(|(_, n, _)| n.as_str())
            .collect();
        v.sort_unstable();
        v
    };
    let expected = [
        "keysmith-admin-token",
        "keysmith-api-key",
        "keysmith-webhook-secret",
    ];
    assert_eq!(names("gitleaks"), expected);
    assert_eq!(names("trufflehog"), expected);
    for (kind, secret) in issued_secrets() {
        // As a leak looks: inside a line of code or config.
        let line = format!("export KEYSMITH_KEY=\"{secret}\" # prod");
        for (tool, name, re) in &rules {
            let found = re.find(&line).map(|m| m.as_str());
            if name == kind {
                assert_eq!(
                    found,
                    Some(secret.as_str()),
                    "{tool} {name} misses {secret}"
                );
            } else {
                assert_eq!(found, None, "{tool} {name} flags a {kind}");
            }
        }
        for miss in near_misses(&secret) {
            let line = format!("value: {miss} ");
            for (tool, name, re) in &rules {
                assert!(!re.is_match(&line), "{tool} {name} flags near miss {miss}");
            }
        }
    }
}

/// The regexes of a rendered template, gitleaks' or TruffleHog's.
fn template_regexes(rendered: &str) -> Vec<regex::Regex> {
    rendered
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            l.strip_prefix("regex = '''")
                .and_then(|v| v.strip_suffix("'''"))
                .or_else(|| l.strip_prefix("key: '").and_then(|v| v.strip_suffix('\'')))
        })
        .map(|p| regex::Regex::new(p).expect("template regex"))
        .collect()
}

#[test]
fn keyspace_scanner_templates_find_that_keyspaces_keys_only() {
    use keysmith::{
        cli::{GITLEAKS_TEMPLATE, TRUFFLEHOG_TEMPLATE, render_scanner_rule},
        domain::{ApiKey, Environment, KeyPrefix, KeyType},
        grpc::pb,
    };
    let ks = pb::Keyspace {
        id: "ks_acme".into(),
        prefix: "acme".into(),
        ..Default::default()
    };
    let mint = |p: Option<&str>, t, e| {
        let prefix = p.map(|p| KeyPrefix::parse(p).expect("prefix"));
        ApiKey::generate_in(prefix, t, e)
            .expect("rng")
            .expose_secret()
            .to_owned()
    };
    let bare_rules: Vec<_> = scanner_rules()
        .into_iter()
        .filter(|(_, name, _)| name == "keysmith-api-key")
        .collect();
    for template in [GITLEAKS_TEMPLATE, TRUFFLEHOG_TEMPLATE] {
        let rendered = render_scanner_rule(template, &ks);
        let res = template_regexes(&rendered);
        assert_eq!(res.len(), 1, "one regex in {rendered}");
        let re = &res[0];
        // The template's regex is the one the server documents.
        let documented =
            keysmith::domain::keyspace::scanner_regex(KeyPrefix::parse("acme").ok().as_ref());
        assert_eq!(re.as_str().replace("(?:", "("), documented);
        for t in [KeyType::Secret, KeyType::Publishable] {
            for e in [Environment::Live, Environment::Test] {
                let own = mint(Some("acme"), t, e);
                let line = format!("export KEY=\"{own}\" # prod");
                assert_eq!(re.find(&line).map(|m| m.as_str()), Some(own.as_str()));
                // Not another keyspace's, not a bare key, not a near miss.
                for other in [
                    mint(Some("acmex"), t, e),
                    mint(Some("xacme"), t, e),
                    mint(None, t, e),
                ] {
                    assert!(
                        !re.is_match(&format!("v: {other} ")),
                        "{rendered} flags {other}"
                    );
                }
                for miss in near_misses(&own) {
                    assert!(
                        !re.is_match(&format!("v: {miss} ")),
                        "flags near miss {miss}"
                    );
                }
                // The bare default rules leave prefixed keys to their own rule.
                for (tool, _, bare) in &bare_rules {
                    assert!(!bare.is_match(&line), "{tool}'s bare rule flags {own}");
                }
            }
        }
    }
}
