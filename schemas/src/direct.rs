//! Avro binary decoded straight into a serde type by walking the writer's
//! schema: no `Value` tree, no copy of each field name per record, which is
//! what apache-avro's decoding spends its time on (`cargo bench -p schemas
//! --bench codec`, README). `serde_avro_fast` does the same but pulls in an
//! LGPL-3.0 crate, which `deny.toml` refuses.
//!
//! It covers what the events on the hot path use: records, `null`, booleans,
//! `int`, `long`, `float`, `double`, strings, arrays, unions and references to
//! named types. Anything else (enums, bytes, maps, fixed) is an error, and the
//! codec then decodes through apache-avro, whose result and errors stand.

use std::collections::HashMap;
use std::fmt;

use apache_avro::schema::{RecordField, Schema};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// Named types of a schema by full name, for `Schema::Ref`.
pub(crate) type Names = HashMap<String, Schema>;

/// Why the direct path gave up; the codec falls back and reports apache-avro's error.
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl de::Error for Unsupported {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Unsupported>;

fn fail<T>(why: &str) -> Result<T> {
    Err(Unsupported(why.to_string()))
}

/// Every named type in `schema`, by full name.
pub(crate) fn names_of(schema: &Schema) -> Names {
    let mut names = Names::new();
    collect_names(schema, &mut names);
    names
}

fn collect_names(schema: &Schema, names: &mut Names) {
    match schema {
        Schema::Record(record) => {
            names.insert(record.name.fullname(None), schema.clone());
            for field in &record.fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Array(array) => collect_names(&array.items, names),
        Schema::Map(map) => collect_names(&map.types, names),
        Schema::Union(union) => {
            for variant in union.variants() {
                collect_names(variant, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        _ => {}
    }
}

/// `body` as a `T` written with `schema`, every byte used.
pub(crate) fn decode<T: DeserializeOwned>(
    schema: &Schema,
    names: &Names,
    body: &[u8],
) -> Result<T> {
    let mut input = body;
    let value = T::deserialize(Datum {
        schema,
        names,
        input: &mut input,
    })?;
    if !input.is_empty() {
        return fail("bytes left over");
    }
    Ok(value)
}

/// One value of `schema` at the front of `input`.
struct Datum<'a, 'i> {
    schema: &'a Schema,
    names: &'a Names,
    input: &'a mut &'i [u8],
}

impl<'a, 'i> Datum<'a, 'i> {
    fn at<'b>(&'b mut self, schema: &'b Schema) -> Datum<'b, 'i> {
        Datum {
            schema,
            names: self.names,
            input: &mut *self.input,
        }
    }

    /// A zigzag varint, as Avro writes `int` and `long`.
    fn long(&mut self) -> Result<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some((&byte, rest)) = self.input.split_first() else {
                return fail("input ends inside a number");
            };
            *self.input = rest;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        fail("number longer than ten bytes")
    }

    fn int(&mut self) -> Result<i32> {
        i32::try_from(self.long()?).or_else(|_| fail("int out of range"))
    }

    fn take(&mut self, len: usize) -> Result<&'i [u8]> {
        if len > self.input.len() {
            return fail("input ends inside a value");
        }
        let (taken, rest) = self.input.split_at(len);
        *self.input = rest;
        Ok(taken)
    }

    fn length(&mut self) -> Result<usize> {
        usize::try_from(self.long()?).or_else(|_| fail("negative length"))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.length()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).or_else(|_| fail("string is not UTF-8"))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().or_else(|_| fail("short value"))
    }

    fn resolved(&self) -> Result<&'a Schema> {
        match self.schema {
            Schema::Ref { name } => match self.names.get(&name.fullname(None)) {
                Some(schema) => Ok(schema),
                None => fail("unknown named type"),
            },
            schema => Ok(schema),
        }
    }

    /// The branch a union's index picks.
    fn branch(&mut self) -> Result<&'a Schema> {
        let Schema::Union(union) = self.resolved()? else {
            return fail("not a union");
        };
        let index = self.length()?;
        match union.variants().get(index) {
            Some(variant) => Ok(variant),
            None => fail("union index out of range"),
        }
    }
}

impl<'de> de::Deserializer<'de> for Datum<'_, '_> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        let schema = self.resolved()?;
        match schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match self.take(1)? {
                [0] => visitor.visit_bool(false),
                [1] => visitor.visit_bool(true),
                _ => fail("boolean is neither 0 nor 1"),
            },
            Schema::Int => visitor.visit_i32(self.int()?),
            Schema::Long => visitor.visit_i64(self.long()?),
            Schema::Float => visitor.visit_f32(f32::from_le_bytes(self.fixed()?)),
            Schema::Double => visitor.visit_f64(f64::from_le_bytes(self.fixed()?)),
            Schema::String => visitor.visit_string(self.string()?),
            Schema::Array(array) => visitor.visit_seq(Items {
                datum: self.at(&array.items),
                left_in_block: 0,
            }),
            Schema::Record(record) => visitor.visit_map(Fields {
                datum: self.at(schema),
                fields: &record.fields,
                next: 0,
            }),
            Schema::Union(_) => {
                let branch = self.branch()?;
                self.at(branch).deserialize_any(visitor)
            }
            _ => fail("a type the direct path does not read"),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        if !matches!(self.resolved()?, Schema::Union(_)) {
            return visitor.visit_some(self);
        }
        match self.branch()? {
            Schema::Null => visitor.visit_none(),
            branch => visitor.visit_some(self.at(branch)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map struct enum identifier ignored_any
    }
}

