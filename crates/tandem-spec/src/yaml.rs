//! From a file's text to typed "file format" structs, one way for every kind.
//!
//! [`documents`] is the one loop over a file's YAML documents: it reads each into a
//! [`Node`] tree, skips empty ones, and reports YAML syntax errors with their line.
//! [`read`] turns a node into a `#[derive(Deserialize)]` struct and, when a field is
//! wrong, says which one (`spec.policies.retries.important.maxRetries`) and what is
//! wrong with it in the file's words: unknown fields get a "did you mean", wrong types
//! say what was expected and what was found.

mod de;
pub(crate) mod fields;
mod node;

use std::path::Path;

use serde::Deserialize;

pub(crate) use de::read;
pub use node::Node;

use crate::error::ResourceError;

/// Every non-empty YAML document of `text`, read from `file`, in order.
pub(crate) fn documents(file: &Path, text: &str) -> Result<Vec<Node>, ResourceError> {
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let node = Node::deserialize(document).map_err(|error| {
            let mut located =
                ResourceError::new(format!("YAML syntax error: {error}")).in_file(file);
            if let Some(location) = error.location() {
                located = located.at_line(location.line());
            }
            located
        })?;
        // An empty document, e.g. after a trailing `---`.
        if !node.is_null() {
            documents.push(node);
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_documents_are_skipped_and_syntax_errors_have_a_line() {
        let nodes = documents(Path::new("f.yaml"), "---\na: 1\n---\n---\nb: 2\n---\n").unwrap();
        assert_eq!(nodes.len(), 2);

        let error = documents(Path::new("f.yaml"), "a: 1\n---\nb: [1\n").unwrap_err();
        assert_eq!(error.file.as_deref(), Some(Path::new("f.yaml")));
        assert_eq!(error.line, Some(4));
        assert!(error.message.starts_with("YAML syntax error"), "{error}");
    }
}
