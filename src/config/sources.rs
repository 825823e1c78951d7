//! Where a configuration comes from: the compiled-in defaults, then the operator's file, then
//! the environment, then the command line, each key from the last source that sets it; and
//! which source that was, for `--print-config` and for errors.
//!
//! Environment variables are named `CORECAST_<SECTION>_<KEY>` in upper case
//! (`CORECAST_SERVER_RTMP_LISTEN`, `CORECAST_VIEWER_MERGE_WINDOW_MS`). A string key takes the
//! variable's text as it is; any other key takes a TOML value (`true`, `250`,
//! `{ "*" = "key" }`), which replaces the key's whole value. `CORECAST_<SECTION>_<KEY>_FILE`
//! names a file whose contents (less a final line break) are the value: how secrets come
//! from a mounted secret rather than from the environment. Variables of the `CORECAST_`
//! prefix that name no section (`CORECAST_REQUIRE_TOOLS`) are not configuration; one that
//! names a section but no key of it is an error.

use super::{merge, parse_table, Config, ConfigError, DEFAULT_TOML};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The prefix of configuration variables.
pub const ENV_PREFIX: &str = "CORECAST_";

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The compiled-in defaults (`config/corecast.toml`).
    Default,
    /// The operator's file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A file named by an environment variable (`..._FILE`).
    EnvFile {
        /// The variable.
        var: String,
        /// The file it names.
        path: PathBuf,
    },
    /// A command-line option.
    Cli(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "{var}"),
            Source::EnvFile { var, path } => write!(f, "{var} ({})", path.display()),
            Source::Cli(flag) => write!(f, "{flag}"),
        }
    }
}

/// A command-line option that sets a key.
#[derive(Debug, Clone)]
pub struct Override {
    /// The key, `section.key`.
    pub key: &'static str,
    /// Its value.
    pub value: toml::Value,
    /// The option, e.g. `--shards`.
    pub flag: &'static str,
}

/// Everything a configuration is made from, kept so that a reload reads the same sources
/// again (the file and the `_FILE` files are read anew; the environment is the process's,
/// which does not change).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The operator's file, if any.
    pub file: Option<PathBuf>,
    /// The process's `CORECAST_` variables.
    pub env: Vec<(String, String)>,
    /// Command-line options, applied last.
    pub cli: Vec<Override>,
}

/// A configuration and where each of its keys came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// `section.key` of every key not left at its default, with its source.
    pub sources: BTreeMap<String, Source>,
}

impl Sources {
    /// The sources of this process: `file`, its environment, and `cli`.
    pub fn from_process(file: Option<PathBuf>, cli: Vec<Override>) -> Sources {
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .map(|(name, value)| (name, value.to_string_lossy().into_owned()))
            .collect();
        Sources { file, env, cli }
    }

    /// Reads every source and builds the configuration. An error names the file, the
    /// variable or the option the bad value came from.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "defaults")?;
        let mut sources = BTreeMap::new();
        if let Some(path) = &self.file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let user = parse_table(&text, &shown)?;
            for key in leaf_keys(&user) {
                sources.insert(key, Source::File(path.clone()));
            }
            merge(&mut table, user);
        }
        for (key, value, source) in self.env_values(&table)? {
            set(&mut table, &key, value);
            sources.insert(key, source);
        }
        for o in &self.cli {
            set(&mut table, o.key, o.value.clone());
            sources.insert(o.key.to_string(), Source::Cli(o.flag));
        }
        // An error in a value from the environment or the command line names its source.
        let named = |err: ConfigError| -> ConfigError {
            let source = match &err {
                ConfigError::Key { key, .. } => find_source(&sources, key),
                ConfigError::Invalid { key, .. } => find_source(&sources, key),
                _ => None,
            };
            match (source, err) {
                (Some(Source::Default | Source::File(_)) | None, err) => err,
                (Some(source), ConfigError::Key { key, message, .. }) => ConfigError::Key {
                    origin: source.to_string(),
                    key,
                    message,
                },
                (Some(source), err) => ConfigError::Sourced {
                    origin: source.to_string(),
                    error: Box::new(err),
                },
            }
        };
        let origin = self
            .file
            .as_ref()
            .map_or("defaults".to_string(), |p| p.display().to_string());
        let config = Config::from_value(table, &origin).map_err(named)?;
        config.validate().map_err(named)?;
        Ok(Loaded { config, sources })
    }

    /// The keys the environment sets, with their values and sources.
    fn env_values(
        &self,
        defaults: &toml::Table,
    ) -> Result<Vec<(String, toml::Value, Source)>, ConfigError> {
        let mut found: BTreeMap<String, (toml::Value, Source)> = BTreeMap::new();
        for (var, text) in &self.env {
            let Some((section, keys, key)) = split_var(defaults, var) else {
                continue;
            };
            let bad = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let (key, text, source) = match key.strip_suffix("_file") {
                Some(base) if !keys.contains_key(&key) => {
                    let path = PathBuf::from(text);
                    let contents = std::fs::read_to_string(&path)
                        .map_err(|err| bad(format!("cannot read {}: {err}", path.display())))?;
                    let value = contents.strip_suffix('\n').unwrap_or(&contents);
                    let value = value.strip_suffix('\r').unwrap_or(value).to_string();
                    let source = Source::EnvFile {
                        var: var.clone(),
                        path,
                    };
                    (base.to_string(), value, source)
                }
                _ => (key, text.clone(), Source::Env(var.clone())),
            };
            let Some(default) = keys.get(&key) else {
                return Err(bad(format!("`{section}` has no key `{key}`")));
            };
            let value = typed(default, &text).map_err(bad)?;
            let dotted = format!("{section}.{key}");
            if let Some((_, earlier)) = found.get(&dotted) {
                return Err(bad(format!("`{dotted}` is also set by {earlier}")));
            }
            found.insert(dotted, (value, source));
        }
        Ok(found
            .into_iter()
            .map(|(key, (value, source))| (key, value, source))
            .collect())
    }
}

