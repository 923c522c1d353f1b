//! Configuration loading shared by every server: a TOML file, overridden by `MAGNETAR_*`
//! environment variables, overridden by command-line flags.
//!
//! A server's `Config` is a serde struct with defaults (`#[serde(default)]`) and
//! `#[serde(deny_unknown_fields)]`, so a misspelt key is an error naming the key rather than a
//! silently ignored setting. Environment variables map to keys by lower-casing and splitting
//! sections on a double underscore: `MAGNETAR_JOURNAL__MAX_GROUP_WAIT=2ms` sets
//! `journal.max_group_wait`. Only variables that name a key of the config are applied, so
//! variables meant for the command line (`MAGNETAR_META_URL`) do not collide.
//!
//! This module never reads the process environment itself: the binary passes it in.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table, Value};

use crate::error::{Error, Result};

/// Prefix of the environment variables that configure servers.
pub const ENV_PREFIX: &str = "MAGNETAR_";

/// Loads `T` from `file` (if any), then `env` (`MAGNETAR_*` pairs), then `overrides`
/// (dotted key, value as typed on the command line), later sources winning.
pub fn load<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, String)],
) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default,
{
    load_layers(file, &[], env, overrides)
}

/// [`load`] with `base` (dotted key, value as typed) between the file and the environment:
/// settings read from another format (Pulsar's `broker.conf`), which `MAGNETAR_*` variables
/// and flags still override.
pub fn load_layers<T>(
    file: Option<&Path>,
    base: &[(String, String)],
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, String)],
) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default,
{
    let defaults = Value::try_from(T::default()).map_err(|e| Error::ConfigValue {
        key: "<defaults>".into(),
        message: e.to_string(),
    })?;
    let mut merged = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    for (key, value) in base {
        set(&mut merged, key, scalar(&defaults, key, value))?;
    }
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        if lookup(&defaults, &key).is_some() {
            set(&mut merged, &key, scalar(&defaults, &key, &value))?;
        }
    }
    for (key, value) in overrides {
        set(&mut merged, key, scalar(&defaults, key, value))?;
    }
    let de = Value::Table(merged);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let message = e.inner().to_string();
        Error::ConfigValue {
            key: e.path().to_string(),
            // The deserializer appends the path on a second line; the key is already named.
            message: message.lines().next().unwrap_or_default().to_owned(),
        }
    })
}

fn read_file(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| Error::ConfigSyntax {
        path: path.to_owned(),
        message: e.to_string().replace('\n', " "),
    })
}

fn lookup<'a>(root: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(root, |v, part| v.as_table()?.get(part))
}

/// Interprets a textual value with the type of the default at the same key: strings stay
/// strings ("123" for a host name), anything else is parsed as a TOML value.
fn scalar(defaults: &Value, key: &str, text: &str) -> Value {
    if let Some(Value::String(_)) = lookup(defaults, key) {
        return Value::String(text.to_owned());
    }
    let probe = format!("v = {text}");
    match probe.parse::<Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(text.to_owned())),
        Err(_) => Value::String(text.to_owned()),
    }
}

fn set(root: &mut Table, dotted: &str, value: Value) -> Result<()> {
    let mut parts = dotted.split('.').peekable();
    let mut table = root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return Ok(());
        }
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry.as_table_mut().ok_or_else(|| Error::ConfigValue {
            key: dotted.to_owned(),
            message: format!("`{part}` is a value, not a section"),
        })?;
    }
    Err(Error::ConfigValue {
        key: dotted.to_owned(),
        message: "empty key".into(),
    })
}

/// A size in bytes, written in config files as `"128MiB"`, `"64KiB"`, `"1GiB"`, `"10MB"` or a
/// plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let (digits, mult) = UNITS
            .iter()
            .find_map(|(u, m)| s.strip_suffix(u).map(|d| (d.trim(), *m)))
            .unwrap_or((s, 1));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a size; write e.g. \"128MiB\" or \"4096\""))?;
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in &UNITS[..3] {
            if self.0 >= *mult && self.0.is_multiple_of(*mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Serde adapter for `std::time::Duration` written as `"2ms"`, `"10s"`, `"1m 30s"`.
/// Use with `#[serde(with = "common::config::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration in humantime form.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads a humantime duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"2ms\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Journal {
        #[serde(with = "duration")]
        max_group_wait: Duration,
        max_group_bytes: ByteSize,
        dir: String,
    }

    impl Default for Journal {
        fn default() -> Self {
            Journal {
                max_group_wait: Duration::from_millis(2),
                max_group_bytes: ByteSize(512 << 10),
                dir: "data/journal".into(),
            }
        }
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        port: u16,
        journal: Journal,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "port = 1\n[journal]\nmax_group_wait = \"5ms\"\n").unwrap();
        let cfg: Cfg = load(
            Some(&file),
            env(&[
                ("MAGNETAR_PORT", "2"),
                ("MAGNETAR_JOURNAL__MAX_GROUP_BYTES", "1MiB"),
                ("MAGNETAR_JOURNAL__DIR", "123"),
                ("MAGNETAR_META_URL", "etcd://x"), // not a config key: ignored
                ("PATH", "/bin"),
            ]),
            &[("port", "3".into())],
        )
        .unwrap();
        assert_eq!(cfg.port, 3);
        assert_eq!(cfg.journal.max_group_wait, Duration::from_millis(5));
        assert_eq!(cfg.journal.max_group_bytes, ByteSize(1 << 20));
        assert_eq!(cfg.journal.dir, "123");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let err = load::<Cfg>(None, env(&[]), &[("journal.max_group_wait", "soon".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("journal.max_group_wait"), "{err}");
        let err = load::<Cfg>(None, env(&[]), &[("journal.typo", "1".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("typo"), "{err}");
        let err = load::<Cfg>(None, env(&[]), &[("port", "x".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("128MiB".parse::<ByteSize>().unwrap(), ByteSize(128 << 20));
        assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert!("lots".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 10).to_string(), "64KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
