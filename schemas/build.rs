//! Generates [`PlayerPerformance`] from `avro/MatchCompleted.avsc`, so a new
//! player stat is written once, in the schema, and flows from there:
//! - the struct, field for field in the `.avsc`'s order, with its docs and a
//!   `#[serde(default)]` where the schema gives a default;
//! - `with_player_numbers!`, the list of its plain numeric fields, which the
//!   ingest parser reads under their own names and persist stores as they are.
//!
//! Only the types the player record uses are mapped; any other type stops the
//! build with the field's name.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

const SCHEMA: &str = "avro/MatchCompleted.avsc";

/// The numeric fields each reader places by hand: the slot, part of the
/// `player_matches` key, which rows list first; and the account, which each
/// maps from Steam's anonymous marker (4294967295) to "no account".
const NOT_PLAIN: &[&str] = &["player_slot", "account_id"];

struct Field {
    name: String,
    rust_type: String,
    has_default: bool,
    doc: Option<String>,
}

fn main() {
    println!("cargo::rerun-if-changed={SCHEMA}");
    let text = std::fs::read_to_string(SCHEMA).expect("read avro/MatchCompleted.avsc");
    let schema: Value = serde_json::from_str(&text).expect("avro/MatchCompleted.avsc is JSON");
    let record = player_record(&schema);
    let fields: Vec<Field> = record["fields"]
        .as_array()
        .expect("PlayerPerformance has fields")
        .iter()
        .map(field)
        .collect();
    let mut out = String::new();
    write_struct(&mut out, record["doc"].as_str(), &fields);
    write_numbers_macro(&mut out, &fields);
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("player_performance.rs");
    std::fs::write(target, out).expect("write the generated PlayerPerformance");
}

/// The item record of `MatchCompleted.players`.
fn player_record(schema: &Value) -> &Value {
    let players = schema["fields"]
        .as_array()
        .expect("MatchCompleted has fields")
        .iter()
        .find(|f| f["name"] == "players")
        .expect("MatchCompleted has a players field");
    &players["type"]["items"]
}

fn field(node: &Value) -> Field {
    let name = node["name"]
        .as_str()
        .expect("a field has a name")
        .to_string();
    let rust_type = rust_type(&node["type"]).unwrap_or_else(|| {
        panic!(
            "{SCHEMA}: PlayerPerformance.{name} has a type build.rs does not map: {}",
            node["type"]
        )
    });
    Field {
        name,
        rust_type,
        has_default: node.get("default").is_some(),
        doc: node["doc"].as_str().map(str::to_string),
    }
}

fn rust_type(avro: &Value) -> Option<String> {
    match avro {
        Value::String(primitive) => primitive_type(primitive).map(str::to_string),
        Value::Array(union) => match union.as_slice() {
            [null, inner] if null == "null" => Some(format!("Option<{}>", rust_type(inner)?)),
            _ => None,
        },
        Value::Object(complex) if complex.get("type")? == "array" => {
            Some(format!("Vec<{}>", rust_type(complex.get("items")?)?))
        }
        _ => None,
    }
}

fn primitive_type(avro: &str) -> Option<&'static str> {
    Some(match avro {
        "int" => "i32",
        "long" => "i64",
        "boolean" => "bool",
        "double" => "f64",
        "string" => "String",
        _ => return None,
    })
}

/// `i32`, `i64` or an `Option` of them, and not in [`NOT_PLAIN`].
fn is_plain_number(field: &Field) -> bool {
    let number = matches!(
        field.rust_type.as_str(),
        "i32" | "i64" | "Option<i32>" | "Option<i64>"
    );
    number && !NOT_PLAIN.contains(&field.name.as_str())
}

fn write_struct(out: &mut String, doc: Option<&str>, fields: &[Field]) {
    if let Some(doc) = doc {
        writeln!(out, "#[doc = {doc:?}]").ok();
    }
    out.push_str(
        "#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]\n\
         pub struct PlayerPerformance {\n",
    );
    for field in fields {
        if let Some(doc) = &field.doc {
            writeln!(out, "    #[doc = {doc:?}]").ok();
        }
        if field.has_default {
            out.push_str("    #[serde(default)]\n");
        }
        writeln!(out, "    pub {}: {},", field.name, field.rust_type).ok();
    }
    out.push_str("}\n\n");
}

fn write_numbers_macro(out: &mut String, fields: &[Field]) {
    let numbers: Vec<String> = fields
        .iter()
        .filter(|f| is_plain_number(f))
        .map(|f| format!("{}: {}", f.name, f.rust_type))
        .collect();
    let numbers = numbers.join(", ");
    out.push_str(&format!(
        r#"/// Calls `$callback! {{ numbers: [name: Type, ...] }}` with the plain numeric
/// fields of [`PlayerPerformance`], in the `.avsc`'s order: every `int` and
/// `long` but the slot and the account, which readers place by hand.
#[macro_export]
macro_rules! with_player_numbers {{
    ($callback:ident) => {{
        $callback! {{ numbers: [{numbers}] }}
    }};
}}
"#
    ));
}
