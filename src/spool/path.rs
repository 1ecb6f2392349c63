//! Spool file names from UIDs.
//!
//! UIDs arrive from the network and may be malformed or hostile (`..`, `/`), so every path
//! component is reduced to a safe alphabet before it touches the filesystem.

/// Longest path component we write; a valid UID has at most 64 characters.
const MAX_COMPONENT: usize = 64;
/// How much of an unsafe UID's cleaned-up text is kept before its hash.
const KEPT_OF_UNSAFE: usize = 40;

/// A UID made safe as one path component. A UID that is already a safe name (characters of
/// `[0-9A-Za-z.-]`, at most 64 of them, not `.` or `..`) comes out unchanged, as every valid
/// UID does. Any other gets its unsafe characters replaced by `_`, is cut short, and gets a hash
/// of the whole original appended: replacing and cutting alone would give two different
/// malformed UIDs (`1.2/3` and `1.2_3`, or two long ones that share their first 64 characters)
/// the same file, and the second instance would overwrite the first, acknowledged, one.
pub fn sanitise_uid(uid: &str) -> String {
    let trimmed = uid.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let safe_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let special = trimmed.is_empty() || trimmed.chars().all(|c| c == '.');
    if trimmed.len() <= MAX_COMPONENT && trimmed.chars().all(safe_char) && !special {
        return trimmed.to_string();
    }
    let kept: String = trimmed
        .chars()
        .take(KEPT_OF_UNSAFE)
        .map(|c| if safe_char(c) { c } else { '_' })
        .collect();
    // `_` never occurs in a safe name, so these names cannot meet one.
    format!("{kept}_{}", short_hash(trimmed))
}

/// The first 16 hex digits of the SHA-256 of `text`: stable across releases (a resent instance
/// must find its earlier file), and no two UIDs a sender could make share it in practice.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The path of an instance relative to the spool root: `study/series/sop.dcm`.
pub fn relative_path(study_uid: &str, series_uid: &str, sop_instance_uid: &str) -> String {
    format!(
        "{}/{}/{}.dcm",
        sanitise_uid(study_uid),
        sanitise_uid(series_uid),
        sanitise_uid(sop_instance_uid)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_uids_are_kept() {
        assert_eq!(sanitise_uid("1.2.840.10008.5.1"), "1.2.840.10008.5.1");
        assert_eq!(sanitise_uid("1.2.3\0"), "1.2.3");
    }

    #[test]
    fn hostile_uids_cannot_escape_the_spool() {
        for uid in ["../../etc", "..", ".", "", "a/b", "/", "\\x"] {
            let name = sanitise_uid(uid);
            assert!(
                !name.contains('/') && !name.contains('\\'),
                "{uid:?} → {name}"
            );
            assert!(
                name != "." && name != ".." && !name.is_empty(),
                "{uid:?} → {name}"
            );
        }
        assert!(!relative_path("..", "/", "x").contains("../"));
        assert!(sanitise_uid(&"9".repeat(200)).len() <= MAX_COMPONENT);
    }

    #[test]
    fn distinct_malformed_uids_get_distinct_names() {
        let long = "1.2.".to_string() + &"3".repeat(100);
        let pairs = [
            ("1.2/3", "1.2_3"),
            ("1.2/3", "1.2 3"),
            ("..", "._."),
            (long.as_str(), &(long.clone() + "4")),
            ("1.2.3 ", "1.2.3_"),
        ];
        for (a, b) in pairs {
            assert_ne!(sanitise_uid(a), sanitise_uid(b), "{a:?} and {b:?}");
        }
        // The same UID always gets the same name, so a resent instance replaces its file.
        assert_eq!(sanitise_uid("1.2/3"), sanitise_uid("1.2/3"));
        assert_eq!(sanitise_uid(&long), sanitise_uid(&long));
        // A malformed UID never takes the name of a valid one.
        assert_ne!(sanitise_uid("1.2/3"), "1.2_3");
        assert!(sanitise_uid("1.2_3").contains('_'));
    }
}
