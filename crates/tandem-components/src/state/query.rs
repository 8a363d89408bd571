//! Dapr's state query language (`POST /v1.0-alpha1/state/{store}/query`): a filter tree
//! (`EQ`, `NEQ`, `GT`, `GTE`, `LT`, `LTE`, `IN`, `AND`, `OR` over dot-separated paths into
//! the JSON values), a sort order and a page (`limit`, and `token`: where the next page
//! starts, as Dapr's stores hand it out — the number of results already returned — on
//! every page of a limited query, the last one included).
//!
//! One engine for every store that can list its keys ([`StateStore::scan`]): the store
//! lists the live values under the app's key prefix, the query runs here. Values that are
//! not JSON cannot match a field and are left out of filtered queries. Without a sort
//! order results come by key, so pages never overlap.
//!
//! [`StateStore::scan`]: super::StateStore::scan

use std::cmp::Ordering;

use bytes::Bytes;
use serde_json::Value;

use super::Stored;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort: Vec<Sorting>,
    /// The most results in a page; 0: all.
    pub limit: usize,
    /// Results to skip (the `token` of the previous page).
    pub skip: usize,
}

/// A filter, as Dapr's query language spells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, Value),
    Neq(String, Value),
    Gt(String, Value),
    Gte(String, Value),
    Lt(String, Value),
    Lte(String, Value),
    In(String, Vec<Value>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct Sorting {
    pub key: String,
    pub descending: bool,
}

/// One result: the key as the store holds it, the value (JSON) and its ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub key: String,
    pub data: Bytes,
    pub etag: String,
}

/// A page of results, with the token of the next page when there is one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryPage {
    pub results: Vec<QueryResult>,
    pub token: Option<String>,
}

