//! A parsed configuration file as a tree of values, read key by key with the key path in hand.
//!
//! All three formats (YAML, JSON5, INI) are first turned into a [`serde_json::Value`] tree, then
//! read through [`Table`], which knows the dotted path of every key it hands out, removes the
//! keys it reads and reports whatever is left over as unknown. That one reader gives every format
//! the same errors, the same leniency (numbers and booleans may be written as strings, as INI
//! and `${ENV}` substitution produce them) and the same limits.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde_json::Value;

use super::ConfigError;

/// Largest configuration text accepted, in bytes.
pub const CONFIG_BYTES_MAX: usize = 1024 * 1024;
/// Deepest nesting of maps and lists accepted.
pub const CONFIG_DEPTH_MAX: usize = 32;
/// Longest string value accepted, in bytes.
pub const VALUE_BYTES_MAX: usize = 4096;
/// Most entries in one list.
pub const LIST_LEN_MAX: usize = 256;

/// Rejects text over [`CONFIG_BYTES_MAX`] and bracket nesting over [`CONFIG_DEPTH_MAX`] before a
/// recursive parser sees it (a deep input would otherwise exhaust the stack).
pub(crate) fn check_text(text: &str, format: &'static str) -> Result<(), ConfigError> {
    if text.len() > CONFIG_BYTES_MAX {
        return Err(ConfigError::TooLarge { len: text.len(), max: CONFIG_BYTES_MAX });
    }
    // Counting brackets inside strings too over-estimates the depth, which only errs on the
    // side of rejecting; real files nest three levels.
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > CONFIG_DEPTH_MAX {
                    return Err(ConfigError::TooDeep { format, max: CONFIG_DEPTH_MAX });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a parent path and a key: `coordinator` + `port` = `coordinator.port`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// A short description of a value for error messages (strings truncated, never huge).
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut t: String = s.chars().take(40).collect();
            if t.len() < s.len() {
                t.push_str("...");
            }
            format!("{t:?}")
        }
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a map".to_owned(),
    }
}

/// Replaces `${NAME}` in every string of the tree with `env(NAME)`; `$${` stands for a literal
/// `${`. A variable that is not set is an error naming the key and the variable.
pub(crate) fn substitute_env(
    v: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        Value::String(s) => {
            if s.contains('$') {
                *s = substitute_str(s, path, env)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, &format!("{path}[{i}]"), env)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                substitute_env(item, &join(path, k), env)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Substitutes one string; see [`substitute_env`].
pub(crate) fn substitute_str(
    s: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| ConfigError::Invalid {
                key: key.to_owned(),
                reason: "unterminated ${ in environment substitution".to_owned(),
            })?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    reason: format!("{:?} is not an environment variable name", name),
                });
            }
            let value = env(name).ok_or_else(|| ConfigError::MissingEnvVar {
                key: key.to_owned(),
                var: name.to_owned(),
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if out.len() > VALUE_BYTES_MAX {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("value is {} bytes, over the limit of {VALUE_BYTES_MAX}", out.len()),
        });
    }
    Ok(out)
}

/// One map of the configuration, read key by key; what is not read is unknown.
#[derive(Debug)]
pub(crate) struct Table {
    path: String,
    fold_case: bool,
    /// Lookup key -> (key as written, value).
    entries: BTreeMap<String, (String, Value)>,
}

impl Table {
    /// A table from a map value; `null` (an empty YAML section) is an empty table.
    pub fn from_value(path: &str, v: Value) -> Result<Table, ConfigError> {
        match v {
            Value::Object(map) => Ok(Table {
                path: path.to_owned(),
                fold_case: false,
                entries: map.into_iter().map(|(k, v)| (k.clone(), (k, v))).collect(),
            }),
            Value::Null => Ok(Table::empty(path)),
            other => Err(ConfigError::WrongType {
                key: path.to_owned(),
                expected: "a map",
                found: describe(&other),
            }),
        }
    }

    /// An empty table at `path`.
    pub fn empty(path: &str) -> Table {
        Table { path: path.to_owned(), fold_case: false, entries: BTreeMap::new() }
    }

