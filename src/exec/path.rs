//! The one rule for a path inside a run's or a sandbox's work dir, checked at the door for a
//! request's `files`, the sandbox files API and archive entries alike, so nothing the door
//! accepts can fail later in an executor (a name too long for the kernel, a tree too deep to
//! copy, a file where another file needs a directory).

/// The longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest component, in bytes: the kernel's NAME_MAX.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The most components a path may have (`a/b/c` has 3).
pub const MAX_DEPTH: usize = 32;

/// Why a path was refused; the message names the path and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {shown}: {why}")]
pub struct PathError {
    shown: String,
    why: String,
}

impl PathError {
    fn new(raw: &[u8], why: impl Into<String>) -> PathError {
        // A path of a kilobyte and more is cut in the message, not in the check.
        let text = String::from_utf8_lossy(raw);
        let shown = if text.len() > 80 {
            format!("{:?}...", text.chars().take(60).collect::<String>())
        } else {
            format!("{text:?}")
        };
        PathError {
            shown,
            why: why.into(),
        }
    }
}

/// A path that names something below the work dir: relative, 1..=[`MAX_PATH_BYTES`] bytes, no
/// NUL, at most [`MAX_DEPTH`] components, each of 1..=[`MAX_COMPONENT_BYTES`] bytes and neither
/// `.` nor `..`. Returned as given (no trailing slash is accepted here).
pub fn check(path: &str) -> Result<&str, PathError> {
    check_raw(path.as_bytes()).map(|_| path)
}

/// [`check`] for a name in a sandbox's work dir, where file names are bytes: any bytes but NUL
/// within a component (`/` separates components), not only UTF-8; the same limits.
pub fn check_raw(path: &[u8]) -> Result<&[u8], PathError> {
    let refuse = |why: String| PathError::new(path, why);
    if path.is_empty() {
        return Err(refuse("a path may not be empty".into()));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(refuse(format!(
            "is {} bytes long; at most {MAX_PATH_BYTES} are accepted",
            path.len()
        )));
    }
    if path.contains(&0) {
        return Err(refuse("contains a NUL byte".into()));
    }
    if path.starts_with(b"/") {
        return Err(refuse(
            "is absolute; give it relative to the work dir".into(),
        ));
    }
    let mut depth = 0;
    for part in path.split(|&b| b == b'/') {
        depth += 1;
        if matches!(part, b"" | b"." | b"..") {
            return Err(refuse("has an empty, \".\" or \"..\" component".into()));
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(refuse(format!(
                "has a component of {} bytes; at most {MAX_COMPONENT_BYTES} are accepted",
                part.len()
            )));
        }
    }
    if depth > MAX_DEPTH {
        return Err(refuse(format!(
            "is {depth} components deep; at most {MAX_DEPTH} are accepted"
        )));
    }
    Ok(path)
}

/// A directory below a sandbox's work dir or the work dir itself: `""` and `"."` are the root,
/// and one trailing slash is dropped; anything else as [`check_raw`]. The root comes back as
/// `""`.
pub fn check_dir_raw(path: &[u8]) -> Result<&[u8], PathError> {
    match path {
        b"" | b"." | b"./" => Ok(b""),
        p => check_raw(p.strip_suffix(b"/").unwrap_or(p)),
    }
}

/// True when `a` and `b` cannot both be files of one tree: the same path, or one of them a
/// directory on the way to the other (`main.py` and `main.py/x`).
pub fn overlaps(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'/'
    };
    a == b || under(a, b) || under(b, a)
}

/// The directories on the way to `path`, shortest first (`a/b/c` gives `a`, `a/b`).
pub fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_oddities_are_refused() {
        let long_part = "x".repeat(MAX_COMPONENT_BYTES + 1);
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        let long = vec!["y".repeat(200); 6].join("/");
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "a/..",
            "a/\0b",
            "a/",
            &long_part,
            &deep,
            &long,
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
        // Sandbox names are bytes: the same rule without UTF-8, NUL and `/` still apart.
        for bad in [
            &b"a/\xff/../x"[..],
            b"\xff\0",
            b"/\xff",
            b"\xff//a",
            b"./\xff",
        ] {
            assert!(check_raw(bad).is_err(), "{bad:?} accepted");
        }
        let wide = [b'\xff'; MAX_COMPONENT_BYTES + 1];
        assert!(check_raw(&wide)
            .unwrap_err()
            .to_string()
            .contains("component of 256 bytes"));
        assert!(check_dir_raw(b"\xff//").is_err());
        assert!(check(&deep)
            .unwrap_err()
            .to_string()
            .contains("33 components deep; at most 32"));
        assert!(check(&long_part)
            .unwrap_err()
            .to_string()
            .contains("component of 256 bytes; at most 255"));
    }

    #[test]
    fn plain_paths_pass_as_given() {
        let at_limits = [
            ["z".repeat(MAX_COMPONENT_BYTES)].join("/"),
            vec!["d"; MAX_DEPTH].join("/"),
        ];
        for good in [
            "pkg/mod.py",
            "%2e%2e/x",
            "a b/ç.txt",
            "..a/b..",
            &at_limits[0],
            &at_limits[1],
        ] {
            assert_eq!(check(good), Ok(good));
        }
        for good in [&b"a/\xff\xfe"[..], b"caf\xe9.txt", b"%/\x01"] {
            assert_eq!(check_raw(good), Ok(good));
        }
        assert_eq!(
            check_raw(&[b'\xff'; MAX_COMPONENT_BYTES]).map(<[u8]>::len),
            Ok(255)
        );
        assert_eq!(check_dir_raw(b"\xff/").unwrap(), b"\xff");
        assert_eq!(check_dir_raw(b"./").unwrap(), b"");
        assert_eq!(check_dir_raw(b"").unwrap(), b"");
        assert_eq!(check_dir_raw(b".").unwrap(), b"");
        assert_eq!(check_dir_raw(b"a/b/").unwrap(), b"a/b");
        assert!(check_dir_raw(b"a//").is_err() && check_dir_raw(b"/").is_err());
    }

    #[test]
    fn a_file_may_not_be_a_directory_of_another() {
        assert!(overlaps("main.py", "main.py/x"));
        assert!(overlaps("a/b/c", "a/b"));
        assert!(overlaps("a", "a"));
        assert!(!overlaps("a/b", "a/bc"));
        assert!(!overlaps("ab", "a"));
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
    }
}
