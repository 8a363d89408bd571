//! The values cases are made of: names (good, unknown and nasty), numbers that do not fit,
//! ETags, and the bytes of bodies near and over the size limit.

use rand::RngExt;
use rand::rngs::StdRng;

/// Dapr's default limit on a request body (`--max-body-size 4Mi`).
pub const BODY_LIMIT: usize = 4 << 20;
/// A body well over the limit.
pub const OVER_LIMIT: usize = 10 << 20;
/// A body just under the limit, leaving room for the JSON around a value.
pub const UNDER_LIMIT: usize = BODY_LIMIT - (16 << 10);

/// A name as the fuzzer uses it in a path, a JSON string, a header or a protobuf field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub bytes: Vec<u8>,
    pub kind: NameKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// One the sidecar has (a configured store, a saved key, ...).
    Known,
    /// A plain name nobody configured.
    Unknown,
    /// Empty.
    Empty,
    /// One of [`NASTY`], by label.
    Nasty(&'static str),
}

impl Name {
    pub fn known(text: &str) -> Self {
        Self {
            bytes: text.as_bytes().to_vec(),
            kind: NameKind::Known,
        }
    }

    pub fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.bytes).is_ok()
    }

    pub fn is_known(&self) -> bool {
        self.kind == NameKind::Known
    }

    /// What the name is, for a case's description.
    pub fn describe(&self, role: &str) -> String {
        match self.kind {
            NameKind::Known => format!("{role} known"),
            NameKind::Unknown => format!("{role} unknown"),
            NameKind::Empty => format!("{role} empty"),
            NameKind::Nasty(label) => format!("{role} {label}"),
        }
    }

    /// The name as one path segment: percent-encoded, except that a nasty name may be
    /// sent with its `/` as it is (a different route).
    pub fn segment(&self) -> Vec<u8> {
        percent_encode(&self.bytes, self.kind != NameKind::Nasty("slash"))
    }
}

/// Names that are legal bytes somewhere and trouble somewhere else.
pub const NASTY: &[(&str, &[u8])] = &[
    ("separator ||", b"a||b"),
    ("slash", b"a/b"),
    ("encoded slash", b"a/b/c"),
    ("dot-dot", b".."),
    ("dot", b"."),
    ("unicode", "ключ-🔑-مفتاح".as_bytes()),
    ("NUL", b"a\0b"),
    ("control characters", b"a\x01\x1b\x7fb"),
    ("spaces", b" a b "),
    ("whitespace only", b"   "),
    ("percent sign", b"100%"),
    ("quote and backslash", b"a\"b\\c'"),
    ("not UTF-8", b"a\xffb"),
    ("overlong UTF-8", b"\xc0\xaf"),
    ("UTF-16 surrogate", b"\xed\xa0\x80"),
    ("byte order mark", "\u{feff}key".as_bytes()),
    ("JSON text", b"{\"a\":[1]}"),
    ("SQL text", b"' OR 1=1; --"),
    ("newline", b"a\r\nb"),
    ("query characters", b"a?b=c&d#e"),
    ("template", b"{appID}{uuid}"),
    ("namespace dot", b"a.b.c"),
    ("long (4 KiB)", &[b'n'; 4096]),
];

/// A name: mostly one of `known`, else unknown, empty or nasty.
pub fn name(rng: &mut StdRng, known: &[&str]) -> Name {
    let roll = rng.random_range(0..100);
    if roll < 55 && !known.is_empty() {
        return Name::known(known[rng.random_range(0..known.len())]);
    }
    if roll < 65 {
        return Name {
            bytes: format!("nope-{}", rng.random_range(0..1000)).into_bytes(),
            kind: NameKind::Unknown,
        };
    }
    if roll < 72 {
        return Name {
            bytes: Vec::new(),
            kind: NameKind::Empty,
        };
    }
    nasty(rng)
}

pub fn nasty(rng: &mut StdRng) -> Name {
    let (label, bytes) = NASTY[rng.random_range(0..NASTY.len())];
    Name {
        bytes: bytes.to_vec(),
        kind: NameKind::Nasty(label),
    }
}

/// Percent-encodes everything but unreserved characters (and `/` unless `slash` is set).
pub fn percent_encode(bytes: &[u8], slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':' | b'@' | b'|')
            || (byte == b'/' && !slash);
        if keep {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    out
}

/// A number as text, by how it breaks things.
pub const NUMBERS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("a minute", "60"),
    ("minus one", "-1"),
    ("minus two", "-2"),
    ("i32 max + 1", "2147483648"),
    ("u32 max + 1", "4294967296"),
    ("i64 max", "9223372036854775807"),
    ("i64 min", "-9223372036854775808"),
    ("u64 max", "18446744073709551615"),
    ("2^64", "18446744073709551616"),
    ("1e400", "1e400"),
    ("-1e400", "-1e400"),
    ("fraction", "1.5"),
    ("exponent", "1e3"),
    ("huge integer", "99999999999999999999999999999999"),
];

