//! `sluice run --config FILE`: a TOML file of `run` flags, and `sluice check-config FILE`.
//!
//! Owns reading the file and turning it into command-line tokens; it never touches the
//! network and never builds an [`crate::config::EngineConfig`] itself (the flags' own parsers
//! and `TryFrom<&RunArgs>` do, so the file and the command line can never disagree on what a
//! value means).
//!
//! # The file
//!
//! Every key is a long flag of `sluice run` without its dashes, with the same value syntax:
//!
//! ```toml
//! iface = ["eth0", "eth1"]   # a repeatable flag takes an array (or one string)
//! app = "reflect"
//! udp = "9000,9100-9110"     # the flag's own syntax, as a string
//! queues = 2                 # numbers may be TOML numbers or strings
//! cores = "2-3"
//! busy-poll = true           # a switch: true gives it, false leaves it off
//! lb-config = "lb.toml"      # paths are relative to this file's directory
//! ```
//!
//! Flags given on the command line override the file's keys (a repeatable flag on the command
//! line replaces the file's whole array). `config` itself is not a key.
//!
//! # Errors
//!
//! One line naming the file, the line and column, and the key, as the lb app's file does
//! ([`crate::apps::lb::config`]): `run.toml:3:7: batch: 999 is not in 1..=256`. Unknown keys
//! are errors (with a hint for `frame_size`-style spellings); so are values the flag's parser
//! refuses, arrays for flags that take one value, and tables.

use super::RunArgs;
use clap::{ArgAction, Args, Command};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// What is wrong with a run configuration file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error, an unknown key or a bad value.
    #[error("{0}")]
    Invalid(Located),
}

/// One error, located: `FILE:LINE:COLUMN: KEY: MESSAGE` (no key for a syntax error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The file, as given.
    pub origin: String,
    /// 1-based line and column (in characters), when known.
    pub position: Option<(usize, usize)>,
    /// The key; empty for a syntax error.
    pub key: String,
    /// What is wrong, one line.
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One key of the file, as the command-line tokens it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The clap id of the flag (the `RunArgs` field name, `frame_size`).
    pub id: String,
    /// The key as written (`frame-size`).
    pub key: String,
    /// `--frame-size`, `4096` — or nothing for a switch set to false.
    pub tokens: Vec<OsString>,
}

/// A checked run configuration file: every key known, every value accepted by its flag.
#[derive(Clone, Debug)]
pub struct RunFile {
    /// The file, as given.
    pub path: PathBuf,
    /// Its keys, in file order.
    pub entries: Vec<Entry>,
}

/// The `run` subcommand's arguments, as clap knows them (the one source of flag names, kinds
/// and value parsers).
fn run_command() -> Command {
    RunArgs::augment_args(Command::new("run")).no_binary_name(true)
}

/// Keys that are flags of `run` but make no sense in the file.
const NOT_KEYS: &[&str] = &["config", "help"];

impl RunFile {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<RunFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, &path.display().to_string(), base).map(|entries| RunFile {
            path: path.to_owned(),
            entries,
        })
    }

    /// Check `text` (called `origin` in errors); relative paths are joined to `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Vec<Entry>, FileError> {
        let at = |offset: Option<usize>, key: &str, message: String| {
            FileError::Invalid(Located {
                origin: origin.to_owned(),
                position: offset.map(|o| position(text, o)),
                key: key.to_owned(),
                message,
            })
        };
        let table = DeTable::parse(text).map_err(|e| {
            at(
                e.span().map(|s| s.start),
                "",
                e.message().trim().replace('\n', "; "),
            )
        })?;
        let cmd = run_command();
        let mut entries = Vec::new();
        // In file order, so the first error reported is the first in the file.
        let mut keys: Vec<_> = table.get_ref().iter().collect();
        keys.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in keys {
            let key: &str = k.get_ref();
            let key_at = Some(k.span().start);
            let value_at = Some(v.span().start);
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(key) && !NOT_KEYS.contains(&key))
                .ok_or_else(|| at(key_at, key, unknown_key(key, &cmd)))?;
            let id = arg.get_id().as_str().to_owned();
            let long = format!("--{key}");
            let is_path = matches!(key, "lb-config" | "zone");
            let scalar = |v: &DeValue<'_>, offset: usize| -> Result<OsString, FileError> {
                let s = scalar_text(v).map_err(|m| at(Some(offset), key, m))?;
                Ok(if is_path && Path::new(&s).is_relative() {
                    base.join(s).into_os_string()
                } else {
                    s.into()
                })
            };
            let tokens: Vec<OsString> = match (arg.get_action(), v.get_ref()) {
                (ArgAction::SetTrue, DeValue::Boolean(true)) => vec![long.into()],
                (ArgAction::SetTrue, DeValue::Boolean(false)) => vec![],
                (ArgAction::SetTrue, other) => {
                    return Err(at(
                        value_at,
                        key,
                        format!("a switch takes true or false, not {}", other.type_str()),
                    ));
                }
                (ArgAction::Append, DeValue::Array(items)) => {
                    let mut t = Vec::new();
                    for item in items.iter() {
                        t.push(long.clone().into());
                        t.push(scalar(item.get_ref(), item.span().start)?);
                    }
                    t
                }
                (_, DeValue::Array(_)) => {
                    return Err(at(
                        value_at,
                        key,
                        format!("--{key} takes one value, not an array"),
                    ));
                }
                (_, other) => vec![long.into(), scalar(other, v.span().start)?],
            };
            // The flag's own parser checks the value (and says what is wrong, in its words).
            if !tokens.is_empty()
                && let Err(e) = run_command().try_get_matches_from(&tokens)
            {
                return Err(at(value_at, key, clap_message(&e)));
            }
            entries.push(Entry {
                id,
                key: key.to_owned(),
                tokens,
            });
        }
        Ok(entries)
    }

    /// The tokens of every key the command line did not give (`given(id)` is true for those it
    /// did): appended to the command line, they make the file's settings the defaults that
    /// flags override.
    pub fn tokens_not_given(&self, given: impl Fn(&str) -> bool) -> Vec<OsString> {
        self.entries
            .iter()
            .filter(|e| !given(&e.id))
            .flat_map(|e| e.tokens.iter().cloned())
            .collect()
    }
}

