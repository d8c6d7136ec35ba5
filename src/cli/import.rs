//! `keysmith key import FILE` and `keysmith key export`: the file format
//! (JSONL, or CSV with a header) and its trip through ImportKeys in
//! batches, with progress, a summary, `--dry-run` and `--resume`.
//!
//! A line is read with a bound on its length: a longer one is skipped to
//! its end and reported, never held whole. A raw key is hashed locally only
//! to find duplicates in the file; it is sent once, in its batch, and never
//! printed.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::Client;
use crate::{
    domain::{KeyHash, Restrictions, legacy::hash_whole},
    grpc::{pb, restrictions_from_pb, restrictions_to_pb},
};

/// Longest line a file may have.
pub const MAX_LINE: usize = 64 * 1024;
/// Keys a batch carries (ImportKeys takes at most 1,000).
const BATCH: usize = 1000;

/// How the file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Jsonl,
    Csv,
}

/// `keysmith key import`'s options.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The file: JSONL (one key a line) or CSV with a header row.
    pub file: PathBuf,
    /// The keyspace every key goes into; default: the default keyspace.
    #[arg(long, default_value = "")]
    pub keyspace: String,
    /// Default: from the file's extension (`.csv`, else JSONL).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Check every line and report what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a stored key's record when the file's differs.
    #[arg(long)]
    pub overwrite: bool,
    /// Go on after the last batch an interrupted run committed.
    #[arg(long)]
    pub resume: bool,
}

/// One line's key, ready to send, and where it came from.
struct Line {
    number: u64,
    key: pb::ImportedKey,
}

#[derive(Default)]
struct Summary {
    created: u64,
    unchanged: u64,
    overwritten: u64,
    conflicts: Vec<(u64, Vec<String>)>,
    errors: Vec<(u64, String)>,
}

/// Where a run records the last line whose batch committed.
fn state_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".import-state");
    PathBuf::from(name)
}

/// Reads lines of at most [`MAX_LINE`] bytes. A longer line is read to its
/// end and dropped: `Err` with its number.
struct Lines<R> {
    inner: R,
    number: u64,
    read: u64,
}

enum Next {
    Line(u64, String),
    Bad(u64, String),
    End,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> std::io::Result<Next> {
        let mut buf = Vec::new();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, done) = match memchr(chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !too_long && buf.len() + part.len() <= MAX_LINE {
                buf.extend_from_slice(part);
            } else {
                too_long = true;
                buf = Vec::new();
            }
            let used = done.unwrap_or(chunk.len());
            self.inner.consume(used);
            self.read += used as u64;
            if done.is_some() {
                break;
            }
        }
        if !any {
            return Ok(Next::End);
        }
        self.number += 1;
        let n = self.number;
        if too_long {
            return Ok(Next::Bad(n, format!("longer than {MAX_LINE} bytes")));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        match String::from_utf8(buf) {
            Ok(s) => Ok(Next::Line(n, s)),
            Err(_) => Ok(Next::Bad(n, "not UTF-8".into())),
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn time(field: &str, v: &Value) -> Result<Option<crate::grpc::wkt::Timestamp>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => {
            let t = humantime::parse_rfc3339_weak(s)
                .map_err(|e| format!("{field}: not an RFC 3339 time: {e}"))?;
            let d = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|_| format!("{field}: before 1970"))?;
            Ok(Some(crate::grpc::wkt::Timestamp {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }))
        }
        _ => Err(format!("{field}: must be an RFC 3339 time")),
    }
}

fn rfc3339(t: &Option<crate::grpc::wkt::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| {
        let at = SystemTime::UNIX_EPOCH
            + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
        Value::String(humantime::format_rfc3339_millis(at).to_string())
    })
}

fn text(obj: &Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field}: must be text")),
    }
}

fn list(obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(format!("{field}: must be a list of text")),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(_) => Err(format!("{field}: must be a list of text")),
    }
}

const FIELDS: [&str; 18] = [
    "hash",
    "raw",
    "id",
    "owner_id",
    "name",
    "type",
    "environment",
    "scopes",
    "roles",
    "metadata",
    "restrictions",
    "expire_time",
    "create_time",
    "last_used_time",
    "external_id",
    "hint",
    "revoke_time",
    "disable_time",
];