impl Loaded {
    /// The configuration as TOML for `--print-config`: credentials redacted, and after each
    /// key, where its value came from.
    pub fn annotated(&self) -> String {
        let shown = toml::Value::try_from(self.config.redacted())
            .ok()
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default();
        let mut out = String::new();
        // Keys outside a section (`forward`) come before the first section, as TOML wants.
        for (key, value) in shown.iter().filter(|(_, v)| !v.is_table()) {
            let source = self.sources.get(key).unwrap_or(&Source::Default);
            out.push_str(&format!("{key} = {value}  # {source}\n\n"));
        }
        for (section, keys) in &shown {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            out.push_str(&format!("[{section}]\n"));
            for (key, value) in keys {
                let dotted = format!("{section}.{key}");
                let source = self.sources.get(&dotted).unwrap_or(&Source::Default);
                out.push_str(&format!("{key} = {value}  # {source}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// `section.key` of each key of an operator's file (a table-valued key such as
/// `auth.publish_keys` counts as one key).
fn leaf_keys(table: &toml::Table) -> Vec<String> {
    table
        .iter()
        .flat_map(|(section, keys)| match keys.as_table() {
            Some(keys) => keys.keys().map(|k| format!("{section}.{k}")).collect(),
            None => vec![section.clone()],
        })
        .collect()
}

/// The section, its default keys and the key (lower case) a `CORECAST_` variable names, when
/// it names a section.
fn split_var<'a>(
    defaults: &'a toml::Table,
    var: &str,
) -> Option<(&'a str, &'a toml::Table, String)> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    defaults.iter().find_map(|(section, keys)| {
        let key = rest
            .strip_prefix(section.to_uppercase().as_str())?
            .strip_prefix('_')?;
        Some((section.as_str(), keys.as_table()?, key.to_lowercase()))
    })
}

/// `text` as a value of the default's type: strings as they are, others as TOML values.
fn typed(default: &toml::Value, text: &str) -> Result<toml::Value, String> {
    if default.is_str() {
        return Ok(toml::Value::String(text.to_string()));
    }
    let kind = default.type_str();
    let expected = || {
        format!(
            "expected {} {kind}, got \"{}\"",
            article(kind),
            text.escape_debug()
        )
    };
    let parsed: toml::Table = toml::from_str(&format!("v = {text}")).map_err(|_| expected())?;
    match parsed.get("v") {
        Some(value) if value.type_str() == kind => Ok(value.clone()),
        _ => Err(expected()),
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'i']) {
        "an"
    } else {
        "a"
    }
}

/// Sets `section.key` in `table`, replacing its value.
fn set(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let Some((section, key)) = dotted.split_once('.') else {
        return;
    };
    if let Some(toml::Value::Table(keys)) = table.get_mut(section) {
        keys.insert(key.to_string(), value);
    }
}

/// The source of the key an error names (`auth.apps.premium.play` is `auth.apps`'s).
fn find_source<'a>(sources: &'a BTreeMap<String, Source>, key: &str) -> Option<&'a Source> {
    let mut parts = key.split('.');
    let dotted = format!("{}.{}", parts.next()?, parts.next()?);
    sources.get(&dotted)
}
