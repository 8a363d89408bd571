//! Reading a [`Node`] into a typed struct, with problems told in the file's words.
//!
//! The deserializer is tandem's own (over its own [`Node`]) so that its error,
//! [`Problem`], keeps what serde reports as data — an unknown field and the known ones,
//! a missing field, the type found and the one expected — rather than as English text;
//! [`read`] reports it with the path of the field: the deserializer's own mapping and
//! list access add each key and index to an error as it travels up (no wrapper around
//! every visitor, which would double the code serde generates). Scalars read as text
//! where text is wanted (`version: 1` is `"1"`), as Kubernetes-style YAML allows.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde::forward_to_deserialize_any;

use super::node::Node;
use crate::suggest::closest;

/// What is wrong with one field, before the path is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Problem {
    /// A field of a struct that has no such field.
    #[error("unknown field `{field}`; {}", known_hint(field, known))]
    UnknownField {
        field: String,
        known: &'static [&'static str],
    },
    /// A value that is not one of the words allowed.
    #[error("unknown value `{value}`; {}", value_hint(value, known))]
    UnknownValue {
        value: String,
        known: &'static [&'static str],
    },
    /// A required field that is absent.
    #[error("is required but missing")]
    MissingField(&'static str),
    #[error("must be {expected}, not {found}")]
    InvalidType { expected: String, found: String },
    #[error("{found} is not {expected}")]
    InvalidValue { expected: String, found: String },
    /// Anything else, said by the field's own type (`` `5 seconds` is not a duration``).
    #[error("{0}")]
    Said(String),
}

fn known_hint(field: &str, known: &[&str]) -> String {
    match closest(field, known.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if known.is_empty() => "this mapping has no fields".into(),
        None => format!("known fields are: {}", known.join(", ")),
    }
}

fn value_hint(value: &str, known: &[&str]) -> String {
    match closest(value, known.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!("it must be one of: {}", known.join(", ")),
    }
}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Problem::Said(message.to_string())
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::InvalidType {
            expected: expected_in_words(expected),
            found: found_in_words(&found),
        }
    }

    fn invalid_value(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::InvalidValue {
            expected: expected_in_words(expected),
            found: found_in_words(&found),
        }
    }

    fn unknown_field(field: &str, known: &'static [&'static str]) -> Self {
        Problem::UnknownField {
            field: field.to_owned(),
            known,
        }
    }

    fn unknown_variant(value: &str, known: &'static [&'static str]) -> Self {
        Problem::UnknownValue {
            value: value.to_owned(),
            known,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::MissingField(field)
    }

    fn duplicate_field(field: &'static str) -> Self {
        Problem::Said(format!("`{field}` is given twice"))
    }
}

/// serde's names for what it expected, in the words of a YAML file.
fn expected_in_words(expected: &dyn Expected) -> String {
    let said = expected.to_string();
    let words = match said.as_str() {
        "a string" | "a borrowed string" | "a character" => "text",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a boolean" => "true or false",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        _ if said.starts_with("struct ") => "a mapping",
        _ => return said,
    };
    words.to_owned()
}

fn found_in_words(found: &Unexpected<'_>) -> String {
    match found {
        Unexpected::Bool(flag) => format!("`{flag}`"),
        Unexpected::Unsigned(number) => format!("the number {number}"),
        Unexpected::Signed(number) => format!("the number {number}"),
        Unexpected::Float(number) => {
            format!("the number {}", yaml_serde::Number::from(*number))
        }
        Unexpected::Str(text) => format!("the text `{text}`"),
        Unexpected::Unit | Unexpected::Option => "empty".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// A [`Problem`] at a path in the document, e.g. `spec.policies.timeouts.general`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldProblem {
    /// Empty for the document itself.
    pub path: String,
    pub problem: Problem,
}

/// One step of a path: a mapping's key or a list's index.
#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// A problem on its way up from where it happened: the steps are added innermost
/// first, as each mapping and list hands the error to its parent.
#[derive(Debug)]
pub(crate) struct Located {
    steps: Vec<Step>,
    problem: Problem,
}

impl Located {
    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl std::error::Error for Located {}

impl de::Error for Located {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Problem::custom(message).into()
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::invalid_type(found, expected).into()
    }

    fn invalid_value(found: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::invalid_value(found, expected).into()
    }

    fn unknown_field(field: &str, known: &'static [&'static str]) -> Self {
        Problem::unknown_field(field, known).into()
    }

    fn unknown_variant(value: &str, known: &'static [&'static str]) -> Self {
        Problem::unknown_variant(value, known).into()
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::missing_field(field).into()
    }

    fn duplicate_field(field: &'static str) -> Self {
        Problem::duplicate_field(field).into()
    }
}

impl From<Problem> for Located {
    fn from(problem: Problem) -> Self {
        Self {
            steps: Vec::new(),
            problem,
        }
    }
}

