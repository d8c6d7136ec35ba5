//! Byte scans for secrets: in logs, exports and every file of a database.

use std::path::Path;

/// 32 characters from the middle of a secret: its random part, whatever
/// the prefix and checksum.
pub fn needle(secret: &str) -> &[u8] {
    let mid = secret.len() / 2;
    &secret.as_bytes()[mid - 16..mid + 16]
}

pub fn assert_absent(haystack: &[u8], secrets: &[&str], place: &str) {
    for s in secrets {
        assert!(
            memchr::memmem::find(haystack, needle(s)).is_none(),
            "a secret was found in {place}"
        );
    }
}

/// Every byte of every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}
