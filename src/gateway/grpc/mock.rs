//! `mock_v3` for gRPC: a response message generated from the method's output descriptor, the
//! way the HTTP mock generates JSON: seeded by the method, the request bytes and the persona,
//! so the same call gets the same bytes.
//!
//! Rules: every field is set (proto3 has no `required`); a `oneof` sets its first member;
//! repeated fields get one or two elements and maps one entry; enums take their first value
//! that is not the zero (`UNSPECIFIED`) one; strings follow the field name (`*_id`: a UUID,
//! `email`, `url`, else a word and a number); `google.protobuf.Timestamp` is a time in
//! 2024–2026, `Duration` a few minutes, `Any`, `Struct`, `Value`, `ListValue`, `FieldMask` and
//! `Empty` stay empty. Past [`MAX_DEPTH`] nested messages, lists and maps are left unset, so
//! recursive messages stop. A persona trait replaces a singular scalar or enum field of the
//! same name when its JSON value fits the field's type.

use indexmap::IndexMap;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::Value as Json;
use sha2::Digest as _;

/// Nesting depth past which message fields, lists and maps are left unset.
pub const MAX_DEPTH: usize = 4;

const WORDS: [&str; 8] = [
    "alpha", "bravo", "cedar", "delta", "ember", "fjord", "garnet", "harbor",
];

/// The seed of a call: a hash of the method's path, the request message and the persona.
pub fn seed_of(method: &str, request: &[u8], persona: Option<&str>) -> u64 {
    let mut h = sha2::Sha256::new();
    for p in [method.as_bytes(), request, persona.unwrap_or("").as_bytes()] {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// A message of type `desc`, from `seed`, with `persona`'s traits.
pub fn generate(
    desc: &MessageDescriptor,
    seed: u64,
    persona: Option<&IndexMap<String, Json>>,
) -> DynamicMessage {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
        persona,
    };
    g.message(desc, 0)
}

struct Gen<'a> {
    rng: fastrand::Rng,
    persona: Option<&'a IndexMap<String, Json>>,
}

