//! `keysmith keyspace create|get|list|update|pattern`.

use std::time::Duration;

use clap::Subcommand;

use super::{Client, Connection, output::Out, parse_duration, pb_duration};
use crate::grpc::pb;

/// The gitleaks rule template for a keyspace (`deploy/scanners/`).
pub const GITLEAKS_TEMPLATE: &str = include_str!("../../deploy/scanners/keyspace-gitleaks.toml");
/// The TruffleHog custom detector template for a keyspace.
pub const TRUFFLEHOG_TEMPLATE: &str =
    include_str!("../../deploy/scanners/keyspace-trufflehog.yaml");

#[derive(Subcommand, Debug)]
pub enum KeyspaceCommand {
    /// Create a keyspace: its keys look like `<prefix>_sk_live_…`.
    Create {
        #[arg(long)]
        name: String,
        /// 2 to 16 of a-z and 0-9.
        #[arg(long)]
        prefix: String,
        #[command(flatten)]
        defaults: DefaultsArgs,
        /// The declared scope catalogue (repeat); keys' scopes must be
        /// drawn from it.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        leak: LeakArgs,
        /// A key format made before keysmith that Verify also accepts here
        /// (repeat): `name=v1,prefix=acme_,alphabet=hex,length=32` (or
        /// `length=32-40`; `alphabet=set,characters=…`; `retire=<RFC 3339>`).
        #[arg(long = "legacy-format", value_parser = legacy_format)]
        legacy_formats: Vec<pb::LegacyFormat>,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Change a keyspace's name, prefix (final once it holds keys) or leak
    /// response.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        leak: LeakArgs,
        /// Replaces the keyspace's legacy formats (repeat; as on create).
        #[arg(long = "legacy-format", value_parser = legacy_format)]
        legacy_formats: Vec<pb::LegacyFormat>,
        /// Drops every legacy format.
        #[arg(long, conflicts_with = "legacy_formats")]
        no_legacy_formats: bool,
    },
    /// Print secret-scanner rules that find this keyspace's keys.
    Pattern {
        id: String,
        /// `gitleaks` (TOML), `trufflehog` (custom detector YAML), or `all`.
        #[arg(long, default_value = "all")]
        format: String,
    },
}

/// `name=…,prefix=…,alphabet=…,length=N[-M][,characters=…][,retire=…]`.
fn legacy_format(spec: &str) -> Result<pb::LegacyFormat, String> {
    let mut f = pb::LegacyFormat::default();
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected key=value"))?;
        match k {
            "name" => f.name = v.to_owned(),
            "prefix" => f.prefix = v.to_owned(),
            "characters" => f.characters = v.to_owned(),
            "alphabet" => {
                f.alphabet = match v {
                    "hex" => pb::LegacyAlphabet::Hex,
                    "base62" => pb::LegacyAlphabet::Base62,
                    "base64url" => pb::LegacyAlphabet::Base64url,
                    "set" => pb::LegacyAlphabet::Set,
                    _ => {
                        return Err(format!(
                            "alphabet: {v:?} is not hex, base62, base64url or set"
                        ));
                    }
                }
                .into();
            }
            "length" => {
                let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                let n = |s: &str| s.parse::<u32>().map_err(|_| format!("length: {v:?}"));
                (f.min_length, f.max_length) = (n(lo)?, n(hi)?);
            }
            "retire" => {
                let t = humantime::parse_rfc3339_weak(v).map_err(|e| format!("retire: {e}"))?;
                let d = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| "retire: before 1970".to_owned())?;
                f.retire_time = Some(crate::grpc::wkt::Timestamp {
                    seconds: d.as_secs() as i64,
                    nanos: 0,
                });
            }
            _ => {
                return Err(format!(
                    "{k:?}: not name, prefix, alphabet, characters, length or retire"
                ));
            }
        }
    }
    Ok(f)
}

/// What happens to a key of the keyspace found leaked; each unset flag
/// keeps what the keyspace has (the defaults, for a new one).
#[derive(clap::Args, Debug)]
pub struct LeakArgs {
    /// For live secret keys: `notify`, `disable` or `revoke` (the default).
    #[arg(long = "leak-live", value_parser = ["notify", "disable", "revoke"])]
    live: Option<String>,
    /// For test secret keys: `notify` (the default), `disable` or `revoke`.
    #[arg(long = "leak-test", value_parser = ["notify", "disable", "revoke"])]
    test: Option<String>,
    /// For publishable keys: `notify` (the default), `disable` or `revoke`.
    #[arg(long = "leak-publishable", value_parser = ["notify", "disable", "revoke"])]
    publishable: Option<String>,
    /// `on` (the default) or `off`: whether anyone presenting a key may
    /// revoke it on the public listener.
    #[arg(long = "public-revocation", value_parser = ["on", "off"])]
    public_revocation: Option<String>,
}