/// Reads `node` into `T`, naming the field of any problem.
pub(crate) fn read<T: DeserializeOwned>(node: &Node) -> Result<T, FieldProblem> {
    T::deserialize(NodeDeserializer(node)).map_err(|located| {
        let mut path = String::new();
        for step in located.steps.iter().rev() {
            match step {
                Step::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Step::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        let problem = located.problem;
        // A missing field is reported at its mapping: point at the field itself.
        if let Problem::MissingField(field) = &problem {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(field);
        }
        FieldProblem { path, problem }
    })
}

/// A mapping's entries, handed to a visitor one by one.
struct Entries<'de> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    /// The entry whose key was just read: its value comes next.
    current: Option<&'de (Node, Node)>,
}

fn key_text(key: &Node) -> String {
    key.scalar_text().unwrap_or_else(|| "?".into())
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Located;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Located> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        seed.deserialize(NodeDeserializer(&entry.0))
            .map(Some)
            // An unknown field is a problem at that field.
            .map_err(|error| error.at(Step::Key(key_text(&entry.0))))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Located> {
        let entry = self
            .current
            .take()
            .expect("serde asks for a value only after its key");
        seed.deserialize(NodeDeserializer(&entry.1))
            .map_err(|error| error.at(Step::Key(key_text(&entry.0))))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A list's items, handed to a visitor one by one.
struct Items<'de> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Located;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Located> {
        match self.items.next() {
            None => Ok(None),
            Some((index, item)) => seed
                .deserialize(NodeDeserializer(item))
                .map(Some)
                .map_err(|error| error.at(Step::Index(index))),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A serde deserializer over a borrowed [`Node`].
#[derive(Clone, Copy)]
pub(crate) struct NodeDeserializer<'a>(pub &'a Node);

impl<'de> IntoDeserializer<'de, Located> for NodeDeserializer<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> NodeDeserializer<'de> {
    fn visit_map<V: Visitor<'de>>(
        entries: &'de [(Node, Node)],
        visitor: V,
    ) -> Result<V::Value, Located> {
        visitor.visit_map(Entries {
            entries: entries.iter(),
            current: None,
        })
    }

    fn visit_seq<V: Visitor<'de>>(items: &'de [Node], visitor: V) -> Result<V::Value, Located> {
        visitor.visit_seq(Items {
            items: items.iter().enumerate(),
        })
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = Located;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            Node::Bool(flag) => visitor.visit_bool(*flag),
            Node::Unsigned(number) => match u64::try_from(*number) {
                Ok(number) => visitor.visit_u64(number),
                Err(_) => visitor.visit_u128(*number),
            },
            Node::Negative(number) => match i64::try_from(*number) {
                Ok(number) => visitor.visit_i64(number),
                Err(_) => visitor.visit_i128(*number),
            },
            Node::Float(number) => visitor.visit_f64(*number),
            Node::Text(text) => visitor.visit_borrowed_str(text),
            Node::List(items) => Self::visit_seq(items, visitor),
            Node::Map(entries) => Self::visit_map(entries, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        match self.0 {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Text is wanted: numbers and booleans read as written.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        match self.0 {
            Node::Text(text) => visitor.visit_borrowed_str(text),
            Node::Bool(_) | Node::Unsigned(_) | Node::Negative(_) | Node::Float(_) => {
                visitor.visit_string(self.0.scalar_text().unwrap_or_default())
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        self.deserialize_str(visitor)
    }

    /// An empty (null) mapping reads as an empty one: `defaults:` is `defaults: {}`.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        match self.0 {
            Node::Null => Self::visit_map(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    /// An empty (null) list reads as an empty one: `scopes:` is `scopes: []`.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        match self.0 {
            Node::Null => Self::visit_seq(&[], visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Located> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Located> {
        match self.0 {
            Node::Text(text) => visitor.visit_enum(text.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Located> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Retry {
        max_retries: Option<u32>,
        policy: Option<String>,
        #[serde(default)]
        codes: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Spec {
        retries: BTreeMap<String, Retry>,
        #[serde(default)]
        name: Option<String>,
    }

    fn spec(text: &str) -> Result<Spec, FieldProblem> {
        read(&yaml_serde::from_str(text).unwrap())
    }

    #[test]
    fn scalars_read_as_text_and_null_mappings_as_empty() {
        let spec = spec("retries: {a: {policy: 5, codes: [1, true, x]}, b: }\nname: ~").unwrap();
        assert_eq!(spec.retries["a"].policy.as_deref(), Some("5"));
        assert_eq!(spec.retries["a"].codes, ["1", "true", "x"]);
        assert_eq!(
            spec.retries["b"],
            Retry {
                max_retries: None,
                policy: None,
                codes: Vec::new()
            }
        );
        assert_eq!(spec.name, None);
    }

    #[test]
    fn problems_come_with_their_path() {
        let error = spec("retries: {a: {maxRetry: 3}}").unwrap_err();
        assert_eq!(error.path, "retries.a.maxRetry");
        assert_eq!(
            error.problem.to_string(),
            "unknown field `maxRetry`; did you mean `maxRetries`?"
        );

        let error = spec("retries: {a: {zzz: 3}}").unwrap_err();
        assert_eq!(
            error.problem.to_string(),
            "unknown field `zzz`; known fields are: maxRetries, policy, codes"
        );

        let error = spec("retries: {a: {codes: x}}").unwrap_err();
        assert_eq!(error.path, "retries.a.codes");
        assert_eq!(
            error.problem.to_string(),
            "must be a list, not the text `x`"
        );

        let error = spec("retries: {a: {maxRetries: 99999999999999999999}}").unwrap_err();
        assert_eq!(error.path, "retries.a.maxRetries");

        let error = spec("retries: [a]").unwrap_err();
        assert_eq!(error.path, "retries");
        assert_eq!(error.problem.to_string(), "must be a mapping, not a list");

        let error = spec("name: x").unwrap_err();
        assert_eq!(error.path, "retries");
        assert_eq!(error.problem, Problem::MissingField("retries"));

        let error = spec("retries: {a: {codes: [[1]]}}").unwrap_err();
        assert_eq!(error.path, "retries.a.codes[0]");
    }
}