impl Gen<'_> {
    fn message(&mut self, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut m = DynamicMessage::new(desc.clone());
        match desc.full_name() {
            "google.protobuf.Timestamp" => {
                // 2024-01-01 .. 2026-12-31, whole seconds.
                let secs = self.rng.i64(1_704_067_200..1_798_675_200);
                m.set_field_by_name("seconds", Value::I64(secs));
                return m;
            }
            "google.protobuf.Duration" => {
                m.set_field_by_name("seconds", Value::I64(self.rng.i64(1..3600)));
                return m;
            }
            "google.protobuf.Any"
            | "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue"
            | "google.protobuf.FieldMask"
            | "google.protobuf.Empty" => return m,
            _ => {}
        }
        let mut oneofs_done: Vec<String> = Vec::new();
        for field in desc.fields() {
            if let Some(oneof) = field.containing_oneof()
                && !oneof.is_synthetic()
            {
                if oneofs_done.iter().any(|o| o == oneof.name()) {
                    continue;
                }
                oneofs_done.push(oneof.name().to_string());
            }
            if let Some(v) = self.trait_for(&field) {
                m.set_field(&field, v);
                continue;
            }
            let nested = matches!(field.kind(), Kind::Message(_));
            if depth >= MAX_DEPTH && (nested || field.is_list() || field.is_map()) {
                continue;
            }
            let v = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    continue;
                };
                let key = entry.map_entry_key_field();
                let value = entry.map_entry_value_field();
                let mut map = std::collections::HashMap::new();
                let k = self.map_key(&key.kind(), key.name());
                map.insert(k, self.single(&value.kind(), field.name(), depth));
                Value::Map(map)
            } else if field.is_list() {
                let n = self.rng.usize(1..=2);
                Value::List(
                    (0..n)
                        .map(|_| self.single(&field.kind(), field.name(), depth))
                        .collect(),
                )
            } else {
                self.single(&field.kind(), field.name(), depth)
            };
            m.set_field(&field, v);
        }
        m
    }

    fn single(&mut self, kind: &Kind, name: &str, depth: usize) -> Value {
        match kind {
            Kind::Double => Value::F64(self.decimal()),
            Kind::Float => Value::F32(self.decimal() as f32),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.rng.i32(1..1000)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.rng.i64(1..100_000)),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.rng.u32(1..1000)),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.rng.u64(1..100_000)),
            Kind::Bool => Value::Bool(self.rng.bool()),
            Kind::String => Value::String(self.string(name)),
            Kind::Bytes => Value::Bytes(format!("mock{}", self.rng.u32(..10_000)).into()),
            Kind::Enum(e) => {
                let first = e
                    .values()
                    .find(|v| v.number() != 0)
                    .or_else(|| e.values().next())
                    .map_or(0, |v| v.number());
                Value::EnumNumber(first)
            }
            Kind::Message(md) => Value::Message(self.message(md, depth + 1)),
        }
    }

    fn decimal(&mut self) -> f64 {
        (self.rng.f64() * 100_000.0).round() / 100.0
    }

    fn map_key(&mut self, kind: &Kind, name: &str) -> MapKey {
        match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(self.rng.i32(1..1000)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(self.rng.i64(1..1000)),
            Kind::Uint32 | Kind::Fixed32 => MapKey::U32(self.rng.u32(1..1000)),
            Kind::Uint64 | Kind::Fixed64 => MapKey::U64(self.rng.u64(1..1000)),
            Kind::Bool => MapKey::Bool(true),
            _ => MapKey::String(format!("{}{}", name_word(name), self.rng.u32(1..100))),
        }
    }

    fn string(&mut self, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let n = self.rng.u32(1..10_000);
        if lower == "id" || lower.ends_with("_id") || lower.ends_with("uuid") {
            let b = self.rng.u128(..);
            let h = format!("{b:032x}");
            return format!(
                "{}-{}-4{}-a{}-{}",
                &h[0..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..32]
            );
        }
        if lower.contains("email") {
            return format!("user{n}@example.com");
        }
        if lower.ends_with("url") || lower.ends_with("uri") {
            return format!("https://example.com/r/{n}");
        }
        format!("{}{n}", WORDS[n as usize % WORDS.len()])
    }

    /// The persona's trait for `field`, when it has one of that name that fits its type.
    fn trait_for(&self, field: &FieldDescriptor) -> Option<Value> {
        let t = self.persona?.get(field.name())?;
        if field.is_list() || field.is_map() {
            return None;
        }
        Some(match (field.kind(), t) {
            (Kind::String, Json::String(s)) => Value::String(s.clone()),
            (Kind::Bool, Json::Bool(b)) => Value::Bool(*b),
            (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32, Json::Number(n)) => {
                Value::I32(i32::try_from(n.as_i64()?).ok()?)
            }
            (Kind::Int64 | Kind::Sint64 | Kind::Sfixed64, Json::Number(n)) => {
                Value::I64(n.as_i64()?)
            }
            (Kind::Uint32 | Kind::Fixed32, Json::Number(n)) => {
                Value::U32(u32::try_from(n.as_u64()?).ok()?)
            }
            (Kind::Uint64 | Kind::Fixed64, Json::Number(n)) => Value::U64(n.as_u64()?),
            (Kind::Double, Json::Number(n)) => Value::F64(n.as_f64()?),
            (Kind::Float, Json::Number(n)) => Value::F32(n.as_f64()? as f32),
            (Kind::Enum(e), Json::String(s)) => Value::EnumNumber(e.get_value_by_name(s)?.number()),
            _ => return None,
        })
    }
}