/// A key from one JSON object of the file's format. `keyspace` (which an
/// export writes) is ignored: `--keyspace` says where keys go.
fn key_of(obj: &Map<String, Value>) -> Result<pb::ImportedKey, String> {
    if let Some(f) = obj
        .keys()
        .find(|k| !FIELDS.contains(&k.as_str()) && *k != "keyspace")
    {
        return Err(format!("{f}: not a field of the import format"));
    }
    let (hash, raw) = (text(obj, "hash")?, Zeroizing::new(text(obj, "raw")?));
    let secret = match (hash.is_empty(), raw.is_empty()) {
        (false, true) => pb::imported_key::Secret::Hash(hash),
        (true, false) => pb::imported_key::Secret::Raw(raw.to_string()),
        (true, true) => return Err("hash: set hash or raw".into()),
        (false, false) => return Err("raw: set hash or raw, not both".into()),
    };
    let key_type = match text(obj, "type")?.as_str() {
        "" | "secret" => pb::KeyType::Secret,
        "publishable" => pb::KeyType::Publishable,
        other => return Err(format!("type: {other:?} is neither secret nor publishable")),
    };
    let environment = match text(obj, "environment")?.as_str() {
        "" => pb::Environment::Unspecified,
        "live" => pb::Environment::Live,
        "test" => pb::Environment::Test,
        other => return Err(format!("environment: {other:?} is neither live nor test")),
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<Option<_>>()
            .ok_or("metadata: values must be text")?,
        Some(Value::String(s)) if s.is_empty() => Default::default(),
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|_| "metadata: must be a JSON object of text values")?
        }
        Some(_) => return Err("metadata: must be an object".into()),
    };
    let restrictions = match obj.get("restrictions") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let r = Restrictions::from_json(v).map_err(|e| format!("restrictions: {e}"))?;
            restrictions_to_pb(&r)
        }
    };
    let field = |f: &str| obj.get(f).unwrap_or(&Value::Null);
    Ok(pb::ImportedKey {
        secret: Some(secret),
        id: text(obj, "id")?,
        owner_id: text(obj, "owner_id")?,
        name: text(obj, "name")?,
        r#type: key_type.into(),
        environment: environment.into(),
        scopes: list(obj, "scopes")?,
        roles: list(obj, "roles")?,
        metadata,
        restrictions,
        expire_time: time("expire_time", field("expire_time"))?,
        create_time: time("create_time", field("create_time"))?,
        last_used_time: time("last_used_time", field("last_used_time"))?,
        external_id: text(obj, "external_id")?,
        hint: text(obj, "hint")?,
        revoke_time: time("revoke_time", field("revoke_time"))?,
        disable_time: time("disable_time", field("disable_time"))?,
    })
}

/// The hash a key is stored under, to find duplicates in the file: the
/// given hash decoded, or SHA-256 of the raw value.
fn identity(k: &pb::ImportedKey) -> Option<[u8; 32]> {
    let hash = match &k.secret {
        Some(pb::imported_key::Secret::Raw(r)) => hash_whole(r),
        Some(pb::imported_key::Secret::Hash(h)) => KeyHash::parse_text(h)?,
        None => return None,
    };
    Some(*hash.as_bytes())
}

/// Turns lines into keys, by the file's format.
enum Parser {
    Jsonl,
    Csv { header: Vec<String> },
}

impl Parser {
    fn parse(&mut self, line: &str) -> Result<Option<pb::ImportedKey>, String> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        match self {
            Self::Jsonl => {
                let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
                let obj = v.as_object().ok_or("not a JSON object")?;
                key_of(obj).map(Some)
            }
            Self::Csv { header } if header.is_empty() => {
                let cells = csv_cells(line)?;
                // Named by position, never by content: a file without a
                // header has a key where its header should be.
                if let Some(c) = cells.iter().position(|c| !FIELDS.contains(&c.as_str())) {
                    return Err(format!(
                        "header: column {} is not a column of the import format (the first \
                         line must be a header)",
                        c + 1
                    ));
                }
                if !cells.iter().any(|c| c == "hash" || c == "raw") {
                    return Err("header: needs a hash or a raw column".into());
                }
                if !cells.iter().any(|c| c == "owner_id") {
                    return Err("header: needs an owner_id column".into());
                }
                *header = cells;
                Ok(None)
            }
            Self::Csv { header } => {
                let cells = csv_cells(line)?;
                if cells.len() != header.len() {
                    return Err(format!(
                        "{} fields, but the header has {} columns",
                        cells.len(),
                        header.len()
                    ));
                }
                let obj: Map<String, Value> = header
                    .iter()
                    .zip(cells)
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), Value::String(v)))
                    .collect();
                key_of(&obj).map(Some)
            }
        }
    }
}

