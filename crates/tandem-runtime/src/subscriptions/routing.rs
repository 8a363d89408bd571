//! Routing rules: which of the app's routes an event goes to.
//!
//! A subscription's rules are tried in order; the first whose CEL `match` expression is
//! true for the event gives the route. A rule without an expression matches every
//! event: the `default` route (or a v1 subscription's single `route`) is such a rule,
//! last, as daprd builds it. When nothing matches, the event is not for this app.
//!
//! Expressions are compiled once, when the subscription is made (with the
//! `cel-interpreter` crate); each event is then evaluated with one variable, `event`:
//! the CloudEvent as JSON, so `event.type`, `event.source`, `event.id`, extensions
//! (`event.myext`) and — when the payload is JSON — `event.data.price` are all there.
//! An expression that fails for an event (a missing field, a type mismatch) or is not
//! a boolean counts as no match for that event; daprd instead fails the whole
//! delivery, which then is retried forever or dead-lettered.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel_interpreter::objects::{Key, Map as CelMap};
use cel_interpreter::{Context, Program, Value as CelValue};
use serde_json::{Map, Value};

use crate::metadata::RuleInfo;

/// Deeper nesting than this is refused before the parser sees it: it recurses, and
/// no routing condition needs anything close.
const MAX_NESTING: usize = 64;

/// The longest expression taken. The interpreter evaluates recursively on the delivery
/// task's stack: a chain of about 3000 `.field` selections overflows a 2 MiB stack (and
/// aborts the process), 1000 is far from it. A routing condition is a condition, not a
/// program; this leaves room for long `in [...]` lists.
const MAX_LENGTH: usize = 2048;

/// Why a routing rule's expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routing rule {index} `{expression}` is not a valid CEL expression: {reason}")]
pub(crate) struct RuleError {
    /// The rule's position among the subscription's rules, from 0.
    pub index: usize,
    pub expression: String,
    pub reason: String,
}

/// One rule: a compiled condition (none: every event) and its route.
#[derive(Debug, Clone)]
struct Rule {
    condition: Option<Condition>,
    path: String,
}

#[derive(Debug, Clone)]
struct Condition {
    source: String,
    program: Arc<Program>,
}

/// A subscription's routes, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Routing {
    rules: Vec<Rule>,
}

impl Routing {
    /// Compiles `rules` (expression, path; an empty expression matches every event) and
    /// adds `default`, when given, as the last rule.
    pub(crate) fn new<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str)>,
        default: Option<&str>,
    ) -> Result<Self, RuleError> {
        let mut compiled = Vec::new();
        for (index, (expression, path)) in rules.into_iter().enumerate() {
            let expression = expression.trim();
            let condition = if expression.is_empty() {
                None
            } else {
                Some(Condition {
                    source: expression.to_owned(),
                    program: Arc::new(compile(expression).map_err(|reason| RuleError {
                        index,
                        expression: expression.to_owned(),
                        reason,
                    })?),
                })
            };
            compiled.push(Rule {
                condition,
                path: path.to_owned(),
            });
        }
        if let Some(default) = default.filter(|path| !path.is_empty()) {
            compiled.push(Rule {
                condition: None,
                path: default.to_owned(),
            });
        }
        Ok(Self { rules: compiled })
    }

    /// A single route for every event (for a gRPC app, possibly the empty path).
    pub(crate) fn catch_all(path: &str) -> Self {
        Self {
            rules: vec![Rule {
                condition: None,
                path: path.to_owned(),
            }],
        }
    }

    /// Whether there is no rule at all: no event could ever be delivered.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The route of `event`: the path of the first rule that matches it, or `None`
    /// when none does.
    pub(crate) fn route(&self, event: &Map<String, Value>) -> Option<&str> {
        // Converted once, and only when a condition is reached.
        let mut context: Option<Context> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(condition) = &rule.condition else {
                return Some(&rule.path);
            };
            let context = context.get_or_insert_with(|| {
                let mut context = Context::default();
                context.add_variable_from_value("event", object(event));
                context
            });
            if condition.matches(context, index) {
                return Some(&rule.path);
            }
        }
        None
    }

    /// The rules as the metadata API shows them: `match` (empty for the default)
    /// and `path`.
    pub(crate) fn describe(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|rule| RuleInfo {
                condition: rule
                    .condition
                    .as_ref()
                    .map(|condition| condition.source.clone())
                    .unwrap_or_default(),
                path: rule.path.clone(),
            })
            .collect()
    }

    /// The rules' paths, for logs.
    pub(crate) fn paths(&self) -> String {
        self.rules
            .iter()
            .map(|rule| rule.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Condition {
    /// Whether the expression is `true` for the event in `context`. An error, a value
    /// that is not a boolean, or a panic inside the interpreter is no match.
    fn matches(&self, context: &Context, index: usize) -> bool {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.program.execute(context)));
        match outcome {
            Ok(Ok(CelValue::Bool(matched))) => matched,
            Ok(Ok(other)) => {
                tracing::debug!(
                    "routing rule {index} `{}` gave {other:?}, not true or false: no match",
                    self.source
                );
                false
            }
            Ok(Err(error)) => {
                tracing::debug!(
                    "routing rule {index} `{}` failed for this event ({error}): no match",
                    self.source
                );
                false
            }
            Err(_) => {
                tracing::warn!(
                    "routing rule {index} `{}`: the CEL interpreter failed on this event: no match",
                    self.source
                );
                false
            }
        }
    }
}

