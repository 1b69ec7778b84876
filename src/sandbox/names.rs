//! The files API's reversible form of a file name. Names in a work dir are bytes; JSON and URLs
//! carry text. A name that is valid UTF-8 is shown as is (`"path_encoding": "utf-8"`); one that
//! is not is shown percent-encoded (`"path_encoding": "percent"`): every byte that is not part
//! of valid UTF-8, and every `%`, as `%XX` with uppercase hex, the rest as is.

use serde::{Deserialize, Serialize};

/// How a name in the files API is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PathEncoding {
    /// The name is its own text.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// `%XX` stands for the byte XX; every other character for its UTF-8 bytes.
    #[serde(rename = "percent")]
    Percent,
}

/// A name that is not a valid percent form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {shown:?} is not percent-encoded: a \"%\" at byte {at} is not followed by two hex digits (write \"%\" itself as %25)")]
pub struct DecodeError {
    shown: String,
    at: usize,
}

/// The name's text and how to read it back.
pub fn encode(raw: &[u8]) -> (String, PathEncoding) {
    if let Ok(text) = std::str::from_utf8(raw) {
        return (text.to_string(), PathEncoding::Utf8);
    }
    let mut out = String::with_capacity(raw.len() * 2);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '%' => out.push_str("%25"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    (out, PathEncoding::Percent)
}

/// The name's bytes: the exact inverse of [`encode`]. The percent form also takes lowercase
/// hex and any byte written as `%XX`; a `%` without two hex digits after it is refused.
pub fn decode(shown: &str, encoding: PathEncoding) -> Result<Vec<u8>, DecodeError> {
    if encoding == PathEncoding::Utf8 {
        return Ok(shown.as_bytes().to_vec());
    }
    let b = shown.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| b.get(j).and_then(|&c| (c as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => {
                return Err(DecodeError {
                    shown: shown.to_string(),
                    at: i,
                })
            }
        }
        i += 3;
    }
    Ok(out)
}

/// A name for messages: as the files API shows it.
pub fn shown(raw: &[u8]) -> String {
    encode(raw).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (splitmix64), so a failure can be replayed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn the_forms_are_as_documented() {
        assert_eq!(
            encode(b"a/b c.txt"),
            ("a/b c.txt".into(), PathEncoding::Utf8)
        );
        assert_eq!(encode(b"100%.txt"), ("100%.txt".into(), PathEncoding::Utf8));
        assert_eq!(
            encode(b"caf\xc3\xa9/100%\xff\x00"),
            ("café/100%25%FF\0".into(), PathEncoding::Percent)
        );
        // A cut multi-byte sequence is bytes that are not part of valid UTF-8.
        assert_eq!(encode(b"\xc3x"), ("%C3x".into(), PathEncoding::Percent));
        assert_eq!(
            decode("%ff%41/%25", PathEncoding::Percent).unwrap(),
            b"\xffA/%"
        );
        assert_eq!(decode("%ff", PathEncoding::Utf8).unwrap(), b"%ff");
        for bad in ["%", "a%f", "%zz", "%%41", "%-1"] {
            let e = decode(bad, PathEncoding::Percent).unwrap_err();
            assert!(e.to_string().contains("%25"), "{bad}: {e}");
        }
        assert_eq!(
            serde_json::to_string(&[PathEncoding::Utf8, PathEncoding::Percent]).unwrap(),
            r#"["utf-8","percent"]"#
        );
    }

    #[test]
    fn random_bytes_round_trip_exactly() {
        let mut rng = Rng(10);
        // Bytes biased toward what breaks encoders: `%`, hex digits, UTF-8 lead and trail bytes.
        let pool = b"%%AFaf09/\x00\x7f\x80\xbf\xc0\xc3\xe2\xed\xf0\xf4\xf5\xff";
        for round in 0..20_000 {
            let len = (rng.next() % 24) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| match rng.next() % 3 {
                    0 => pool[(rng.next() % pool.len() as u64) as usize],
                    _ => rng.next() as u8,
                })
                .collect();
            let (text, enc) = encode(&raw);
            assert_eq!(
                enc == PathEncoding::Utf8,
                std::str::from_utf8(&raw).is_ok(),
                "round {round}: {raw:?}"
            );
            assert_eq!(decode(&text, enc).unwrap(), raw, "round {round}: {text}");
            if enc == PathEncoding::Percent {
                // The form is canonical: only `%XX` with uppercase hex, and nothing that was
                // valid UTF-8 other than `%` is escaped.
                assert_eq!(encode(&decode(&text, enc).unwrap()).0, text);
                let b = text.as_bytes();
                for (i, _) in text.match_indices('%') {
                    let hex = &b[i + 1..i + 3];
                    assert!(
                        hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')),
                        "round {round}: {text}"
                    );
                }
            }
        }
    }
}