/// One CSV record's cells (RFC 4180 quoting), on one line.
fn csv_cells(line: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Ok(vec![]),
        Err(e) => Err(format!("not CSV: {e}")),
    }
}

/// Draws progress on a terminal, or prints a plain line now and then.
struct Progress {
    total: u64,
    started: Instant,
    tty: bool,
    last_plain: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_plain: Instant::now(),
        }
    }

    fn show(&mut self, read: u64, keys: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = keys as f64 / secs;
        let done = (read as f64 / self.total.max(1) as f64).min(1.0);
        let eta = if done > 0.0 {
            secs * (1.0 - done) / done
        } else {
            0.0
        };
        let mut err = std::io::stderr();
        if self.tty {
            let bar = (done * 30.0) as usize;
            let _ = write!(
                err,
                "\r[{}{}] {:5.1}%  {keys} keys  {rate:.0}/s  ETA {eta:.0}s ",
                "#".repeat(bar),
                ".".repeat(30 - bar),
                done * 100.0
            );
        } else if self.last_plain.elapsed().as_secs() >= 5 || done >= 1.0 {
            self.last_plain = Instant::now();
            let _ = writeln!(
                err,
                "import: {:.1}% of the file, {keys} keys, {rate:.0}/s, ETA {eta:.0}s",
                done * 100.0
            );
        }
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Batches in flight at once: while the server commits one, it reads and
/// checks the next. The server takes them in turn (one at a time on
/// SQLite); one it answers UNAVAILABLE is sent again.
const PIPELINE: usize = 3;

/// How often a batch answered UNAVAILABLE (or DEADLINE_EXCEEDED) is sent again, waiting twice as
/// long each time from 100 ms up to 1.6 s: about 25 s in all.
const UNAVAILABLE_RETRIES: u32 = 18;

impl Summary {
    fn absorb(&mut self, other: Summary) {
        self.created += other.created;
        self.unchanged += other.unchanged;
        self.overwritten += other.overwritten;
        self.conflicts.extend(other.conflicts);
        self.errors.extend(other.errors);
    }
}

/// What sending one batch became, and the file's line it ended at.
type Sent = (u64, Result<Summary, (Summary, String)>);

/// Batches sent and not yet landed, in file order.
type InFlight = std::collections::VecDeque<tokio::task::JoinHandle<Sent>>;

/// The oldest batch in flight, once it lands.
async fn land_next(in_flight: &mut InFlight) -> Option<Sent> {
    let task = in_flight.pop_front()?;
    Some(match task.await {
        Ok(sent) => sent,
        Err(e) => (
            0,
            Err((Summary::default(), format!("a batch's task failed: {e}"))),
        ),
    })
}

impl Client {
    /// Sends `batch`; an entry the server refuses is dropped, with its
    /// error, and the rest is sent again.
    async fn send(
        mut self,
        keyspace: String,
        overwrite: bool,
        dry_run: bool,
        mut batch: Vec<Line>,
    ) -> Sent {
        let end = batch.last().map_or(0, |l| l.number);
        let mut sum = Summary::default();
        match self
            .send_all(&keyspace, overwrite, dry_run, &mut batch, &mut sum)
            .await
        {
            Ok(()) => (end, Ok(sum)),
            Err(e) => (end, Err((sum, e))),
        }
    }

    async fn send_all(
        &mut self,
        keyspace: &str,
        overwrite: bool,
        dry_run: bool,
        batch: &mut Vec<Line>,
        sum: &mut Summary,
    ) -> Result<(), String> {
        let mut unavailable = 0;
        while !batch.is_empty() {
            let msg = pb::ImportKeysRequest {
                keyspace: keyspace.to_owned(),
                keys: batch.iter().map(|l| l.key.clone()).collect(),
                on_conflict: match overwrite {
                    true => pb::ImportConflict::Overwrite,
                    false => pb::ImportConflict::Report,
                }
                .into(),
                dry_run,
            };
            match self.inner.import_keys(self.req(msg)?).await {
                Ok(r) => {
                    for res in r.into_inner().results {
                        let line = batch.get(res.index as usize).map_or(0, |l| l.number);
                        match res.outcome() {
                            pb::ImportOutcome::Created => sum.created += 1,
                            pb::ImportOutcome::Unchanged => sum.unchanged += 1,
                            pb::ImportOutcome::Overwritten => sum.overwritten += 1,
                            _ => sum.conflicts.push((line, res.differs)),
                        }
                    }
                    return Ok(());
                }
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    // `keys[i].field: why`: drop entry i, keep the rest.
                    let Some(i) = s
                        .message()
                        .split_once("keys[")
                        .and_then(|(_, rest)| rest.split_once(']'))
                        .and_then(|(n, _)| n.parse::<usize>().ok())
                        .filter(|i| *i < batch.len())
                    else {
                        return Err(self.fail(s));
                    };
                    let bad = batch.remove(i);
                    sum.errors.push((bad.number, s.message().to_owned()));
                }
                // Busy, briefly unreachable, or queued past the deadline
                // behind other imports: the batch committed nothing (or, if
                // its answer was lost, landed and comes back as unchanged).
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) && unavailable < UNAVAILABLE_RETRIES =>
                {
                    let wait = std::time::Duration::from_millis(100 << unavailable.min(4));
                    unavailable += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(s) => return Err(self.fail(s)),
            }
        }
        Ok(())
    }
}

