//! The one error type of resource files: where the problem is, and what it is.

use std::fmt;
use std::path::PathBuf;

/// A problem with a resource file, located as precisely as it can be: the file, the
/// line (for syntax errors), the resource (`Component 'order_pub_sub'`) and the field
/// (`spec.metadata[1].secretKeyRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub resource: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl ResourceError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn in_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn at_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ResourceError {}
