//! Schema compatibility, as Pulsar's checkers decide it: for AVRO and JSON schemas (both are
//! Avro definitions) Avro's schema resolution — can a reader schema read what a writer schema
//! wrote — and for every other type, the same type is compatible. Pure functions over the
//! parsed definitions, unit-tested without I/O.
//!
//! Resolution rules (Avro specification, "Schema Resolution"): a writer union is readable if
//! each branch is; a reader union reads the first branch that can; primitives match by name
//! with the promotions int→long/float/double, long→float/double, float→double,
//! string↔bytes; records match fields by name (a reader field the writer lacks needs a
//! default; a writer field the reader lacks is skipped); enums need the writer's symbols in
//! the reader (or a reader default); arrays, maps and fixed compare their items, values and
//! size. Record names are not compared (Pulsar's Python client names records after their
//! classes, and evolving one class into another is what its users do).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Pulsar's schema compatibility strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Anything goes.
    AlwaysCompatible,
    /// Only an identical schema.
    AlwaysIncompatible,
    /// The new schema reads data of the latest.
    Backward,
    /// The latest schema reads data of the new one.
    Forward,
    /// Both.
    Full,
    /// Backward against every version.
    BackwardTransitive,
    /// Forward against every version.
    ForwardTransitive,
    /// Full against every version.
    FullTransitive,
}

impl Strategy {
    /// Every name Pulsar accepts, with the strategy it means (`UNDEFINED`: the default).
    pub fn parse(s: &str) -> Option<Option<Strategy>> {
        Some(Some(match s {
            "UNDEFINED" => return Some(None),
            "ALWAYS_COMPATIBLE" => Strategy::AlwaysCompatible,
            "ALWAYS_INCOMPATIBLE" => Strategy::AlwaysIncompatible,
            "BACKWARD" => Strategy::Backward,
            "FORWARD" => Strategy::Forward,
            "FULL" => Strategy::Full,
            "BACKWARD_TRANSITIVE" => Strategy::BackwardTransitive,
            "FORWARD_TRANSITIVE" => Strategy::ForwardTransitive,
            "FULL_TRANSITIVE" => Strategy::FullTransitive,
            _ => return None,
        }))
    }

    /// Pulsar's name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::AlwaysCompatible => "ALWAYS_COMPATIBLE",
            Strategy::AlwaysIncompatible => "ALWAYS_INCOMPATIBLE",
            Strategy::Backward => "BACKWARD",
            Strategy::Forward => "FORWARD",
            Strategy::Full => "FULL",
            Strategy::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Strategy::ForwardTransitive => "FORWARD_TRANSITIVE",
            Strategy::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every existing version is checked, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Strategy::BackwardTransitive | Strategy::ForwardTransitive | Strategy::FullTransitive
        )
    }
}

/// Whether a schema of type `new_type` with definition `new` may follow `old` (same
/// meaning) under `strategy`; `Err` says why not.
pub fn check(
    strategy: Strategy,
    (old_type, old): (i32, &[u8]),
    (new_type, new): (i32, &[u8]),
) -> Result<(), String> {
    match strategy {
        Strategy::AlwaysCompatible => return Ok(()),
        Strategy::AlwaysIncompatible => {
            return Err("the compatibility strategy is ALWAYS_INCOMPATIBLE".into());
        }
        _ => {}
    }
    if old_type != new_type {
        return Err(format!(
            "the schema type changes ({} to {})",
            type_name(old_type),
            type_name(new_type)
        ));
    }
    if !is_avro_like(new_type) {
        return Ok(());
    }
    let old = parse(old)?;
    let new = parse(new)?;
    let backward = || {
        can_read(&new, &old)
            .map_err(|e| format!("the new schema cannot read data of the old one: {e}"))
    };
    let forward = || {
        can_read(&old, &new)
            .map_err(|e| format!("the old schema cannot read data of the new one: {e}"))
    };
    match strategy {
        Strategy::Backward | Strategy::BackwardTransitive => backward(),
        Strategy::Forward | Strategy::ForwardTransitive => forward(),
        _ => backward().and_then(|()| forward()),
    }
}

/// AVRO (4) and JSON (2): Avro definitions that resolution applies to.
pub fn is_avro_like(t: i32) -> bool {
    t == 2 || t == 4
}

/// Parses an Avro definition (JSON); `Err` for anything else.
pub fn parse(data: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(data).map_err(|e| format!("not a valid schema definition: {e}"))
}

fn type_name(t: i32) -> String {
    crate::protocol::pb::schema::Type::try_from(t)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| t.to_string())
}

/// Named types of a schema by full and short name.
type Names<'a> = HashMap<String, &'a Value>;