/// A TOML scalar as the text a flag would get.
fn scalar_text(v: &DeValue<'_>) -> Result<String, String> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| format!("{} does not fit a 64-bit integer", i.as_str())),
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Err(format!("{b} is not a value this flag takes")),
        other => Err(format!(
            "expected a string or number, found {}",
            other.type_str()
        )),
    }
}

/// The message for a key that is no flag, with the likely intended one.
fn unknown_key(key: &str, cmd: &Command) -> String {
    if NOT_KEYS.contains(&key) {
        return format!("`{key}` cannot be set in the file itself");
    }
    if key == "vip" || key == "conntrack" || key == "maglev" {
        return "not a key of a run configuration: this looks like a load balancer file; \
                name it with `lb-config = \"FILE\"` (or --lb-config FILE)"
            .into();
    }
    let dashed = key.replace('_', "-");
    if cmd.get_arguments().any(|a| a.get_long() == Some(&dashed)) {
        return format!("unknown key; keys are spelled like the flags: `{dashed}`");
    }
    "unknown key (keys are the long flags of `sluice run`, without the dashes)".into()
}

/// clap's error as one line, without its `error: ` prefix and its usage lines.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    let before = &text[..i];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Entry>, String> {
        RunFile::parse(text, "run.toml", Path::new("/etc/sluice")).map_err(|e| e.to_string())
    }

    fn tokens(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .iter()
            .flat_map(|e| e.tokens.iter().map(|t| t.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn keys_become_the_flags_tokens() {
        let t = tokens(
            "iface = [\"eth0\", \"eth1\"]\nudp = \"9000,9100-9110\"\nqueues = 2\n\
             busy-poll = true\njson = false\nstats-interval = 0.5\nbatch = 0x20\n",
        );
        // Keys come in file order.
        assert_eq!(
            t,
            [
                "--iface",
                "eth0",
                "--iface",
                "eth1",
                "--udp",
                "9000,9100-9110",
                "--queues",
                "2",
                "--busy-poll",
                "--stats-interval",
                "0.5",
                "--batch",
                "32",
            ]
        );
    }

    #[test]
    fn relative_paths_are_the_files_neighbours() {
        let t = tokens("lb-config = \"lb.toml\"\nzone = [\"/z/a.zone\", \"b.zone\"]\n");
        assert_eq!(
            t,
            [
                "--lb-config",
                "/etc/sluice/lb.toml",
                "--zone",
                "/z/a.zone",
                "--zone",
                "/etc/sluice/b.zone"
            ]
        );
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        assert_eq!(
            parse("iface = \"eth0\"\nbatch = 999\n").unwrap_err(),
            "run.toml:2:9: batch: invalid value '999' for '--batch <BATCH>': 999 is not in 1..=256"
        );
        assert_eq!(
            parse("iface = \"eth0\"\n\nframe_size = 4096\nbatch = 999\n").unwrap_err(),
            "run.toml:3:1: frame_size: unknown key; keys are spelled like the flags: `frame-size`"
        );
        assert!(parse("bogus = 1").unwrap_err().starts_with(
            "run.toml:1:1: bogus: unknown key (keys are the long flags of `sluice run`"
        ));
        assert_eq!(
            parse("xdp-mode = [\"skb\"]").unwrap_err(),
            "run.toml:1:12: xdp-mode: --xdp-mode takes one value, not an array"
        );
        assert_eq!(
            parse("busy-poll = \"yes\"").unwrap_err(),
            "run.toml:1:13: busy-poll: a switch takes true or false, not string"
        );
        let e = parse("xdp-mode = \"fast\"").unwrap_err();
        assert!(
            e.starts_with("run.toml:1:12: xdp-mode: invalid value 'fast' for '--xdp-mode"),
            "{e}"
        );
        let e = parse("udp = \"90000\"").unwrap_err();
        assert!(e.starts_with("run.toml:1:7: udp: invalid value"), "{e}");
        let e = parse("iface = [\"a\", 1.5, {x = 1}]").unwrap_err();
        assert_eq!(
            e,
            "run.toml:1:20: iface: expected a string or number, found table"
        );
        assert!(
            parse("config = \"x.toml\"")
                .unwrap_err()
                .contains("cannot be set")
        );
        assert!(
            parse("[[vip]]\naddress = \"10.0.0.1\"")
                .unwrap_err()
                .contains("load balancer file")
        );
        let e = parse("iface = \"eth0\nudp = 1").unwrap_err();
        assert!(e.starts_with("run.toml:1:"), "{e}");
    }

    #[test]
    fn command_line_overrides_the_file() {
        let f = RunFile {
            path: "x".into(),
            entries: parse("iface = [\"a\", \"b\"]\nudp = \"1\"\n").unwrap(),
        };
        let t = f.tokens_not_given(|id| id == "iface");
        assert_eq!(t, ["--udp", "1"]);
    }
}
