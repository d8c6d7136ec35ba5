//! proto3's JSON name of a field: `expire_time` is `expireTime`. Shared by
//! `build.rs` (which lists the proto's field names for the Connect layer's
//! errors) and the FieldMask mapping (`wkt.rs`), so the two spell it alike.

/// `expire_time` as `expireTime` (each dotted part on its own).
pub fn lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}