fn collect<'a>(v: &'a Value, ns: &str, names: &mut Names<'a>) {
    match v {
        Value::Array(branches) => branches.iter().for_each(|b| collect(b, ns, names)),
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
            let ns = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
            if matches!(ty, "record" | "enum" | "fixed" | "error")
                && let Some(name) = o.get("name").and_then(Value::as_str)
            {
                names.insert(name.to_owned(), v);
                let short = name.rsplit('.').next().unwrap_or(name);
                names.insert(short.to_owned(), v);
                if !ns.is_empty() && !name.contains('.') {
                    names.insert(format!("{ns}.{name}"), v);
                }
            }
            if let Some(fields) = o.get("fields").and_then(Value::as_array) {
                for f in fields {
                    if let Some(t) = f.get("type") {
                        collect(t, ns, names);
                    }
                }
            }
            for key in ["items", "values"] {
                if let Some(t) = o.get(key) {
                    collect(t, ns, names);
                }
            }
            if !matches!(ty, "record" | "enum" | "fixed" | "error" | "array" | "map")
                && let Some(t) = o.get("type")
                && !t.is_string()
            {
                collect(t, ns, names);
            }
        }
        _ => {}
    }
}

/// Whether data written with `writer` can be read with `reader`.
pub fn can_read(reader: &Value, writer: &Value) -> Result<(), String> {
    let (mut rn, mut wn) = (Names::new(), Names::new());
    collect(reader, "", &mut rn);
    collect(writer, "", &mut wn);
    Resolver {
        rn,
        wn,
        seen: HashSet::new(),
        depth: 0,
        work: 0,
    }
    .read(reader, writer, "")
}

/// Deepest nesting of types (through fields, items, values, union branches and named
/// references) one check follows. Named references make the logical depth unbounded while the
/// JSON stays shallow, and a stack overflow aborts the whole broker: real schemas nest a few
/// dozen levels at most.
pub const MAX_DEPTH: usize = 64;

/// Most (reader, writer) comparisons one check makes: a reader union's branches are tried in
/// turn, which is exponential in nested unions; past this the check fails instead of holding a
/// worker thread.
pub const MAX_WORK: usize = 200_000;

struct Resolver<'a> {
    rn: Names<'a>,
    wn: Names<'a>,
    /// Record pairs being compared (recursive types end here).
    seen: HashSet<(usize, usize)>,
    /// Current nesting of `read` calls.
    depth: usize,
    /// Comparisons made so far.
    work: usize,
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

