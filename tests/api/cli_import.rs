//! `keysmith key import` and `keysmith key export`, as an operator runs
//! them: a real file, the real binary, a real server.

use std::process::{Command, Output};

use keysmith::grpc::pb::VerifyCode;

use crate::helpers::{Backend, TestApp, spawn};

fn cli(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args(args)
        .env("KEYSMITH_ADMIN_ADDR", app.admin_channel_addr())
        .env("KEYSMITH_ADMIN_TOKEN", &app.token)
        .output()
        .expect("run keysmith")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn old_key(n: u32) -> String {
    format!("acme_live_{n:032x}")
}

fn keyspace(app: &TestApp) -> String {
    let out = cli(
        app,
        &[
            "keyspace",
            "create",
            "--name",
            "Acme",
            "--prefix",
            "acme",
            "--legacy-format",
            "name=v1,prefix=acme_live_,alphabet=hex,length=32",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(v["legacy_formats"][0]["name"], "v1", "{v}");
    v["id"].as_str().expect("id").to_owned()
}

/// A file with good lines and each kind of bad one: the good ones are
/// imported, each bad one is reported by its line number, the run exits
/// non-zero, and a second run changes nothing.
async fn cli_imports_a_file_and_reports_bad_lines(backend: Backend) {
    let app = spawn(backend).await;
    let ks = keyspace(&app);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("keys.jsonl");
    let hash = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    let mut file: Vec<u8> = Vec::new();
    let line = |file: &mut Vec<u8>, s: String| {
        file.extend(s.into_bytes());
        file.push(b'\n');
    };
    line(
        &mut file,
        format!(
            r#"{{"raw": "{}", "owner_id": "acct_1", "scopes": ["a:read"]}}"#,
            old_key(1)
        ),
    );
    line(
        &mut file,
        format!(
            r#"{{"hash": "{}", "owner_id": "acct_2", "external_id": "u2"}}"#,
            hash(&old_key(2))
        ),
    );
    line(
        &mut file,
        format!(r#"{{"hash": "{}", "owner_id": "acct_3"}}"#, "ab".repeat(31)),
    ); // 3: short hash
    line(
        &mut file,
        r#"{"raw": "sk_live_someone_elses", "owner_id": "acct_4"}"#.into(),
    ); // 4: no format
    line(
        &mut file,
        format!(r#"{{"raw": "{}", "owner_id": "acct_5"}}"#, old_key(1)),
    ); // 5: line 1 again
    line(
        &mut file,
        format!(
            r#"{{"raw": "{}", "owner_id": "acct_6", "create_time": "2999-01-01T00:00:00Z"}}"#,
            old_key(6)
        ),
    ); // 6: the future
    line(
        &mut file,
        format!(
            r#"{{"raw": "{}", "owner_id": "acct_7", "note": "{}"}}"#,
            old_key(7),
            "x".repeat(70_000)
        ),
    ); // 7: too long
    file.extend(b"{\"raw\": \"\xff\xfe\"}\n"); // 8: not UTF-8
    line(
        &mut file,
        format!(r#"{{"raw": "{}", "owner_id": "acct_9"}}"#, old_key(9)),
    );
    std::fs::write(&path, &file).expect("write");

    let dry = cli(
        &app,
        &[
            "key",
            "import",
            path.to_str().expect("path"),
            "--keyspace",
            &ks,
            "--dry-run",
        ],
    );
    assert!(stdout(&dry).contains("would import"), "{}", stdout(&dry));
    assert_eq!(
        app.verify_code(&old_key(1)).await,
        VerifyCode::NotFound,
        "a dry run writes nothing"
    );

    let out = cli(
        &app,
        &[
            "key",
            "import",
            path.to_str().expect("path"),
            "--keyspace",
            &ks,
        ],
    );
    let text = stdout(&out);
    assert!(!out.status.success(), "bad lines make the run fail: {text}");
    assert!(text.contains("imported     3"), "{text}");
    for (n, what) in [
        (3, "hash"),
        (4, "legacy formats"),
        (5, "line 1"),
        (6, "future"),
        (7, "longer than"),
        (8, "UTF-8"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("line {n}:")) && l.contains(what)),
            "line {n} ({what}): {text}"
        );
    }
    assert!(
        !text.contains("someone_elses"),
        "a raw key is never printed: {text}"
    );
    for n in [1, 2, 9] {
        assert_eq!(
            app.verify_code(&old_key(n)).await,
            VerifyCode::Valid,
            "key {n}"
        );
    }
    let again = cli(
        &app,
        &[
            "key",
            "import",
            path.to_str().expect("path"),
            "--keyspace",
            &ks,
        ],
    );
    assert!(
        stdout(&again).contains("unchanged    3"),
        "{}",
        stdout(&again)
    );

    // A CSV without an owner_id column is refused before anything is sent.
    let csv = dir.path().join("keys.csv");
    std::fs::write(&csv, format!("raw,name\n{},x\n", old_key(20))).expect("write");
    let out = cli(
        &app,
        &[
            "key",
            "import",
            csv.to_str().expect("path"),
            "--keyspace",
            &ks,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("owner_id"),
        "{out:?}"
    );
    std::fs::write(
        &csv,
        format!(
            "raw,owner_id,scopes\n{},acct_20,\"a:read b:read\"\n",
            old_key(20)
        ),
    )
    .expect("write");
    let out = cli(
        &app,
        &[
            "key",
            "import",
            csv.to_str().expect("path"),
            "--keyspace",
            &ks,
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        app.verify_scopes(&old_key(20), &["b:read"]).await.code(),
        VerifyCode::Valid
    );

    // Resumed after line 9: only what follows is read.
    std::fs::write(dir.path().join("keys.jsonl.import-state"), "9").expect("state");
    let more = format!(r#"{{"raw": "{}", "owner_id": "acct_10"}}"#, old_key(10));
    std::fs::write(&path, [file.as_slice(), more.as_bytes(), b"\n"].concat()).expect("write");
    let out = cli(
        &app,
        &[
            "key",
            "import",
            path.to_str().expect("path"),
            "--keyspace",
            &ks,
            "--resume",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("imported     1") && text.contains("errors       0"),
        "{text}"
    );
    assert_eq!(app.verify_code(&old_key(10)).await, VerifyCode::Valid);
}

/// `export` writes what `import` reads: into an empty database, every key
/// verifies as before.
async fn cli_export_then_import_restores_every_key(backend: Backend) {
    let app = spawn(backend).await;
    let native = app.create_with_scopes(&["a:read"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("backup.jsonl");
    let out = cli(
        &app,
        &["key", "export", "--output", path.to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains(&native.secret), "no secret in an export");
    let empty = spawn(backend).await;
    let out = cli(&empty, &["key", "import", path.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        empty
            .verify_scopes(&native.secret, &["a:read"])
            .await
            .code(),
        VerifyCode::Valid
    );
}

/// A file of several batches: every key goes in,
/// in file order, and a finished run leaves no resume point behind.
async fn cli_imports_a_file_of_many_batches(backend: Backend) {
    let app = spawn(backend).await;
    let ks = keyspace(&app);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("many.jsonl");
    let hash = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    let text: String = (0..3500)
        .map(|n| {
            format!(
                "{{\"hash\": \"{}\", \"owner_id\": \"acct_{}\"}}\n",
                hash(&old_key(n)),
                n % 9
            )
        })
        .collect();
    std::fs::write(&path, text).expect("write");
    let out = cli(
        &app,
        &[
            "key",
            "import",
            path.to_str().expect("path"),
            "--keyspace",
            &ks,
        ],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("imported     3500"), "{text}");
    for n in [0, 999, 1000, 2999, 3499] {
        assert_eq!(
            app.verify_code(&old_key(n)).await,
            VerifyCode::Valid,
            "key {n}"
        );
    }
    assert!(!dir.path().join("many.jsonl.import-state").exists());
}

crate::backend_tests!(
    cli_imports_a_file_of_many_batches,
    cli_imports_a_file_and_reports_bad_lines,
    cli_export_then_import_restores_every_key,
);