pub(super) async fn import(c: &mut Client, args: ImportArgs, json_out: bool) -> Result<(), String> {
    let file = File::open(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let format = args
        .format
        .unwrap_or(match args.file.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => FileFormat::Csv,
            _ => FileFormat::Jsonl,
        });
    let mut parser = match format {
        FileFormat::Jsonl => Parser::Jsonl,
        FileFormat::Csv => Parser::Csv { header: vec![] },
    };
    let state = state_path(&args.file);
    let skip_through: u64 = match args.resume {
        true => std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        false => 0,
    };
    let mut lines = Lines {
        inner: BufReader::with_capacity(256 * 1024, file),
        number: 0,
        read: 0,
    };
    let mut seen: HashMap<[u8; 32], u64> = HashMap::new();
    let mut sum = Summary::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut progress = Progress::new(total);
    let mut sent_keys = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    loop {
        let next = lines
            .next()
            .map_err(|e| format!("{}: {e}", args.file.display()))?;
        let (n, text) = match next {
            Next::End => break,
            Next::Bad(n, _) if n <= skip_through => continue,
            Next::Bad(n, why) => {
                sum.errors.push((n, why));
                continue;
            }
            Next::Line(n, text) => (n, text),
        };
        let text = Zeroizing::new(text);
        // A CSV header is read on every run, resumed or not.
        let is_header = matches!(&parser, Parser::Csv { header } if header.is_empty());
        if n <= skip_through && !is_header {
            continue;
        }
        let key = match parser.parse(&text) {
            Ok(Some(k)) => k,
            Ok(None) => continue,
            Err(why) if is_header => return Err(format!("line {n}: {why}")),
            Err(why) => {
                sum.errors.push((n, why));
                continue;
            }
        };
        if let Some(id) = identity(&key)
            && let Some(first) = seen.insert(id, n)
        {
            sum.errors
                .push((n, format!("the same key as line {first}")));
            continue;
        }
        batch.push(Line { number: n, key });
        if batch.len() == BATCH {
            sent_keys += batch.len() as u64;
            let send = c.clone().send(
                args.keyspace.clone(),
                args.overwrite,
                args.dry_run,
                std::mem::take(&mut batch),
            );
            in_flight.push_back(tokio::spawn(send));
            if in_flight.len() >= PIPELINE {
                let done = land_next(&mut in_flight).await.expect("a batch in flight");
                if let Err(e) = landed(done, &mut sum, &state, args.dry_run) {
                    return fail(in_flight, sum, args.dry_run, json_out, e).await;
                }
            }
            progress.show(lines.read, sent_keys);
        }
    }
    sent_keys += batch.len() as u64;
    if !batch.is_empty() {
        let send = c
            .clone()
            .send(args.keyspace.clone(), args.overwrite, args.dry_run, batch);
        in_flight.push_back(tokio::spawn(send));
    }
    while let Some(done) = land_next(&mut in_flight).await {
        if let Err(e) = landed(done, &mut sum, &state, args.dry_run) {
            return fail(in_flight, sum, args.dry_run, json_out, e).await;
        }
    }
    progress.show(total, sent_keys);
    progress.finish();
    if !args.dry_run {
        let _ = std::fs::remove_file(&state);
    }
    report(&sum, args.dry_run, json_out);
    match sum.errors.len() {
        0 => Ok(()),
        n => Err(format!("{n} lines were not imported (listed above)")),
    }
}