impl<'a> Resolver<'a> {
    /// A schema with references resolved and `{"type": "int"}` unwrapped to `"int"`.
    fn resolve(v: &'a Value, names: &Names<'a>) -> &'a Value {
        match v {
            Value::String(s) if !PRIMITIVES.contains(&s.as_str()) => {
                names.get(s.as_str()).copied().unwrap_or(v)
            }
            Value::Object(o) => match o.get("type") {
                Some(t @ Value::String(s))
                    if PRIMITIVES.contains(&s.as_str()) && o.get("logicalType").is_none() =>
                {
                    t
                }
                _ => v,
            },
            _ => v,
        }
    }

    fn kind(v: &Value) -> &str {
        match v {
            Value::String(s) => s,
            Value::Array(_) => "union",
            Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or("?"),
            _ => "?",
        }
    }

    fn read(&mut self, reader: &'a Value, writer: &'a Value, at: &str) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "{}: the schema nests deeper than {MAX_DEPTH} levels",
                here(at)
            ));
        }
        self.work += 1;
        if self.work > MAX_WORK {
            return Err(format!(
                "the schema takes more than {MAX_WORK} steps to compare"
            ));
        }
        self.depth += 1;
        let result = self.read_nested(reader, writer, at);
        self.depth -= 1;
        result
    }

    fn read_nested(
        &mut self,
        reader: &'a Value,
        writer: &'a Value,
        at: &str,
    ) -> Result<(), String> {
        let r = Self::resolve(reader, &self.rn);
        let w = Self::resolve(writer, &self.wn);
        if let Value::Array(branches) = w {
            for b in branches {
                self.read(r, b, at)?;
            }
            return Ok(());
        }
        if let Value::Array(branches) = r {
            for b in branches {
                // Restoring `seen` costs its size: counted as work too.
                self.work += self.seen.len();
                let saved = self.seen.clone();
                if self.read(b, w, at).is_ok() {
                    return Ok(());
                }
                if self.work > MAX_WORK {
                    return Err(format!(
                        "the schema takes more than {MAX_WORK} steps to compare"
                    ));
                }
                self.seen = saved;
            }
            return Err(format!(
                "{}: no branch of the reader's union reads a {}",
                here(at),
                Self::kind(w)
            ));
        }
        let (rk, wk) = (Self::kind(r), Self::kind(w));
        let promoted = matches!(
            (wk, rk),
            ("int", "long" | "float" | "double")
                | ("long", "float" | "double")
                | ("float", "double")
                | ("string", "bytes")
                | ("bytes", "string")
        );
        if rk != wk && !promoted {
            return Err(format!("{}: a {wk} cannot be read as a {rk}", here(at)));
        }
        match rk {
            "record" | "error" => self.record(r, w, at),
            "enum" => {
                let symbols = |v: &Value| -> Vec<String> {
                    v.get("symbols")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (rs, ws) = (symbols(r), symbols(w));
                match ws.iter().find(|s| !rs.contains(s)) {
                    Some(s) if r.get("default").is_none() => Err(format!(
                        "{}: the reader's enum lacks the symbol {s}",
                        here(at)
                    )),
                    _ => Ok(()),
                }
            }
            "array" => match (r.get("items"), w.get("items")) {
                (Some(ri), Some(wi)) => self.read(ri, wi, &format!("{at}[]")),
                _ => Err(format!("{}: an array without items", here(at))),
            },
            "map" => match (r.get("values"), w.get("values")) {
                (Some(rv), Some(wv)) => self.read(rv, wv, &format!("{at}{{}}")),
                _ => Err(format!("{}: a map without values", here(at))),
            },
            "fixed" => {
                if r.get("size") == w.get("size") {
                    Ok(())
                } else {
                    Err(format!("{}: fixed sizes differ", here(at)))
                }
            }
            _ => Ok(()),
        }
    }

    fn record(&mut self, r: &'a Value, w: &'a Value, at: &str) -> Result<(), String> {
        if !self
            .seen
            .insert((r as *const Value as usize, w as *const Value as usize))
        {
            return Ok(());
        }
        let fields = |v: &'a Value| -> Vec<&'a Value> {
            v.get("fields")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        let wfields = fields(w);
        for rf in fields(r) {
            let name = rf.get("name").and_then(Value::as_str).unwrap_or("");
            let aliases: Vec<&str> = rf
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let path = if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            };
            let wf = wfields.iter().find(|wf| {
                let wname = wf.get("name").and_then(Value::as_str).unwrap_or("");
                wname == name || aliases.contains(&wname)
            });
            match (wf, rf.get("type")) {
                (Some(wf), Some(rt)) => match wf.get("type") {
                    Some(wt) => self.read(rt, wt, &path)?,
                    None => return Err(format!("field {path}: the writer's field has no type")),
                },
                (None, _) if rf.get("default").is_some() => {}
                (None, _) => {
                    return Err(format!(
                        "field {path}: the writer lacks it and the reader has no default"
                    ));
                }
                (Some(_), None) => return Err(format!("field {path}: no type")),
            }
        }
        Ok(())
    }
}

