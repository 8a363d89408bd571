//! JSON bodies as the fuzzer writes them: a small tree that can also hold what a real
//! JSON library refuses to produce — numbers as raw text (`1e400`, `2^64`) and strings
//! with bytes that are not UTF-8 — so a body can be wrong in exactly one chosen way.

use rand::RngExt;
use rand::rngs::StdRng;

/// A JSON value; numbers keep their text, strings their bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number exactly as written in the body (it may not fit any machine type).
    Number(String),
    /// A string's content; bytes that are not UTF-8 are written as they are.
    Str(Vec<u8>),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    /// Text written as it is: a value made elsewhere (a multi-megabyte string is made
    /// with one allocation, not byte by byte), or deliberately broken JSON.
    Raw(Vec<u8>),
}

impl Json {
    pub fn str(text: impl AsRef<[u8]>) -> Self {
        Json::Str(text.as_ref().to_vec())
    }

    pub fn num(number: impl ToString) -> Self {
        Json::Number(number.to_string())
    }

    pub fn object<const N: usize>(fields: [(&str, Json); N]) -> Self {
        Json::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        )
    }

    /// A string of `len` letters, made cheaply (for bodies near and over the size limit).
    pub fn long_string(len: usize) -> Self {
        let mut bytes = vec![b'x'; len + 2];
        bytes[0] = b'"';
        bytes[len + 1] = b'"';
        Json::Raw(bytes)
    }

    /// The body text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
            Json::Number(text) => out.extend_from_slice(text.as_bytes()),
            Json::Raw(bytes) => out.extend_from_slice(bytes),
            Json::Str(bytes) => write_string(bytes, out),
            Json::Array(items) => {
                out.push(b'[');
                for (at, item) in items.iter().enumerate() {
                    if at > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(fields) => {
                out.push(b'{');
                for (at, (name, value)) in fields.iter().enumerate() {
                    if at > 0 {
                        out.push(b',');
                    }
                    write_string(name.as_bytes(), out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// How many values the tree holds (itself included).
    fn count(&self) -> usize {
        1 + match self {
            Json::Array(items) => items.iter().map(Json::count).sum(),
            Json::Object(fields) => fields.iter().map(|(_, value)| value.count()).sum(),
            _ => 0,
        }
    }

    /// The `index`-th value in depth-first order.
    fn nth_mut(&mut self, index: usize) -> Option<&mut Json> {
        if index == 0 {
            return Some(self);
        }
        let mut rest = index - 1;
        let children: Vec<&mut Json> = match self {
            Json::Array(items) => items.iter_mut().collect(),
            Json::Object(fields) => fields.iter_mut().map(|(_, value)| value).collect(),
            _ => return None,
        };
        for child in children {
            let size = child.count();
            if rest < size {
                return child.nth_mut(rest);
            }
            rest -= size;
        }
        None
    }

    /// Replaces one value chosen at random with a value of another type: a number for a
    /// string, an array for an object, a `null`, ...
    pub fn swap_a_type(&mut self, rng: &mut StdRng) {
        let at = rng.random_range(0..self.count());
        if let Some(target) = self.nth_mut(at) {
            *target = other_type(target, rng);
        }
    }
}

fn other_type(value: &Json, rng: &mut StdRng) -> Json {
    let choices: [Json; 7] = [
        Json::Null,
        Json::Bool(true),
        Json::num(42),
        Json::str("text"),
        Json::Array(vec![Json::num(1), Json::str("two")]),
        Json::object([("unexpected", Json::Bool(false))]),
        Json::Array(Vec::new()),
    ];
    loop {
        let candidate = &choices[rng.random_range(0..choices.len())];
        if std::mem::discriminant(candidate) != std::mem::discriminant(value) {
            return candidate.clone();
        }
    }
}

fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in bytes {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            // Everything else as it is, including bytes that make the body invalid UTF-8.
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn writes_json_that_a_parser_reads_back() {
        let value = Json::object([
            ("key", Json::str("a\"b\\c\u{1}é")),
            ("n", Json::num(-1)),
            (
                "list",
                Json::Array(vec![Json::Null, Json::Bool(false), Json::num("1.5")]),
            ),
        ]);
        let parsed: serde_json::Value = serde_json::from_slice(&value.to_bytes()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"key": "a\"b\\c\u{1}é", "n": -1, "list": [null, false, 1.5]})
        );
    }

    #[test]
    fn numbers_and_bytes_are_written_as_given() {
        assert_eq!(Json::num("1e400").to_bytes(), b"1e400");
        assert_eq!(Json::str([b'a', 0xff]).to_bytes(), b"\"a\xff\"");
        assert_eq!(Json::long_string(3).to_bytes(), b"\"xxx\"");
    }

    #[test]
    fn swapping_a_type_changes_exactly_one_value() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let original = Json::Array(vec![Json::object([
                ("key", Json::str("k")),
                ("value", Json::num(1)),
            ])]);
            let mut changed = original.clone();
            changed.swap_a_type(&mut rng);
            assert_ne!(changed, original);
        }
    }
}