impl LeakArgs {
    fn is_set(&self) -> bool {
        self.live.is_some()
            || self.test.is_some()
            || self.publishable.is_some()
            || self.public_revocation.is_some()
    }

    /// `held` with the flags applied.
    fn apply(self, held: Option<pb::LeakResponse>) -> pb::LeakResponse {
        let policy = |s: &str| match s {
            "notify" => pb::LeakPolicy::Notify,
            "disable" => pb::LeakPolicy::Disable,
            _ => pb::LeakPolicy::Revoke,
        } as i32;
        let mut r = held.unwrap_or_default();
        if let Some(p) = &self.live {
            r.live = policy(p);
        }
        if let Some(p) = &self.test {
            r.test = policy(p);
        }
        if let Some(p) = &self.publishable {
            r.publishable = policy(p);
        }
        if let Some(p) = &self.public_revocation {
            r.public_revocation_off = p == "off";
        }
        r
    }
}

/// Defaults for the keys created in a keyspace.
#[derive(clap::Args, Debug)]
pub struct DefaultsArgs {
    /// `live` or `test`.
    #[arg(long = "default-env")]
    default_env: Option<String>,
    /// Repeat for several.
    #[arg(long = "default-scope")]
    default_scopes: Vec<String>,
    /// Expiry of keys that ask for none, e.g. `90d`.
    #[arg(long = "default-ttl", value_parser = parse_duration)]
    default_ttl: Option<Duration>,
    /// The longest life a key may get, e.g. `365d`.
    #[arg(long, value_parser = parse_duration)]
    max_lifetime: Option<Duration>,
    /// RotateKey's grace period when none is asked, e.g. `24h`.
    #[arg(long = "default-grace", value_parser = parse_duration)]
    default_grace: Option<Duration>,
}

impl DefaultsArgs {
    fn into_pb(self) -> Result<pb::KeyspaceDefaults, String> {
        let environment = match self.default_env.as_deref() {
            None => pb::Environment::Unspecified,
            Some("live") => pb::Environment::Live,
            Some("test") => pb::Environment::Test,
            Some(other) => return Err(format!("--default-env must be live or test, not {other}")),
        };
        Ok(pb::KeyspaceDefaults {
            environment: environment.into(),
            scopes: self.default_scopes,
            ttl: self.default_ttl.map(pb_duration),
            max_lifetime: self.max_lifetime.map(pb_duration),
            grace_period: self.default_grace.map(pb_duration),
            ..Default::default()
        })
    }
}

/// A template filled in for `ks`: its prefix (none for the default
/// keyspace, whose keys are bare) and id. The template's own header, which
/// explains the placeholders, is left out.
pub fn render(template: &str, ks: &pb::Keyspace) -> String {
    let body: String = template
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let (under, dash) = match ks.prefix.as_str() {
        "" => (String::new(), String::new()),
        p => (format!("{p}_"), format!("-{p}")),
    };
    body.replace("{prefix}_", &under)
        .replace("-{prefix}", &dash)
        .replace("{keyspace_id}", &ks.id)
}

fn json(ks: &pb::Keyspace) -> serde_json::Value {
    serde_json::json!({
        "id": ks.id,
        "name": ks.name,
        "prefix": ks.prefix,
        "scopes": ks.scopes,
        "scanner_regex": ks.scanner_regex,
        "leak_response": ks.leak_response.as_ref().map(|l| serde_json::json!({
            "live": l.live().as_str_name(),
            "test": l.test().as_str_name(),
            "publishable": l.publishable().as_str_name(),
            "public_revocation": !l.public_revocation_off,
        })),
        "legacy_formats": ks.legacy_formats.iter().map(|f| serde_json::json!({
            "name": f.name,
            "prefix": f.prefix,
            "alphabet": f.alphabet().as_str_name(),
            "characters": f.characters,
            "min_length": f.min_length,
            "max_length": f.max_length,
            "retire_time": f.retire_time.map(|t| t.seconds),
        })).collect::<Vec<_>>(),
    })
}

fn print(out: &Out, keyspaces: &[pb::Keyspace], next_page_token: Option<&str>) {
    let rows = keyspaces
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.name.clone(),
                k.prefix.clone(),
                k.scanner_regex.clone(),
            ]
        })
        .collect();
    let json = match next_page_token {
        None => json(&keyspaces[0]),
        Some(t) => serde_json::json!({
            "keyspaces": keyspaces.iter().map(json).collect::<Vec<_>>(),
            "next_page_token": t,
        }),
    };
    out.list(&["ID", "NAME", "PREFIX", "SCANNER REGEX"], rows, json);
}