impl Query {
    /// Parses a query body; the error says what is wrong, in Dapr's words where Dapr
    /// has them.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let Value::Object(mut fields) =
            serde_json::from_slice::<Value>(body).map_err(|error| error.to_string())?
        else {
            return Err("the query must be a JSON object".into());
        };
        let filter = match fields.remove("filter") {
            None | Some(Value::Null) => None,
            Some(Value::Object(filter)) if filter.is_empty() => None,
            Some(filter) => Some(Filter::parse(&filter)?),
        };
        let sort = match fields.remove("sort") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries
                .iter()
                .map(Sorting::parse)
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("sort must be an array".into()),
        };
        let (limit, skip) = match fields.remove("page") {
            None | Some(Value::Null) => (0, 0),
            Some(Value::Object(page)) => {
                let limit = match page.get("limit") {
                    None | Some(Value::Null) => 0,
                    Some(limit) => limit
                        .as_u64()
                        .and_then(|limit| usize::try_from(limit).ok())
                        .ok_or("page.limit must be a whole number, 0 or more")?,
                };
                let skip = match page.get("token") {
                    None | Some(Value::Null) => 0,
                    Some(Value::String(token)) if token.is_empty() => 0,
                    Some(Value::String(token)) => token.parse::<usize>().map_err(|_| {
                        format!("page.token '{token}' is not a token of this store")
                    })?,
                    Some(_) => return Err("page.token must be a string".into()),
                };
                (limit, skip)
            }
            Some(_) => return Err("page must be an object".into()),
        };
        Ok(Self {
            filter,
            sort,
            limit,
            skip,
        })
    }

    /// Runs the query over `values` (key, stored value), as listed by a store.
    pub fn run(&self, values: Vec<(String, Stored)>) -> QueryPage {
        let mut matched: Vec<(String, Option<Value>, Stored)> = values
            .into_iter()
            .filter_map(|(key, stored)| {
                let json = serde_json::from_slice::<Value>(&stored.value).ok();
                let keep = match (&self.filter, &json) {
                    (None, _) => true,
                    (Some(filter), Some(json)) => filter.matches(json),
                    (Some(_), None) => false,
                };
                keep.then_some((key, json, stored))
            })
            .collect();
        matched.sort_by(|(a_key, a, _), (b_key, b, _)| {
            for sorting in &self.sort {
                let order = compare_fields(
                    a.as_ref().and_then(|a| field(a, &sorting.key)),
                    b.as_ref().and_then(|b| field(b, &sorting.key)),
                );
                let order = if sorting.descending {
                    order.reverse()
                } else {
                    order
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
            a_key.cmp(b_key)
        });
        let total = matched.len();
        let end = if self.limit == 0 {
            total
        } else {
            self.skip.saturating_add(self.limit).min(total)
        };
        let results: Vec<QueryResult> = matched
            .into_iter()
            .skip(self.skip)
            .take(end.saturating_sub(self.skip))
            .map(|(key, json, stored)| QueryResult {
                key,
                // Values that are not JSON are carried as a JSON string of their text.
                data: match json {
                    Some(_) => stored.value,
                    None => Bytes::from(
                        Value::String(String::from_utf8_lossy(&stored.value).into_owned())
                            .to_string(),
                    ),
                },
                etag: stored.etag,
            })
            .collect();
        // As Dapr's stores: with a limit, every page carries the token of the next one
        // (where it starts), the last one too; an empty page ends the reading.
        let token = (self.limit > 0).then(|| (self.skip.saturating_add(results.len())).to_string());
        QueryPage { results, token }
    }
}

impl Filter {
    fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(unit) = value else {
            return Err("filter unit must be a map".into());
        };
        if unit.len() != 1 {
            return Err("filter unit must have a single element".into());
        }
        let (name, body) = unit.iter().next().expect("one element");
        let pair = |kind: &str| -> Result<(String, Value), String> {
            let Value::Object(pair) = body else {
                return Err(format!("{kind} filter must be a map"));
            };
            if pair.len() != 1 {
                return Err(format!(
                    "{kind} filter must contain a single key/value pair"
                ));
            }
            let (key, value) = pair.iter().next().expect("one pair");
            Ok((key.clone(), value.clone()))
        };
        // Dapr's stores refuse strings in comparisons.
        let ordered = |kind: &str| -> Result<(String, Value), String> {
            let (key, value) = pair(kind)?;
            if let Value::String(text) = &value {
                return Err(format!(
                    "unsupported type of value {text}; string type not permitted"
                ));
            }
            Ok((key, value))
        };
        let many = |kind: &str| -> Result<Vec<Filter>, String> {
            let Value::Array(entries) = body else {
                return Err(format!("{kind} filter must be an array"));
            };
            if entries.len() < 2 {
                return Err(format!("{kind} filter must contain at least two entries"));
            }
            entries.iter().map(Filter::parse).collect()
        };
        Ok(match name.as_str() {
            "EQ" => pair("EQ").map(|(k, v)| Filter::Eq(k, v))?,
            "NEQ" => pair("NEQ").map(|(k, v)| Filter::Neq(k, v))?,
            "GT" => ordered("GT").map(|(k, v)| Filter::Gt(k, v))?,
            "GTE" => ordered("GTE").map(|(k, v)| Filter::Gte(k, v))?,
            "LT" => ordered("LT").map(|(k, v)| Filter::Lt(k, v))?,
            "LTE" => ordered("LTE").map(|(k, v)| Filter::Lte(k, v))?,
            "IN" => {
                let (key, values) = pair("IN")?;
                let Value::Array(values) = values else {
                    return Err("IN filter value must be an array".into());
                };
                if values.is_empty() {
                    return Err(format!("empty IN operator for key \"{key}\""));
                }
                Filter::In(key, values)
            }
            "AND" => Filter::And(many("AND")?),
            "OR" => Filter::Or(many("OR")?),
            other => return Err(format!("unsupported filter \"{other}\"")),
        })
    }

    fn matches(&self, json: &Value) -> bool {
        let compare =
            |key: &str, wanted: &Value| field(json, key).and_then(|found| ordered(found, wanted));
        match self {
            Filter::Eq(key, wanted) => field(json, key).is_some_and(|found| same(found, wanted)),
            Filter::Neq(key, wanted) => !field(json, key).is_some_and(|found| same(found, wanted)),
            Filter::Gt(key, wanted) => compare(key, wanted) == Some(Ordering::Greater),
            Filter::Gte(key, wanted) => matches!(
                compare(key, wanted),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Filter::Lt(key, wanted) => compare(key, wanted) == Some(Ordering::Less),
            Filter::Lte(key, wanted) => {
                matches!(compare(key, wanted), Some(Ordering::Less | Ordering::Equal))
            }
            Filter::In(key, wanted) => field(json, key)
                .is_some_and(|found| wanted.iter().any(|wanted| same(found, wanted))),
            Filter::And(filters) => filters.iter().all(|filter| filter.matches(json)),
            Filter::Or(filters) => filters.iter().any(|filter| filter.matches(json)),
        }
    }
}

impl Sorting {
    fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(entry) = value else {
            return Err("a sort entry must be an object with a key".into());
        };
        let key = entry
            .get("key")
            .and_then(Value::as_str)
            .filter(|key| !key.is_empty())
            .ok_or("a sort entry must name its key")?
            .to_owned();
        let descending = match entry.get("order").and_then(Value::as_str) {
            None | Some("" | "ASC") => false,
            Some("DESC") => true,
            Some(other) => return Err(format!("sort order '{other}' must be ASC or DESC")),
        };
        Ok(Self { key, descending })
    }
}

