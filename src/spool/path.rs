//! Spool file names from UIDs.
//!
//! UIDs arrive from the network and may be malformed or hostile (`..`, `/`), so every path
//! component is reduced to a safe alphabet before it touches the filesystem.

/// Longest path component we write; a valid UID has at most 64 characters.
const MAX_COMPONENT: usize = 64;

/// A UID made safe as one path component: characters outside `[0-9A-Za-z.-]` become `_`, the
/// length is capped, and names the filesystem treats specially (empty, `.`, `..`) are replaced.
/// Valid UIDs come out unchanged.
pub fn sanitise_uid(uid: &str) -> String {
    let trimmed = uid.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let mut out: String = trimmed
        .chars()
        .take(MAX_COMPONENT)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = format!("_{}", out.len());
    }
    out
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
        assert_eq!(sanitise_uid("../../etc"), ".._.._etc");
        assert_eq!(sanitise_uid(".."), "_2");
        assert_eq!(sanitise_uid(""), "_0");
        assert_eq!(sanitise_uid("a/b"), "a_b");
        assert!(!relative_path("..", "/", "x").contains("../"));
        assert_eq!(sanitise_uid(&"9".repeat(200)).len(), MAX_COMPONENT);
    }
}