/// An array's items, block by block.
struct Items<'a, 'i> {
    datum: Datum<'a, 'i>,
    left_in_block: usize,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = Unsupported;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left_in_block == 0 {
            let count = self.datum.long()?;
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                self.datum.long()?;
            }
            self.left_in_block =
                usize::try_from(count.unsigned_abs()).or_else(|_| fail("block too long"))?;
            if self.left_in_block == 0 {
                return Ok(None);
            }
            // Every item takes a byte at least (arrays of nulls are not read
            // here), so a longer count is a lie, not a reason to loop.
            if matches!(self.datum.schema, Schema::Null)
                || self.left_in_block > self.datum.input.len()
            {
                return fail("array block longer than the input");
            }
        }
        self.left_in_block -= 1;
        let schema = self.datum.schema;
        seed.deserialize(self.datum.at(schema)).map(Some)
    }
}

/// A record's fields, in the writer's order.
struct Fields<'a, 'i> {
    datum: Datum<'a, 'i>,
    fields: &'a [RecordField],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_, '_> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.fields.get(self.next) {
            Some(field) => seed
                .deserialize(field.name.as_str().into_deserializer())
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let Some(field) = self.fields.get(self.next) else {
            return fail("value without a field");
        };
        self.next += 1;
        seed.deserialize(self.datum.at(&field.schema))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::*;
    use crate::{Codec, Encoding, Event, MatchCompleted, PlayerProfile};

    /// The Avro body of `event` as the codec writes it (single-object framing
    /// is 10 bytes of header).
    fn body_of<E: Event>(event: &E) -> Vec<u8> {
        let bytes = Codec::default()
            .encode(event, Encoding::SingleObject)
            .expect("encode");
        bytes[10..].to_vec()
    }

    fn a_match() -> MatchCompleted {
        serde_json::from_value(serde_json::json!({
            "match_id": 8_000_000_001_i64, "start_time": 1_700_000_000, "duration_secs": 2400,
            "radiant_win": false, "game_mode": 22, "lobby_type": 7, "league_id": 0,
            "cluster": 133, "source": "steam_api", "match_seq_num": 7,
            "radiant_team": {"team_id": 15, "name": "Team ✓\tTab"}, "dire_team": {"team_id": 16},
            "radiant_score": 31, "picks_bans": [{"is_pick": true, "hero_id": 5, "team": 0, "order": 0}],
            "players": [
                {"account_id": 4_294_967_294_i64, "player_slot": 0, "hero_id": 5, "kills": -1,
                 "deaths": 2, "assists": i32::MAX, "last_hits": i32::MIN, "denies": 0,
                 "gold_per_min": 600, "xp_per_min": 700, "level": 25, "hero_damage": i64::MAX,
                 "net_worth": i64::MIN, "items": [1, 0, 3], "backpack": [], "persona_name": "é"},
                {"player_slot": 132, "hero_id": 6, "kills": 0, "deaths": 0, "assists": 0,
                 "last_hits": 0, "denies": 0, "gold_per_min": 0, "xp_per_min": 0, "level": 1}
            ]
        }))
        .expect("a MatchCompleted")
    }

    /// The fast path must not silently fall back: it reads what we write.
    #[test]
    fn reads_a_match_and_a_profile_as_written() {
        let event = a_match();
        let schema = MatchCompleted::schema();
        let decoded: MatchCompleted =
            decode(schema, &names_of(schema), &body_of(&event)).expect("direct decode");
        assert_eq!(decoded, event);
        let profile: PlayerProfile = serde_json::from_value(serde_json::json!({
            "account_id": 1, "persona_name": "x", "rank_tier": 80,
            "observed_at_ms": 5, "source": "rank"
        }))
        .expect("a PlayerProfile");
        let schema = PlayerProfile::schema();
        let decoded: PlayerProfile =
            decode(schema, &names_of(schema), &body_of(&profile)).expect("direct decode");
        assert_eq!(decoded, profile);
    }

    #[test]
    fn refuses_cut_and_overlong_input() {
        let schema = MatchCompleted::schema();
        let names = names_of(schema);
        let body = body_of(&a_match());
        for cut in [0, 1, body.len() / 2, body.len() - 1] {
            assert!(
                decode::<MatchCompleted>(schema, &names, &body[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A block of 2^62 items in a few bytes: refused, not looped over.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f];
        let ints = Schema::Array(apache_avro::schema::ArraySchema {
            items: Box::new(Schema::Int),
            attributes: Default::default(),
        });
        assert!(decode::<Vec<i32>>(&ints, &Names::new(), &huge).is_err());
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode::<MatchCompleted>(schema, &names, &longer).is_err());
    }

    #[test]
    fn longs_read_as_apache_avro_writes_them() {
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let bytes = apache_avro::to_avro_datum(&Schema::Long, Value::Long(n)).expect("encode");
            assert_eq!(
                decode::<i64>(&Schema::Long, &Names::new(), &bytes).expect("decode"),
                n
            );
        }
    }
}