/// The value at a dot-separated path (`person.org`) in a JSON value.
fn field<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(json, |value, part| match value {
        Value::Object(fields) => fields.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => ordered(a, b) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// The order of two values of one kind (numbers, strings, booleans); `None` otherwise.
fn ordered(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// The sort order of two fields: missing fields last, then by kind (null, booleans,
/// numbers, strings, arrays, objects), then by value.
fn compare_fields(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => rank(a)
            .cmp(&rank(b))
            .then_with(|| ordered(a, b).unwrap_or(Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> Vec<(String, Stored)> {
        [
            ("1", json!({"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"})),
            ("2", json!({"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"})),
            ("3", json!({"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"})),
            ("4", json!({"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"})),
            ("5", json!({"person": {"org": "Hardware", "id": 1007}, "city": "Los Angeles", "state": "CA"})),
        ]
        .into_iter()
        .map(|(key, value)| {
            (
                key.to_owned(),
                Stored {
                    value: Bytes::from(value.to_string()),
                    etag: format!("e{key}"),
                },
            )
        })
        .chain([(
            "raw".to_owned(),
            Stored {
                value: Bytes::from_static(b"not json"),
                etag: "r".into(),
            },
        )])
        .collect()
    }

    fn keys(page: &QueryPage) -> Vec<&str> {
        page.results.iter().map(|r| r.key.as_str()).collect()
    }

    fn run(query: serde_json::Value) -> QueryPage {
        Query::parse(query.to_string().as_bytes())
            .unwrap()
            .run(values())
    }

    #[test]
    fn filters_sort_and_pages_as_daprs_query_language() {
        let wa = run(json!({"filter": {"EQ": {"state": "WA"}}}));
        assert_eq!(keys(&wa), ["1", "4"]);
        assert_eq!(wa.results[0].etag, "e1");
        assert!(wa.token.is_none());
        let or = run(json!({
            "filter": {"OR": [{"EQ": {"person.org": "Dev Ops"}},
                              {"AND": [{"EQ": {"person.org": "Finance"}}, {"IN": {"state": ["CA", "WA"]}}]}]},
            "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}]
        }));
        assert_eq!(keys(&or), ["1", "4", "3"]);
        let ids =
            run(json!({"filter": {"GTE": {"person.id": 1036}}, "sort": [{"key": "person.id"}]}));
        assert_eq!(keys(&ids), ["1", "4", "3"]);
        let not_ca = run(json!({"filter": {"NEQ": {"state": "CA"}}}));
        assert_eq!(keys(&not_ca), ["1", "2", "4"]);
        // Paging: the token is where the next page starts.
        let first = run(json!({"sort": [{"key": "person.id"}], "page": {"limit": 2}}));
        assert_eq!(keys(&first), ["5", "2"]);
        assert_eq!(first.token.as_deref(), Some("2"));
        let second =
            run(json!({"sort": [{"key": "person.id"}], "page": {"limit": 2, "token": "2"}}));
        assert_eq!(keys(&second), ["1", "4"]);
        let last = run(json!({"sort": [{"key": "person.id"}], "page": {"limit": 2, "token": "4"}}));
        assert_eq!(
            keys(&last),
            ["3", "raw"],
            "a value without the field sorts last"
        );
        assert_eq!(
            last.token.as_deref(),
            Some("6"),
            "as Dapr's stores, the last page too"
        );
        assert_eq!(&last.results[1].data[..], b"\"not json\"");
        let after = run(json!({"page": {"limit": 2, "token": "6"}}));
        assert!(after.results.is_empty());
        assert!(wa.token.is_none(), "no limit, no token");
        // No filter: everything, by key.
        assert_eq!(keys(&run(json!({}))), ["1", "2", "3", "4", "5", "raw"]);
    }

    #[test]
    fn malformed_queries_say_what_is_wrong() {
        let error =
            |query: serde_json::Value| Query::parse(query.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            error(json!({"filter": {"EQ": {"a": 1}, "NEQ": {"b": 2}}})),
            "filter unit must have a single element"
        );
        assert_eq!(
            error(json!({"filter": {"LIKE": {"a": 1}}})),
            "unsupported filter \"LIKE\""
        );
        assert_eq!(
            error(json!({"filter": {"AND": [{"EQ": {"a": 1}}]}})),
            "AND filter must contain at least two entries"
        );
        assert_eq!(
            error(json!({"filter": {"GT": {"a": "x"}}})),
            "unsupported type of value x; string type not permitted"
        );
        assert_eq!(
            error(json!({"filter": {"IN": {"a": 1}}})),
            "IN filter value must be an array"
        );
        assert!(error(json!({"page": {"limit": -1}})).contains("limit"));
        assert!(error(json!({"page": {"token": "abc"}})).contains("token"));
        assert!(error(json!({"sort": [{"key": "a", "order": "UP"}]})).contains("ASC or DESC"));
        assert!(Query::parse(b"{").is_err());
    }
}