/// Takes in one batch's outcome, in file order; after a committed batch,
/// `--resume` may start after its last line.
fn landed(done: Sent, sum: &mut Summary, state: &Path, dry_run: bool) -> Result<(), String> {
    let (end, outcome) = done;
    match outcome {
        Ok(part) => {
            sum.absorb(part);
            if !dry_run {
                let _ = std::fs::write(state, end.to_string());
            }
            Ok(())
        }
        Err((part, e)) => {
            sum.absorb(part);
            Err(e)
        }
    }
}

/// Stops the run on `e`: the batches still in flight land (or fail) first,
/// and what went in, and what was refused, is reported. The resume point
/// stays before the batch that failed: a resumed run sends the later ones
/// again, and finds them unchanged.
async fn fail(
    mut in_flight: InFlight,
    mut sum: Summary,
    dry_run: bool,
    json_out: bool,
    e: String,
) -> Result<(), String> {
    while let Some((_, outcome)) = land_next(&mut in_flight).await {
        match outcome {
            Ok(part) | Err((part, _)) => sum.absorb(part),
        }
    }
    report(&sum, dry_run, json_out);
    Err(e)
}

fn report(sum: &Summary, dry_run: bool, json_out: bool) {
    if json_out {
        let v = json!({
            "dry_run": dry_run,
            "created": sum.created,
            "unchanged": sum.unchanged,
            "overwritten": sum.overwritten,
            "conflicts": sum.conflicts.iter().map(|(l, d)| json!({"line": l, "differs": d})).collect::<Vec<_>>(),
            "errors": sum.errors.iter().map(|(l, e)| json!({"line": l, "error": e})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return;
    }
    let verb = if dry_run { "would import" } else { "imported" };
    println!("{verb:<12} {}", sum.created);
    println!("{:<12} {}", "unchanged", sum.unchanged);
    println!("{:<12} {}", "overwritten", sum.overwritten);
    println!("{:<12} {}", "conflicts", sum.conflicts.len());
    for (line, differs) in &sum.conflicts {
        println!("  line {line}: differs in {}", differs.join(", "));
    }
    println!("{:<12} {}", "errors", sum.errors.len());
    for (line, why) in &sum.errors {
        println!("  line {line}: {why}");
    }
}

/// One exported key as a line of the import format.
fn line_of(k: &pb::ImportedKey, keyspace: &str) -> Value {
    let mut obj = Map::new();
    let mut put = |f: &str, v: Value| {
        let empty = match &v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            obj.insert(f.to_owned(), v);
        }
    };
    if let Some(pb::imported_key::Secret::Hash(h)) = &k.secret {
        put("hash", json!(h));
    }
    put("keyspace", json!(keyspace));
    put("id", json!(k.id));
    put("owner_id", json!(k.owner_id));
    put("name", json!(k.name));
    put(
        "type",
        json!(if k.r#type() == pb::KeyType::Publishable {
            "publishable"
        } else {
            "secret"
        }),
    );
    put(
        "environment",
        json!(if k.environment() == pb::Environment::Test {
            "test"
        } else {
            "live"
        }),
    );
    put("scopes", json!(k.scopes));
    put("roles", json!(k.roles));
    put("metadata", json!(k.metadata));
    if let Ok(r) = restrictions_from_pb("restrictions", k.restrictions.clone())
        && !r.is_empty()
    {
        put("restrictions", r.to_json());
    }
    put("expire_time", rfc3339(&k.expire_time));
    put("create_time", rfc3339(&k.create_time));
    put("last_used_time", rfc3339(&k.last_used_time));
    put("external_id", json!(k.external_id));
    put("hint", json!(k.hint));
    put("revoke_time", rfc3339(&k.revoke_time));
    put("disable_time", rfc3339(&k.disable_time));
    Value::Object(obj)
}

pub(super) async fn export(
    c: &mut Client,
    keyspace: String,
    output: Option<PathBuf>,
) -> Result<(), String> {
    let mut out: Box<dyn Write> = match &output {
        Some(p) => {
            // Hashes let their holder test guesses: readable by the owner only.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut page_token = String::new();
    let mut n = 0u64;
    loop {
        let msg = pb::ExportKeysRequest {
            keyspace: keyspace.clone(),
            page_size: 1000,
            page_token,
        };
        let r = c
            .inner
            .export_keys(c.req(msg)?)
            .await
            .map_err(|s| c.fail(s))?
            .into_inner();
        for (k, ks) in r.keys.iter().zip(&r.keyspaces) {
            writeln!(out, "{}", line_of(k, ks)).map_err(|e| e.to_string())?;
            n += 1;
        }
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    out.flush().map_err(|e| e.to_string())?;
    eprintln!("exported {n} keys");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut l = Lines {
            inner: BufReader::with_capacity(16, input),
            number: 0,
            read: 0,
        };
        let mut out = Vec::new();
        loop {
            match l.next().expect("read") {
                Next::End => return out,
                Next::Line(n, s) => out.push(format!("{n}:{s}")),
                Next::Bad(n, why) => out.push(format!("{n}!{why}")),
            }
        }
    }

    #[test]
    fn long_and_non_utf8_lines_are_reported_by_number() {
        let mut input = b"a\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\n\xff\xfe\nlast");
        assert_eq!(
            lines(&input),
            [
                "1:a",
                &format!("2!longer than {MAX_LINE} bytes"),
                "3!not UTF-8",
                "4:last"
            ]
        );
    }

    #[test]
    fn csv_needs_its_columns_and_every_field() {
        let mut p = Parser::Csv { header: vec![] };
        assert!(
            p.parse("owner_id,name")
                .unwrap_err()
                .contains("hash or a raw")
        );
        let headerless = p.parse("hash,acme_live_secret").unwrap_err();
        assert!(headerless.contains("column 2"), "{headerless}");
        assert!(
            !headerless.contains("secret"),
            "a key is never printed: {headerless}"
        );
        assert!(p.parse("hash,owner_id,scopes").expect("header").is_none());
        assert!(
            p.parse(&format!("{},acct_1", "a".repeat(64)))
                .unwrap_err()
                .contains("2 fields")
        );
        let k = p
            .parse(&format!("{},acct_1,\"a:read b:write\"", "a".repeat(64)))
            .expect("row")
            .expect("key");
        assert_eq!(k.scopes, ["a:read", "b:write"]);
    }

    #[test]
    fn jsonl_lines_are_checked_field_by_field() {
        let mut p = Parser::Jsonl;
        assert!(
            p.parse("{\"owner_id\": \"a\"}")
                .unwrap_err()
                .contains("hash or raw")
        );
        assert!(
            p.parse("{\"raw\": \"k\", \"colour\": 1}")
                .unwrap_err()
                .contains("colour")
        );
        assert!(
            p.parse("{\"raw\": \"k\", \"create_time\": \"yesterday\"}")
                .unwrap_err()
                .contains("create_time")
        );
        let k = p
            .parse(r#"{"raw": "old_1234", "owner_id": "a", "create_time": "2024-01-02T03:04:05Z"}"#)
            .expect("line")
            .expect("key");
        assert_eq!(k.create_time.map(|t| t.seconds), Some(1_704_164_645));
    }
}
