//! Base64 as Judge0 speaks it (Ruby's `Base64.encode64` and `decode64`): answers break the
//! encoding into lines of 60 characters, each ending in a newline; requests are decoded
//! leniently, skipping what is not in the alphabet and taking missing padding.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

const STANDARD: GeneralPurpose = base64::engine::general_purpose::STANDARD;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// `Base64.encode64`: standard base64 in lines of 60 characters, each ending in `\n`.
pub fn encode(bytes: &[u8]) -> String {
    let flat = STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 60 + 1);
    for line in flat.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// `Base64.decode64`: characters outside the alphabet (newlines, spaces) are skipped, the text
/// ends at the first `=`, and a dangling character is dropped. Never fails, as Ruby's does not.
pub fn decode(text: &str) -> Vec<u8> {
    let mut clean: Vec<u8> = text
        .bytes()
        .take_while(|&b| b != b'=')
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT
        .decode(&clean)
        .expect("only alphabet characters in a whole number of symbols")
}

/// [`decode`], as text (bytes that are not UTF-8 become U+FFFD).
pub fn decode_text(text: &str) -> String {
    String::from_utf8_lossy(&decode(text)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_breaks_lines_at_60_as_ruby_does() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"hello 123\n"), "aGVsbG8gMTIzCg==\n");
        let long = encode(&[b'a'; 50]);
        let lines: Vec<&str> = long.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 60);
        assert_eq!(decode(&long), vec![b'a'; 50]);
    }

    #[test]
    fn decode_is_lenient_as_ruby_is() {
        assert_eq!(decode("aGVsbG8gMTIzCg==\n"), b"hello 123\n");
        assert_eq!(decode("aGVs\nbG8g MTIz\r\nCg"), b"hello 123\n");
        assert_eq!(decode("aGVsbG8=garbage"), b"hello");
        assert_eq!(decode("YQ"), b"a");
        assert_eq!(decode("YWJjZ"), b"abc");
        assert_eq!(decode(""), b"");
        assert_eq!(decode("!!"), b"");
        assert_eq!(decode_text("/w=="), "\u{fffd}");
    }
}
