//! Typed access to JSON object fields, with errors that name the field's full path
//! (e.g. `result.players[3].kills`).

use serde_json::{Map, Value};

use schemas::ANONYMOUS_ACCOUNT_ID;

use super::IngestError;

type Result<T> = std::result::Result<T, IngestError>;

/// A JSON object and its path from the record root.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    pub(crate) fn root(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            path: String::new(),
        }
    }

    /// The full path of `key`, for error messages.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) -> IngestError {
        IngestError::field(self.path_of(key), problem)
    }

    /// The value of `key`; JSON `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.map.keys().map(String::as_str)
    }

    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|value| as_int(value).map_err(|problem| self.error(key, problem)))
            .transpose()
    }

    pub(crate) fn int(&self, key: &str) -> Result<i64> {
        self.opt_int(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    pub(crate) fn opt_int32(&self, key: &str) -> Result<Option<i32>> {
        self.opt_int(key)?
            .map(|n| i32::try_from(n).map_err(|_| self.error(key, format!("{n} is out of range"))))
            .transpose()
    }

    pub(crate) fn int32(&self, key: &str) -> Result<i32> {
        self.opt_int32(key)?
            .ok_or_else(|| self.error(key, "missing"))
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.error(key, expected("a boolean", other))),
            None => Err(self.error(key, "missing")),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, expected("a string", other))),
            None => Ok(None),
        }
    }

    /// A string field, owned, for event fields.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.opt_str(key)?.map(str::to_string))
    }

    /// The object under `key`, if `key` holds an object.
    pub(crate) fn opt_child(&self, key: &str) -> Option<Obj<'a>> {
        self.get(key)?.as_object().map(|map| Obj {
            map,
            path: self.path_of(key),
        })
    }

    /// The objects of the array under `key`; absent means none.
    pub(crate) fn opt_objects(&self, key: &str) -> Result<Vec<Obj<'a>>> {
        let items = match self.get(key) {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.error(key, expected("an array", other))),
            None => return Ok(Vec::new()),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{}[{i}]", self.path_of(key));
                match item.as_object() {
                    Some(map) => Ok(Obj { map, path }),
                    None => Err(IngestError::field(path, expected("an object", item))),
                }
            })
            .collect()
    }

    pub(crate) fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>> {
        if !self.has(key) {
            return Err(self.error(key, "missing"));
        }
        self.opt_objects(key)
    }

    /// A player's account id; anonymous (Steam's 4294967295), `null` or absent give `None`.
    pub(crate) fn account_id(&self, key: &str) -> Result<Option<i64>> {
        match self.opt_int(key)? {
            None | Some(ANONYMOUS_ACCOUNT_ID) => Ok(None),
            Some(id) if !(0..ANONYMOUS_ACCOUNT_ID).contains(&id) => {
                Err(self.error(key, format!("{id} is not a 32-bit account id")))
            }
            Some(id) => Ok(Some(id)),
        }
    }
}

/// A number read under its key, required or optional by its type: how the
/// player record's plain numeric fields are read (`with_player_numbers!`).
pub(crate) trait ReadNumber: Sized {
    fn read(obj: &Obj<'_>, key: &str) -> Result<Self>;
}

impl ReadNumber for i32 {
    fn read(obj: &Obj<'_>, key: &str) -> Result<Self> {
        obj.int32(key)
    }
}

impl ReadNumber for i64 {
    fn read(obj: &Obj<'_>, key: &str) -> Result<Self> {
        obj.int(key)
    }
}

impl ReadNumber for Option<i32> {
    fn read(obj: &Obj<'_>, key: &str) -> Result<Self> {
        obj.opt_int32(key)
    }
}

impl ReadNumber for Option<i64> {
    fn read(obj: &Obj<'_>, key: &str) -> Result<Self> {
        obj.opt_int(key)
    }
}

/// An integer from a JSON number, or from a decimal string: the game coordinator's
/// JSON (protobuf mapping) writes 64-bit integers such as `match_id` as strings.
fn as_int(value: &Value) -> std::result::Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| match n.as_u64() {
            Some(big) => format!("{big} is out of range"),
            None => format!("expected an integer, found {n}"),
        }),
        Value::String(s) => s
            .parse::<i64>()
            .map_err(|_| format!("expected an integer, found string {s:?}")),
        other => Err(expected("an integer", other)),
    }
}

fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, found {}", kind_of(found))
}

/// The JSON type of a value, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with<T>(value: Value, f: impl FnOnce(Obj<'_>) -> T) -> T {
        let map = value.as_object().unwrap().clone();
        f(Obj::root(&map))
    }

    #[test]
    fn integers_from_numbers_and_decimal_strings() {
        with(
            json!({"a": 7, "b": "1781962623", "c": 1.5, "d": "x", "e": null}),
            |o| {
                assert_eq!(o.int("a").unwrap(), 7);
                assert_eq!(o.int("b").unwrap(), 1_781_962_623);
                assert!(o.int("c").unwrap_err().to_string().contains("found 1.5"));
                assert!(o.int("d").unwrap_err().to_string().contains("\"x\""));
                assert_eq!(o.opt_int("e").unwrap(), None);
                assert_eq!(o.int("e").unwrap_err().to_string(), "field `e`: missing");
            },
        );
    }

    #[test]
    fn int32_range() {
        with(json!({"big": 3_000_000_000_i64}), |o| {
            assert_eq!(
                o.int32("big").unwrap_err().to_string(),
                "field `big`: 3000000000 is out of range"
            );
        });
    }

    #[test]
    fn nested_paths_in_errors() {
        let record = json!({"result": {"players": [{"kills": 1}, {"kills": "many"}]}});
        with(record, |o| {
            let players = o.opt_child("result").unwrap().objects("players").unwrap();
            let err = players[1].int("kills").unwrap_err();
            assert!(err
                .to_string()
                .starts_with("field `result.players[1].kills`"));
        });
    }

    #[test]
    fn account_ids() {
        let record = json!({"anon": 4_294_967_295_i64, "null": null, "id": 120_269_134, "neg": -5});
        with(record, |o| {
            assert_eq!(o.account_id("anon").unwrap(), None);
            assert_eq!(o.account_id("null").unwrap(), None);
            assert_eq!(o.account_id("missing").unwrap(), None);
            assert_eq!(o.account_id("id").unwrap(), Some(120_269_134));
            assert!(o.account_id("neg").is_err());
        });
    }
}