/// Texts that are not numbers where a number is expected.
pub const NOT_NUMBERS: &[&str] = &[
    "", "abc", "0x10", "NaN", "Infinity", "٣", " 5", "5s", "1_000", "--1",
];

/// A number-ish text for a field that wants a number (TTL, parallelism, ...), with its
/// label; a small valid number a third of the time.
pub fn number(rng: &mut StdRng) -> (String, &'static str) {
    let roll = rng.random_range(0..100);
    if roll < 30 {
        let (label, text) = NUMBERS[rng.random_range(0..4)];
        return (text.to_owned(), label);
    }
    if roll < 85 {
        let (label, text) = NUMBERS[rng.random_range(0..NUMBERS.len())];
        return (text.to_owned(), label);
    }
    (
        NOT_NUMBERS[rng.random_range(0..NOT_NUMBERS.len())].to_owned(),
        "not a number",
    )
}

/// Whether `text` is a number in JSON's grammar (it may still not fit any type):
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    let digits = |at: &mut usize| {
        let start = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at - start
    };
    let integer_start = at;
    let integer = digits(&mut at);
    if integer == 0 || (integer > 1 && bytes[integer_start] == b'0') {
        return false;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if digits(&mut at) == 0 {
            return false;
        }
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if digits(&mut at) == 0 {
            return false;
        }
    }
    at == bytes.len()
}

/// An ETag: plausible versions, and the rest.
pub fn etag(rng: &mut StdRng) -> (Vec<u8>, &'static str) {
    const ETAGS: &[(&str, &[u8])] = &[
        ("version 1", b"1"),
        ("version 2", b"2"),
        ("version 3", b"3"),
        ("empty", b""),
        ("zero", b"0"),
        ("negative", b"-1"),
        ("letters", b"zzz"),
        ("quoted", b"\"1\""),
        ("weak", b"W/\"1\""),
        ("star", b"*"),
        ("fraction", b"1.0"),
        ("leading space", b" 1"),
        ("past u64", b"99999999999999999999"),
        ("i64 max", b"9223372036854775807"),
        ("NUL", b"1\0"),
        ("unicode", "é1".as_bytes()),
        ("not UTF-8", b"\xff1"),
        ("long", &[b'9'; 2000]),
    ];
    let (label, bytes) = ETAGS[rng.random_range(0..ETAGS.len())];
    (bytes.to_vec(), label)
}

/// Random bytes, any value, `len` long.
pub fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

/// One of a few content types, good and bad.
pub fn content_type(rng: &mut StdRng) -> Option<&'static [u8]> {
    const TYPES: &[&[u8]] = &[
        b"application/json",
        b"text/plain",
        b"application/cloudevents+json",
        b"application/octet-stream",
        b"application/json; charset=utf-8",
        b"application/xml",
        b"",
        b";;;",
        b"application/json; charset=\xff",
        b"multipart/form-data; boundary=",
        b"application/cloudevents-batch+json",
    ];
    if rng.random_bool(0.3) {
        None
    } else {
        Some(TYPES[rng.random_range(0..TYPES.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(Name::known("a b").segment(), b"a%20b");
        assert_eq!(
            Name {
                bytes: b"a/b".to_vec(),
                kind: NameKind::Nasty("encoded slash")
            }
            .segment(),
            b"a%2Fb"
        );
        assert_eq!(
            Name {
                bytes: b"a/b".to_vec(),
                kind: NameKind::Nasty("slash")
            }
            .segment(),
            b"a/b"
        );
        assert_eq!(
            Name {
                bytes: b"\xff".to_vec(),
                kind: NameKind::Unknown
            }
            .segment(),
            b"%FF"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let mut first = StdRng::seed_from_u64(3);
        let mut second = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert_eq!(
                name(&mut first, &["statestore"]),
                name(&mut second, &["statestore"])
            );
            assert_eq!(number(&mut first), number(&mut second));
        }
    }

    #[test]
    fn json_numbers_are_told_from_other_text() {
        assert!(is_json_number("1e400"));
        assert!(is_json_number("-9223372036854775808"));
        assert!(is_json_number("18446744073709551616"));
        assert!(!is_json_number("NaN"));
        assert!(!is_json_number("0x10"));
        assert!(!is_json_number(""));
        assert!(!is_json_number("01"));
        assert!(!is_json_number("1."));
        assert!(is_json_number("0"));
        assert!(is_json_number("1.5e-3"));
    }
}
