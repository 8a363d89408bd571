//! A component's metadata once resolved: plain values, read through typed getters whose
//! errors point back at the file and field.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::component::Component;
use crate::duration::parse_duration;
use crate::error::ResourceError;
use crate::suggest::closest;

/// Resolved `spec.metadata` of one component. Names match case-insensitively, as in Dapr.
#[derive(Debug, Clone)]
pub struct ComponentMetadata {
    component: Component,
    values: BTreeMap<String, String>,
}

impl ComponentMetadata {
    pub fn new(component: Component, values: BTreeMap<String, String>) -> Self {
        Self { component, values }
    }

    /// Sets `name` to `value` unless the file gave it a value (how the runtime supplies
    /// defaults such as the app id as a pub/sub `consumerID`).
    pub fn with_default(mut self, name: &str, value: impl Into<String>) -> Self {
        if self.get(name).is_none() {
            self.values.retain(|key, _| !key.eq_ignore_ascii_case(name));
            self.values.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The component these values belong to.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Every resolved value, by the name written in the file.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The raw value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// The value of `name`, or `default`.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// The value of `name`, which must be set.
    pub fn required(&self, name: &str) -> Result<&str, ResourceError> {
        self.get(name)
            .ok_or_else(|| self.field_error(name, "is required but not set"))
    }

    /// A yes/no value: Dapr's truthy words (`true`, `1`, `yes`, `on`, ...) or their opposites.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ResourceError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
                "false" | "f" | "0" | "no" | "n" | "off" => Ok(false),
                _ => Err(self.field_error(name, format!("'{value}' is not true or false"))),
            },
        }
    }

    /// A number, e.g. a whole number of the type asked for: out of that type's range
    /// is an error saying so (`number too large to fit in target type`).
    pub fn number_or<T>(&self, name: &str, default: T) -> Result<T, ResourceError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|why| {
                self.field_error(name, format!("'{value}' is not a valid number: {why}"))
            }),
        }
    }

    /// A duration: `"500ms"`, `"60s"`, `"1m"`, or a number of milliseconds.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ResourceError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => parse_duration(value).map_err(|why| {
                self.field_error(
                    name,
                    format!("'{value}' is not a duration (such as `500ms`, `10s`, `1m`): {why}"),
                )
            }),
        }
    }

    /// An error about metadata field `name` of this component.
    pub fn field_error(&self, name: &str, message: impl Into<String>) -> ResourceError {
        let index = self
            .component
            .metadata
            .iter()
            .position(|item| item.name.eq_ignore_ascii_case(name));
        let field = match index {
            Some(index) => format!("spec.metadata[{index}] ({name})"),
            None => format!("spec.metadata ({name})"),
        };
        self.component.error(Some(&field), message)
    }

    /// Warns about every name the implementation does not read, suggesting the closest
    /// known one — `redisPass` is most likely `redisPassword`. Returns the warnings.
    pub fn warn_unknown(&self, known: &[&str]) -> Vec<String> {
        let mut warnings = Vec::new();
        for name in self.values.keys() {
            if known.iter().any(|known| known.eq_ignore_ascii_case(name)) {
                continue;
            }
            let hint = match closest(name, known.iter().copied()) {
                Some(known) => format!("; did you mean '{known}'?"),
                None => format!("; known names are: {}", known.join(", ")),
            };
            let where_ = match &self.component.file {
                Some(file) => format!("{}: ", file.display()),
                None => String::new(),
            };
            let warning = format!(
                "{where_}{}: metadata '{name}' is not used by {} and is ignored{hint}",
                self.component.describe(),
                self.component.kind
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        warnings
    }
}
