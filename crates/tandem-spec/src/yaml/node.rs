//! [`Node`]: one YAML document as a tree that holds whatever a user may write (also
//! how `tandem run -f` reads a run file, exported as `YamlNode`).
//!
//! `yaml_serde::Value` refuses integers beyond 64 bits (`maxRetries:
//! 99999999999999999999` would read as a syntax error), so documents are read into this
//! tree instead, and range checks happen later, where the field is known.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// An integer of 0 or more, of any size YAML reads as an integer.
    Unsigned(u128),
    /// A negative integer.
    Negative(i128),
    Float(f64),
    Text(String),
    List(Vec<Node>),
    /// Entries in file order; keys are unique.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(name, _)| name.scalar_text().as_deref() == Some(key))
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// A scalar as it reads in the file (`5`, `true`, `text`); `None` for null, lists
    /// and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Bool(flag) => Some(flag.to_string()),
            Node::Unsigned(number) => Some(number.to_string()),
            Node::Negative(number) => Some(number.to_string()),
            // As `yaml_serde` writes it, so `1.50` reads `1.5` as it always has.
            Node::Float(number) => Some(yaml_serde::Number::from(*number).to_string()),
            Node::Text(text) => Some(text.clone()),
            Node::Null | Node::List(_) | Node::Map(_) => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Unsigned(value.into()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Node, E> {
        Ok(Node::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        self.visit_i128(value.into())
    }

    fn visit_i128<E>(self, value: i128) -> Result<Node, E> {
        Ok(match u128::try_from(value) {
            Ok(value) => Node::Unsigned(value),
            Err(_) => Node::Negative(value),
        })
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Text(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Node, E> {
        Ok(Node::Text(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Node, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = items.next_element()? {
            list.push(item);
        }
        Ok(Node::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            if entries.iter().any(|(seen, _)| *seen == key) {
                let shown = key.scalar_text().unwrap_or_else(|| format!("{key:?}"));
                return Err(de::Error::custom(format!(
                    "the key `{shown}` appears twice in one mapping"
                )));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        // `yaml_serde` hands custom tags (`!Secret value`) over as enums.
        let (tag, _) = data.variant::<String>()?;
        Err(de::Error::custom(format!(
            "YAML tags such as `!{tag}` have no meaning in resource files"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Result<Node, yaml_serde::Error> {
        yaml_serde::from_str(text)
    }

    #[test]
    fn integers_of_any_size_are_kept() {
        assert_eq!(
            node("99999999999999999999").unwrap(),
            Node::Unsigned(99_999_999_999_999_999_999)
        );
        assert_eq!(
            node("-99999999999999999999").unwrap(),
            Node::Negative(-99_999_999_999_999_999_999)
        );
        assert_eq!(node("-1").unwrap(), Node::Negative(-1));
        assert!(matches!(
            node("9999999999999999999999999999999999999999999").unwrap(),
            Node::Float(_)
        ));
    }

    #[test]
    fn scalars_read_as_written() {
        let map = node("{a: 1.50, b: true, c: text, d: 7, e: ~}").unwrap();
        let text = |key: &str| map.get(key).unwrap().scalar_text();
        assert_eq!(text("a").as_deref(), Some("1.5"));
        assert_eq!(text("b").as_deref(), Some("true"));
        assert_eq!(text("c").as_deref(), Some("text"));
        assert_eq!(text("d").as_deref(), Some("7"));
        assert_eq!(text("e"), None);
        assert!(map.get("missing").is_none());
    }

    #[test]
    fn duplicate_keys_and_tags_are_refused() {
        let error = node("{a: 1, a: 2}").unwrap_err().to_string();
        assert!(error.contains("the key `a` appears twice"), "{error}");
        let error = node("a: !Secret x").unwrap_err().to_string();
        assert!(error.contains("`!Secret`"), "{error}");
    }
}