fn name_word(name: &str) -> &str {
    if name.is_empty() { "key" } else { name }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost::Message as _;

    /// Compiles `src` as `t/v1/t.proto` in a scratch directory, as the route table does.
    pub(crate) fn compile(src: &str) -> prost_reflect::DescriptorPool {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("t/v1")).expect("mkdir");
        std::fs::write(dir.path().join("t/v1/t.proto"), src).expect("write");
        let files = crate::git::revision::DirFiles::new(dir.path()).expect("dir");
        crate::schema_diff::proto::compile(&files, "t/v1/t.proto", &Default::default())
            .expect("compiles")
            .pool()
            .clone()
    }

    fn pool() -> prost_reflect::DescriptorPool {
        compile(
            r#"
syntax = "proto3";
package t.v1;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
enum Tier { TIER_UNSPECIFIED = 0; TIER_GOLD = 1; }
message Node { string name = 1; Node child = 2; repeated Node kids = 3; }
message Item {
  string item_id = 1;
  string name = 2;
  int32 in_stock = 3;
  Tier tier = 4;
  map<string, int64> counts = 5;
  repeated string tags = 6;
  oneof choice { string a = 7; int32 b = 8; }
  google.protobuf.Timestamp at = 9;
  google.protobuf.StringValue note = 10;
  Node tree = 11;
  optional double price = 12;
  bytes blob = 13;
}
"#,
        )
    }

    #[test]
    fn generation_is_deterministic_bounded_and_honours_traits() {
        let pool = pool();
        let item = pool.get_message_by_name("t.v1.Item").expect("Item");
        let a = generate(&item, 7, None).encode_to_vec();
        let b = generate(&item, 7, None).encode_to_vec();
        assert_eq!(a, b);
        assert_ne!(a, generate(&item, 8, None).encode_to_vec());
        let m = generate(&item, 7, None);
        let get = |n: &str| m.get_field_by_name(n).expect(n).into_owned();
        assert_eq!(get("tier"), Value::EnumNumber(1));
        assert!(get("item_id").as_str().is_some_and(|s| s.len() == 36));
        assert!(m.has_field_by_name("a") && !m.has_field_by_name("b"));
        let at = get("at");
        let secs = at
            .as_message()
            .and_then(|t| t.get_field_by_name("seconds"))
            .and_then(|s| s.as_i64());
        assert!(secs.is_some_and(|s| s > 1_700_000_000));
        assert_eq!(get("counts").as_map().map(|m| m.len()), Some(1));
        // Recursion stops.
        let mut depth = 0;
        let mut cur = get("tree").as_message().cloned();
        while let Some(n) = cur {
            depth += 1;
            cur = n
                .has_field_by_name("child")
                .then(|| n.get_field_by_name("child"))
                .flatten()
                .and_then(|c| c.as_message().cloned());
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
        // Traits that fit replace fields of the same name; others are ignored.
        let traits: IndexMap<String, Json> = serde_json::from_value(serde_json::json!({
            "name": "Gold", "in_stock": 42, "tier": "TIER_GOLD", "tags": "x", "price": "nope"
        }))
        .expect("traits");
        let p = generate(&item, 7, Some(&traits));
        assert_eq!(
            p.get_field_by_name("name").map(|v| v.into_owned()),
            Some(Value::String("Gold".into()))
        );
        assert_eq!(
            p.get_field_by_name("in_stock").map(|v| v.into_owned()),
            Some(Value::I32(42))
        );
        assert!(
            p.get_field_by_name("price")
                .is_some_and(|v| v.as_f64().is_some())
        );
        // What is generated decodes as the type.
        DynamicMessage::decode(item, a.as_slice()).expect("decodes");
    }

    #[test]
    fn seeds_depend_on_method_request_and_persona() {
        let s = seed_of("/a.B/C", b"x", None);
        assert_eq!(s, seed_of("/a.B/C", b"x", None));
        assert_ne!(s, seed_of("/a.B/C", b"y", None));
        assert_ne!(s, seed_of("/a.B/D", b"x", None));
        assert_ne!(s, seed_of("/a.B/C", b"x", Some("gold")));
    }
}