fn here(at: &str) -> String {
    if at.is_empty() {
        "the schema".into()
    } else {
        format!("field {at}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(name: &str, fields: Value) -> Value {
        json!({"type": "record", "name": name, "fields": fields})
    }

    #[test]
    fn a_new_optional_field_is_backward_and_forward_compatible() {
        let v1 = record("User", json!([{"name": "name", "type": "string"}]));
        let v2 = record(
            "User",
            json!([{"name": "name", "type": "string"},
                   {"name": "age", "type": ["null", "int"], "default": null}]),
        );
        assert!(can_read(&v2, &v1).is_ok(), "new reads old: age defaults");
        assert!(can_read(&v1, &v2).is_ok(), "old reads new: age skipped");
        let v3 = record(
            "User",
            json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]),
        );
        let e = can_read(&v3, &v1).unwrap_err();
        assert!(e.contains("field age"), "{e}");
    }

    #[test]
    fn unions_promotions_and_python_style_records() {
        // The Python client's evolution in its own test: nullable age → required age.
        let user1 = record(
            "User1",
            json!([{"name": "name", "type": ["null", "string"], "default": null},
                   {"name": "age", "type": ["null", "int"], "default": null}]),
        );
        let user2 = record(
            "User2",
            json!([{"name": "age", "type": "int"},
                   {"name": "name", "type": ["null", "string"], "default": null}]),
        );
        assert!(can_read(&user1, &user2).is_ok(), "FORWARD holds");
        assert!(
            can_read(&user2, &user1).is_err(),
            "BACKWARD does not (null age)"
        );
        let s = |v: &Value| serde_json::to_vec(v).unwrap();
        assert!(check(Strategy::Forward, (4, &s(&user1)), (4, &s(&user2))).is_ok());
        assert!(check(Strategy::Full, (4, &s(&user1)), (4, &s(&user2))).is_err());
        assert!(can_read(&json!("long"), &json!("int")).is_ok());
        assert!(can_read(&json!("int"), &json!("long")).is_err());
        assert!(
            can_read(
                &json!({"type": "array", "items": "double"}),
                &json!({"type": "array", "items": "float"})
            )
            .is_ok()
        );
    }

    #[test]
    fn enums_named_references_and_types() {
        let color = |symbols: Value| json!({"type": "enum", "name": "Color", "symbols": symbols});
        assert!(can_read(&color(json!(["R", "G", "B"])), &color(json!(["R", "G"]))).is_ok());
        assert!(can_read(&color(json!(["R"])), &color(json!(["R", "G"]))).is_err());
        // A reference by name to a type defined earlier in the schema.
        let node = record(
            "Node",
            json!([{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"], "default": null}]),
        );
        assert!(can_read(&node, &node).is_ok(), "recursive types terminate");
        assert!(
            check(Strategy::Full, (1, b""), (1, b"")).is_ok(),
            "STRING is STRING"
        );
        assert!(
            check(Strategy::Full, (1, b""), (4, b"{}")).is_err(),
            "a type change"
        );
        assert!(check(Strategy::AlwaysCompatible, (1, b""), (4, b"{}")).is_ok());
        assert!(check(Strategy::Full, (4, b"not json"), (4, b"{}")).is_err());
        assert_eq!(Strategy::parse("FORWARD"), Some(Some(Strategy::Forward)));
        assert_eq!(Strategy::parse("UNDEFINED"), Some(None));
        assert_eq!(Strategy::parse("SIDEWAYS"), None);
    }

    /// Review finding 1: a chain of named records 50,000 long, referenced by name so the
    /// JSON stays shallow, used to overflow the worker's stack and abort the broker.
    #[test]
    fn a_deep_chain_of_named_records_is_refused_not_a_stack_overflow() {
        let n = 50_000;
        let mut chain: Vec<Value> = (0..n)
            .map(|i| {
                record(
                    &format!("A{i}"),
                    json!([{"name": "f", "type": format!("A{}", i + 1)}]),
                )
            })
            .collect();
        chain.push(record(
            &format!("A{n}"),
            json!([{"name": "f", "type": "int"}]),
        ));
        let chain = Value::Array(chain);
        let old = record("W", json!([{"name": "f", "type": "W"}]));
        // Run on a thread with a small stack: what is refused must be refused by the budget.
        let e = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || can_read(&chain, &old).and_then(|()| can_read(&old, &chain)))
            .unwrap()
            .join()
            .expect("no stack overflow")
            .unwrap_err();
        // Refused by the depth limit or by the work budget, whichever comes first.
        assert!(
            e.contains("deeper than 64") || e.contains("steps to compare"),
            "{e}"
        );
        // Nested inline 100 deep (no union to try): the depth limit answers.
        let mut deep = json!("int");
        for k in 0..100 {
            deep = record(&format!("D{k}"), json!([{"name": "f", "type": deep}]));
        }
        let e = can_read(&deep, &deep).unwrap_err();
        assert!(e.contains("deeper than 64"), "{e}");
        // A chain within the limit is compared as before.
        let mut ok: Vec<Value> = (0..20)
            .map(|i| {
                record(
                    &format!("B{i}"),
                    json!([{"name": "f", "type": format!("B{}", i + 1)}]),
                )
            })
            .collect();
        ok.push(record("B20", json!([{"name": "f", "type": "int"}])));
        let ok = Value::Array(ok);
        assert!(can_read(&ok, &ok).is_ok());
    }

    /// Nested reader unions whose branches all fail deep down: trying each branch in turn is
    /// exponential (2^31 comparisons here); the work budget ends it with an error.
    #[test]
    fn nested_unions_hit_the_work_budget() {
        // Reader: ra_k and rb_k are records whose field is the union [ra_(k-1), rb_(k-1)],
        // defined once each (by name) in a field the writer lacks; ra_0 and rb_0 hold an int.
        let mut defs = vec![];
        for k in 0..=30 {
            let inner = if k == 0 {
                json!("int")
            } else {
                json!([format!("ra{}", k - 1), format!("rb{}", k - 1)])
            };
            for tag in ["ra", "rb"] {
                defs.push(record(
                    &format!("{tag}{k}"),
                    json!([{"name": "f", "type": inner.clone()}]),
                ));
            }
        }
        let reader = record(
            "R",
            json!([{"name": "defs", "type": Value::Array(defs), "default": null},
                   {"name": "f", "type": ["ra30", "rb30"]}]),
        );
        // Writer: the same nesting ending in a string, which no reader branch reads.
        let mut chain = json!("string");
        for k in 0..=30 {
            chain = record(&format!("X{k}"), json!([{"name": "f", "type": chain}]));
        }
        let writer = record("R", json!([{"name": "f", "type": chain}]));
        let e = can_read(&reader, &writer).unwrap_err();
        assert!(e.contains("steps to compare"), "{e}");
    }
}