    /// A table whose keys match case-insensitively (INI sections). A key written twice, in
    /// any case, is an error.
    pub fn case_insensitive(
        path: &str,
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Table, ConfigError> {
        let mut entries = BTreeMap::new();
        for (k, v) in pairs {
            let lookup = k.to_ascii_lowercase();
            if entries.contains_key(&lookup) {
                return Err(ConfigError::DuplicateKey { key: join(path, &k) });
            }
            entries.insert(lookup, (k, Value::String(v)));
        }
        Ok(Table { path: path.to_owned(), fold_case: true, entries })
    }

    /// The full path of `key` in this table.
    pub fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Removes and returns `key`; `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let lookup = if self.fold_case { key.to_ascii_lowercase() } else { key.to_owned() };
        match self.entries.remove(&lookup) {
            Some((_, Value::Null)) | None => None,
            Some((_, v)) => Some(v),
        }
    }

    /// `true` when `key` is present and not null (does not consume it).
    pub fn has(&self, key: &str) -> bool {
        let lookup = if self.fold_case { key.to_ascii_lowercase() } else { key.to_owned() };
        matches!(self.entries.get(&lookup), Some((_, v)) if !v.is_null())
    }

    /// A nested table; absent means empty.
    pub fn table(&mut self, key: &str) -> Result<Table, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            Some(v) => Table::from_value(&path, v),
            None => Ok(Table::empty(&path)),
        }
    }

    /// A nested table, or `None` when absent.
    pub fn opt_table(&mut self, key: &str) -> Result<Option<Table>, ConfigError> {
        let path = self.key(key);
        self.take(key).map(|v| Table::from_value(&path, v)).transpose()
    }

    /// A boolean: `true`/`false`, or a string `true|false|yes|no|on|off|1|0` in any case.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            None => Ok(default),
            Some(v) => parse_bool(&path, &v),
        }
    }

    /// An unsigned integer within `range`, or `default` when absent.
    pub fn uint<T>(
        &mut self,
        key: &str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: Copy + Into<u64> + TryFrom<u64>,
    {
        let path = self.key(key);
        match self.take(key) {
            None => Ok(default),
            Some(v) => parse_uint(&path, &v, range),
        }
    }

    /// A string, or `None` when absent; an empty string counts as absent.
    pub fn opt_string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            None => Ok(None),
            Some(v) => {
                let s = parse_string(&path, &v)?;
                Ok(if s.is_empty() { None } else { Some(s) })
            }
        }
    }

    /// A string, or `default` when absent or empty.
    pub fn string(&mut self, key: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_owned()))
    }

    /// A list of values with their paths (`key[i]`), empty when absent.
    pub fn list(&mut self, key: &str) -> Result<Vec<(String, Value)>, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                if items.len() > LIST_LEN_MAX {
                    return Err(ConfigError::Invalid {
                        key: path,
                        reason: format!(
                            "{} entries, over the limit of {LIST_LEN_MAX}",
                            items.len()
                        ),
                    });
                }
                Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect())
            }
            Some(other) => Err(ConfigError::WrongType {
                key: path,
                expected: "a list",
                found: describe(&other),
            }),
        }
    }

    /// A list of strings, empty when absent.
    pub fn string_list(&mut self, key: &str) -> Result<Vec<(String, String)>, ConfigError> {
        self.list(key)?
            .into_iter()
            .map(|(path, v)| parse_string(&path, &v).map(|s| (path, s)))
            .collect()
    }

    /// All remaining entries: lookup key -> (key as written, value).
    pub fn into_entries(self) -> BTreeMap<String, (String, Value)> {
        self.entries
    }

    /// Fails with the first key (in sorted order) that nobody read.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.entries.into_values().next() {
            None => Ok(()),
            Some((written, _)) => Err(ConfigError::UnknownKey { key: join(&self.path, &written) }),
        }
    }
}

/// See [`Table::bool`].
pub(crate) fn parse_bool(path: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) if n.as_u64() == Some(1) => return Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => return Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => return Ok(true),
            "false" | "no" | "off" | "0" => return Ok(false),
            _ => {}
        },
        _ => {}
    }
    Err(ConfigError::WrongType {
        key: path.to_owned(),
        expected: "a boolean (true/false, 1/0)",
        found: describe(v),
    })
}

/// See [`Table::uint`].
pub(crate) fn parse_uint<T>(
    path: &str,
    v: &Value,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: Copy + Into<u64> + TryFrom<u64>,
{
    let wrong = || ConfigError::WrongType {
        key: path.to_owned(),
        expected: "a whole number",
        found: describe(v),
    };
    let (min, max) = ((*range.start()).into(), (*range.end()).into());
    let out_of_range =
        |got: String| ConfigError::OutOfRange { key: path.to_owned(), min, max, got };
    let n: u64 = match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u,
            (None, Some(i)) => return Err(out_of_range(i.to_string())),
            _ => return Err(wrong()),
        },
        Value::String(s) => {
            let t = s.trim();
            match t.parse::<u64>() {
                Ok(u) => u,
                Err(_) if t.starts_with('-') && t[1..].bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(out_of_range(t.to_owned()));
                }
                Err(_) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(out_of_range(t.to_owned()));
                }
                Err(_) => return Err(wrong()),
            }
        }
        _ => return Err(wrong()),
    };
    if n < min || n > max {
        return Err(out_of_range(n.to_string()));
    }
    T::try_from(n).map_err(|_| out_of_range(n.to_string()))
}

/// A string value; numbers and booleans are accepted as their text (YAML `port: 8001` read
/// where a string is wanted is fine, a map or list is not).
pub(crate) fn parse_string(path: &str, v: &Value) -> Result<String, ConfigError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            return Err(ConfigError::WrongType {
                key: path.to_owned(),
                expected: "a string",
                found: describe(v),
            });
        }
    };
    if s.len() > VALUE_BYTES_MAX {
        return Err(ConfigError::Invalid {
            key: path.to_owned(),
            reason: format!("value is {} bytes, over the limit of {VALUE_BYTES_MAX}", s.len()),
        });
    }
    Ok(s)
}

/// Checks that `url` starts with one of `schemes` (e.g. `ws://`) and has a host.
pub(crate) fn check_url(path: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: path.to_owned(), reason };
    let lower = url.to_ascii_lowercase();
    let Some(rest) = schemes.iter().find_map(|s| lower.strip_prefix(s)) else {
        return Err(invalid(format!("{url:?} must start with one of {}", schemes.join(", "))));
    };
    if url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(invalid(format!("{url:?} contains whitespace")));
    }
    // For `stun:host:port` there is no `//`; for the others the authority follows it.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid(format!("{url:?} has no host")));
    }
    Ok(())
}