/// Parses one expression; the parser's own words on failure.
fn compile(expression: &str) -> Result<Program, String> {
    if expression.len() > MAX_LENGTH {
        return Err(format!(
            "it is {} bytes long; a routing rule's expression may have {MAX_LENGTH} at most",
            expression.len()
        ));
    }
    let mut depth = 0usize;
    for byte in expression.bytes() {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("nested deeper than {MAX_NESTING} levels"));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    match catch_unwind(|| Program::compile(expression)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(errors)) => Err(errors.to_string().trim().replace('\n', "; ")),
        Err(_) => Err("the CEL parser could not read it".into()),
    }
}

/// A JSON object as a CEL map.
fn object(map: &Map<String, Value>) -> CelValue {
    CelValue::Map(CelMap {
        map: Arc::new(
            map.iter()
                .map(|(key, value)| (Key::String(Arc::new(key.clone())), value_of(value)))
                .collect(),
        ),
    })
}

/// A JSON value as CEL's: whole numbers as `int` (or `uint` beyond it), others as
/// `double`, so `event.data.count + 1 == 6` works as written.
fn value_of(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                CelValue::Int(int)
            } else if let Some(uint) = number.as_u64() {
                CelValue::UInt(uint)
            } else {
                CelValue::Float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => CelValue::String(Arc::new(text.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(value_of).collect())),
        Value::Object(map) => object(map),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn routing(rules: &[(&str, &str)], default: Option<&str>) -> Routing {
        Routing::new(rules.iter().copied(), default).unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_else_the_default() {
        let routing = routing(
            &[
                (r#"event.type == "widget""#, "/widgets"),
                ("event.data.price > 2000", "/expensive"),
                ("event.data.price > 100", "/pricey"),
            ],
            Some("/products"),
        );
        let widget = event(json!({"type": "widget", "data": {"price": 5000}}));
        assert_eq!(routing.route(&widget), Some("/widgets"));
        let gadget = event(json!({"type": "gadget", "data": {"price": 5000}}));
        assert_eq!(routing.route(&gadget), Some("/expensive"));
        let cheaper = event(json!({"type": "gadget", "data": {"price": 150.5}}));
        assert_eq!(routing.route(&cheaper), Some("/pricey"));
        let cheap = event(json!({"type": "gadget", "data": {"price": 1}}));
        assert_eq!(routing.route(&cheap), Some("/products"));
    }

    #[test]
    fn without_a_default_an_unmatched_event_has_no_route() {
        let routing = routing(&[("event.type == 'a'", "/a")], None);
        assert_eq!(routing.route(&event(json!({"type": "a"}))), Some("/a"));
        assert_eq!(routing.route(&event(json!({"type": "b"}))), None);
        // An empty match is a catch-all at its place.
        let routing = Routing::new([("event.type == 'a'", "/a"), ("", "/rest")], None).unwrap();
        assert_eq!(routing.route(&event(json!({"type": "b"}))), Some("/rest"));
    }

    #[test]
    fn errors_and_non_booleans_are_no_match() {
        let routing = routing(
            &[
                ("event.data.missing == 'x'", "/missing"),
                ("event.data.kind", "/not-a-boolean"),
                ("event.data.kind > 3", "/type-mismatch"),
                ("nothing.here", "/undeclared"),
                ("1 / event.data.zero == 1", "/division"),
                ("event.data.kind == 'k'", "/kind"),
            ],
            None,
        );
        let kind = event(json!({"data": {"kind": "k", "zero": 0}}));
        assert_eq!(routing.route(&kind), Some("/kind"));
        // `data` that is not JSON is text: its fields are missing.
        let text = event(json!({"data": "kind=k"}));
        assert_eq!(routing.route(&text), None);
    }

    #[test]
    fn the_cloudevent_fields_extensions_and_functions_are_there() {
        let routing = routing(
            &[
                ("has(event.data.tags) && 'red' in event.data.tags", "/red"),
                (
                    "event.source.startsWith('checkout-') && event.myext == 7",
                    "/ext",
                ),
                ("event.data.items.exists(i, i.qty >= 10)", "/bulk"),
                ("event.id.matches('^ord-[0-9]+$')", "/regex"),
                (
                    "event.data.count + 1 == 6 && size(event.data.name) == 3",
                    "/math",
                ),
            ],
            None,
        );
        let route = |value: Value| routing.route(&event(value)).map(str::to_owned);
        assert_eq!(
            route(json!({"data": {"tags": ["blue", "red"]}})).as_deref(),
            Some("/red")
        );
        assert_eq!(
            route(json!({"source": "checkout-7", "myext": 7, "data": {}})).as_deref(),
            Some("/ext")
        );
        assert_eq!(
            route(json!({"data": {"items": [{"qty": 1}, {"qty": 12}]}})).as_deref(),
            Some("/bulk")
        );
        assert_eq!(
            route(json!({"id": "ord-42", "data": {}})).as_deref(),
            Some("/regex")
        );
        assert_eq!(
            route(json!({"id": "x", "data": {"count": 5, "name": "abc"}})).as_deref(),
            Some("/math")
        );
    }

    #[test]
    fn the_macros_and_functions_the_docs_name_work() {
        let event = event(json!({
            "type": "b", "source": "checkout-eu",
            "data": {"n": [1, 2, 3], "price": "12", "ratio": 0.5, "tags": ["gift"]}
        }));
        for expression in [
            r#"event.type in ["a", "b"]"#,
            "event.data.n.all(x, x > 0)",
            "event.data.n.exists_one(x, x == 2)",
            "event.data.n.map(x, x * 2)[2] == 6",
            "size(event.data.n.filter(x, x > 1)) == 2",
            "event.source.contains('eu') && event.source.endsWith('-eu')",
            "int(event.data.price) == 12 && double(event.data.price) == 12.0",
            "uint(event.data.price) == 12u && string(event.data.ratio) == '0.5'",
            "event.data.ratio < 1 && size(event.data.tags) > 0 && 'gift' in event.data.tags",
        ] {
            let routing = Routing::new([(expression, "/yes")], None).unwrap();
            assert_eq!(routing.route(&event), Some("/yes"), "{expression}");
        }
    }

    #[test]
    fn broken_expressions_are_refused_with_the_rule() {
        for (rules, index) in [
            (vec![("event.type ==", "/a")], 0),
            (
                vec![("event.type == 'a'", "/a"), ("event.type = 'b'", "/b")],
                1,
            ),
            (vec![("event.type == 'a", "/a")], 0),
        ] {
            let error = Routing::new(rules.iter().copied(), Some("/d")).unwrap_err();
            assert_eq!(error.index, index, "{error}");
            assert!(
                error.to_string().contains("is not a valid CEL expression"),
                "{error}"
            );
        }
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        let error = Routing::new([(deep.as_str(), "/a")], None).unwrap_err();
        assert!(error.reason.contains("nested deeper"), "{error}");
        // Long enough to overflow the stack when evaluated: refused before.
        let long = format!("event{} == 1", ".a".repeat(3000));
        let error = Routing::new([(long.as_str(), "/a")], None).unwrap_err();
        assert!(error.reason.contains("2048 at most"), "{error}");
        // At the limit, it compiles and evaluates on a delivery task's stack.
        let limit = format!("event{} == 1", ".a".repeat((MAX_LENGTH - 10) / 2));
        let routing = Routing::new([(limit.as_str(), "/a")], None).unwrap();
        let evaluated = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || routing.route(&event(json!({"a": 1}))).is_none())
            .unwrap()
            .join();
        assert_eq!(evaluated.ok(), Some(true));
    }

    #[test]
    fn the_metadata_shows_each_rule_and_the_default() {
        let routing = routing(&[("event.type == 'a'", "/a")], Some("/d"));
        let described = routing.describe();
        assert_eq!(described.len(), 2);
        assert_eq!(described[0].condition, "event.type == 'a'");
        assert_eq!(described[0].path, "/a");
        assert_eq!(described[1].condition, "");
        assert_eq!(described[1].path, "/d");
        assert!(!routing.is_empty());
        assert!(Routing::new([], None).unwrap().is_empty());
    }
}