pub async fn run_keyspace(conn: &Connection, cmd: KeyspaceCommand) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    let ks = match cmd {
        KeyspaceCommand::Create {
            name,
            prefix,
            defaults,
            scopes,
            leak,
            legacy_formats,
        } => {
            let msg = pb::CreateKeyspaceRequest {
                name,
                prefix,
                defaults: Some(defaults.into_pb()?),
                scopes,
                leak_response: leak.is_set().then(|| leak.apply(None)),
                legacy_formats,
            };
            c.inner.create_keyspace(c.req(msg)?).await
        }
        KeyspaceCommand::Get { id } => {
            c.inner
                .get_keyspace(c.req(pb::GetKeyspaceRequest { id })?)
                .await
        }
        KeyspaceCommand::List {
            page_size,
            page_token,
        } => {
            let msg = pb::ListKeyspacesRequest {
                page_size,
                page_token,
            };
            let r = c
                .inner
                .list_keyspaces(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            print(&out, &r.keyspaces, Some(&r.next_page_token));
            return Ok(());
        }
        KeyspaceCommand::Update {
            id,
            name,
            prefix,
            leak,
            legacy_formats,
            no_legacy_formats,
        } => {
            let mut paths = Vec::new();
            if !legacy_formats.is_empty() || no_legacy_formats {
                paths.push("legacy_formats".to_owned());
            }
            if name.is_some() {
                paths.push("name".to_owned());
            }
            if prefix.is_some() {
                paths.push("prefix".to_owned());
            }
            // The leak response is replaced whole: the flags apply to what
            // the keyspace holds now.
            let leak_response = if leak.is_set() {
                paths.push("leak_response".to_owned());
                let held = c
                    .inner
                    .get_keyspace(c.req(pb::GetKeyspaceRequest { id: id.clone() })?)
                    .await
                    .map_err(|s| c.fail(s))?
                    .into_inner()
                    .leak_response;
                Some(leak.apply(held))
            } else {
                None
            };
            if paths.is_empty() {
                return Err(
                    "nothing to update: pass --name, --prefix, a --leak-… or --legacy-format flag"
                        .into(),
                );
            }
            let msg = pb::UpdateKeyspaceRequest {
                keyspace: Some(pb::Keyspace {
                    id,
                    name: name.unwrap_or_default(),
                    prefix: prefix.unwrap_or_default(),
                    leak_response,
                    legacy_formats,
                    ..Default::default()
                }),
                update_mask: Some(crate::grpc::wkt::FieldMask { paths }),
            };
            c.inner.update_keyspace(c.req(msg)?).await
        }
        KeyspaceCommand::Pattern { id, format } => {
            let templates: &[&str] = match format.as_str() {
                "gitleaks" => &[GITLEAKS_TEMPLATE],
                "trufflehog" => &[TRUFFLEHOG_TEMPLATE],
                "all" => &[GITLEAKS_TEMPLATE, TRUFFLEHOG_TEMPLATE],
                other => {
                    return Err(format!(
                        "--format must be gitleaks, trufflehog or all, not {other}"
                    ));
                }
            };
            let ks = c
                .inner
                .get_keyspace(c.req(pb::GetKeyspaceRequest { id })?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            for (i, t) in templates.iter().enumerate() {
                if templates.len() > 1 {
                    let tool = ["gitleaks (TOML)", "TruffleHog (YAML)"][i];
                    println!("{}# {tool}", if i > 0 { "\n" } else { "" });
                }
                print!("{}", render(t, &ks));
            }
            return Ok(());
        }
    };
    let ks = ks.map_err(|s| c.fail(s))?.into_inner();
    print(&out, std::slice::from_ref(&ks), None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: KeyspaceCommand,
    }

    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let parsed = Cli::try_parse_from([
            "keyspace",
            "create",
            "--name",
            "n",
            "--prefix",
            "acme",
            "--scope",
            "a:read",
            "--default-scope",
            "a:read",
            "--max-lifetime",
            "30d",
        ]);
        assert!(parsed.is_ok());
    }

    #[test]
    fn templates_fill_in_a_prefix_or_the_bare_form() {
        let mut ks = pb::Keyspace {
            id: "ks_abc".into(),
            prefix: "acme".into(),
            ..Default::default()
        };
        let g = render(GITLEAKS_TEMPLATE, &ks);
        assert!(g.starts_with("[[rules]]"), "{g}");
        assert!(g.contains(r"regex = '''\bacme_(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b'''"));
        assert!(g.contains(r#"id = "keysmith-acme-api-key""#));
        assert!(g.contains("ks_abc"));
        assert!(
            !g.replace("{49}", "").contains('{'),
            "a placeholder is left: {g}"
        );
        ks.prefix.clear();
        let t = render(TRUFFLEHOG_TEMPLATE, &ks);
        assert!(
            t.contains(r"key: '\b(?:sk|pk)_(?:live|test)_[0-9A-Za-z]{49}\b'"),
            "{t}"
        );
        assert!(t.contains("name: keysmith-api-key"));
    }
}
