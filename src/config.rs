//! The configuration file of `sirocco serve --config FILE`: one flat TOML table whose keys are
//! the long flags of `serve` without their dashes (`iface = "eth1"`, `max-connections = 10000`,
//! `sleep-when-idle = true`).
//!
//! The file is not a second parser beside clap's: each key and value becomes the command-line
//! arguments it stands for (`--iface eth1`, `--sleep-when-idle`), and those go through clap with the
//! rest of the command line. So a value is checked by the same value parser, and fails with the
//! same message, as on the command line; this module only adds the file name and line.
//!
//! Precedence: a flag on the command line wins. The file's arguments for a flag that the
//! command line also gives, or for a flag that conflicts with one it gives (`queue` in the file,
//! `--queues` on the command line), are left out before the two are parsed together.
//!
//! Values: a TOML string is passed as it is, an integer in decimal, a float as written (clap
//! then says it is not an integer). A boolean is a switch for flags that take no value
//! (`sleep-when-idle = true` is `--sleep-when-idle`; `false` leaves it out), and `on`/`off` for flags
//! whose values are `on` and `off` (`sack = false` is `--sack off`). An array is allowed only
//! for a flag that may be given several times (`ip = ["198.18.0.2/24", "2001:2::2/64"]`),
//! one flag per element, and `ip`'s list is also checked as a whole at its line; nested tables
//! are not allowed.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, Parser};
use toml::de::{DeTable, DeValue};

use crate::cli::{Cli, Command, IpCidr, ServerIps, parse_ip_cidr};

/// The name of the `serve` flag that names the file (and which the file cannot set).
const CONFIG_FLAG: &str = "config";

/// The id of `serve --ip`, whose values are also checked together.
const IP_FLAG: &str = "ip";

/// What went wrong in turning the command line (and its configuration file) into a [`Cli`].
#[derive(Debug)]
pub enum CliError {
    /// A mistake on the command line, or `--help`/`--version`: clap's error, to be shown with
    /// [`clap::Error::exit`] as any other command-line error.
    Clap(clap::Error),
    /// A mistake in the configuration file.
    Config(ConfigError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Clap(error) => write!(f, "{}", clap_message(error)),
            CliError::Config(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for CliError {}

/// A mistake in a configuration file, at a line when it has one: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses the command line as [`Cli::parse`] does, reading the configuration file first when
/// the command is `serve --config FILE`.
pub fn parse_cli_from<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let plain = |args: &[OsString]| {
        Cli::try_parse_from(args)
            .map_err(CliError::Clap)
            .and_then(|cli| check_ips(cli).map_err(CliError::Clap))
    };
    // A first pass without required arguments (`--ip` may be in the file) finds the file and
    // which flags the command line gives. If even that fails, the plain parse says why.
    let Ok(matches) = relaxed_command().try_get_matches_from(&args) else {
        return plain(&args);
    };
    let Some(("serve", serve)) = matches.subcommand() else {
        return plain(&args);
    };
    let Some(path) = serve.get_one::<PathBuf>(CONFIG_FLAG) else {
        return plain(&args);
    };
    // `sirocco` has no options of its own before the command, so the command line is
    // `sirocco serve ARGS...`; the file's arguments go right after `serve`.
    if args.get(1).is_none_or(|word| word != "serve") {
        return plain(&args);
    }
    let file = ConfigFile::load(path).map_err(CliError::Config)?;
    let on_command_line: Vec<String> = serve
        .ids()
        .map(|id| id.as_str().to_string())
        .filter(|id| serve.value_source(id) == Some(ValueSource::CommandLine))
        .collect();
    let kept = file.without(&on_command_line);
    file.check_together(&kept).map_err(CliError::Config)?;

    let mut combined = args[..2].to_vec();
    combined.extend(kept.iter().flat_map(|setting| setting.args.iter().cloned()));
    combined.extend(args[2..].iter().cloned());
    // The file's `ip` was checked as a whole when it was read: a mistake here is the
    // command line's.
    let parsed = Cli::try_parse_from(&combined).and_then(check_ips);
    parsed.map_err(|error| {
        if error.kind() == clap::error::ErrorKind::MissingRequiredArgument {
            CliError::Config(ConfigError {
                file: file.path.clone(),
                line: None,
                message: format!(
                    "{} (give it in the file or on the command line)",
                    clap_message(&error)
                ),
            })
        } else {
            CliError::Clap(error)
        }
    })
}

/// `serve --ip ... --ip ...` checked as a whole (see [`ServerIps::from_list`]), as clap
/// reports a bad value: `invalid value for '--ip <ADDR/PREFIX>': ...`.
fn check_ips(cli: Cli) -> Result<Cli, clap::Error> {
    if let Command::Serve(serve) = &cli.command
        && let Err(message) = serve.ips()
    {
        let mut serve = Cli::command()
            .find_subcommand("serve")
            .expect("sirocco has a serve command")
            .clone()
            .bin_name("sirocco serve");
        return Err(serve.error(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for '--ip <ADDR/PREFIX>': {message}"),
        ));
    }
    Ok(cli)
}

/// The `sirocco` command with no argument of `serve` required: for reading parts of a command
/// line (the file's arguments alone, or the command line without the file).
fn relaxed_command() -> clap::Command {
    Cli::command().mut_subcommand("serve", |mut serve| {
        let required: Vec<clap::Id> = serve
            .get_arguments()
            .filter(|arg| arg.is_required_set())
            .map(|arg| arg.get_id().clone())
            .collect();
        for id in required {
            serve = serve.mut_arg(id, |arg| arg.required(false));
        }
        serve
    })
}

/// The `serve` command as clap defines it.
fn serve_command() -> clap::Command {
    Cli::command()
        .find_subcommand("serve")
        .expect("sirocco has a serve command")
        .clone()
}

/// Clap's message for `error`, without its `error: ` prefix and the usage and help hints that
/// follow it (they are about the command line, not the file).
pub fn clap_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let text = rendered.trim_start_matches("error: ");
    let text = text.split("\n\n").next().unwrap_or(text);
    text.trim_end().to_string()
}

/// A configuration file, read and turned into command-line arguments.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// One entry per key, in the order of the file.
    pub settings: Vec<Setting>,
}

/// One key of the file and the arguments it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key: the long flag without its dashes.
    pub key: String,
    /// The id of the flag in clap's definition of `serve`.
    pub id: String,
    /// The line of the key, from 1.
    pub line: usize,
    /// `--key value`, `--key`, or nothing (a switch set to false).
    pub args: Vec<OsString>,
}

impl ConfigFile {
    /// Reads and parses `path`, and checks each key and its value on its own.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Parses `text`, the contents of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let error = |line: Option<usize>, message: String| ConfigError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let table = DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            error(line, format!("not valid TOML: {}", e.message()))
        })?;
        let serve = serve_command();
        let mut entries: Vec<_> = table.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);

        let mut settings = Vec::new();
        for (key, value) in entries {
            let line = line_of(text, key.span().start);
            let name = key.get_ref().as_ref();
            if let DeValue::Table(_) = value.get_ref() {
                return Err(error(
                    Some(line),
                    format!(
                        "tables are not allowed: the file is one flat table of `sirocco serve` flags (move the keys of [{name}] to the top, before any [table])"
                    ),
                ));
            }
            let arg = serve
                .get_arguments()
                .find(|arg| answers_to(arg, name) && is_settable(arg))
                .ok_or_else(|| error(Some(line), unknown_key(&serve, name)))?;
            let value_line = line_of(text, value.span().start);
            let args = arguments_for(arg, name, value.get_ref())
                .map_err(|message| error(Some(value_line), message))?;
            settings.push(Setting {
                key: name.to_string(),
                id: arg.get_id().as_str().to_string(),
                line,
                args,
            });
        }
        let file = ConfigFile {
            path: path.to_path_buf(),
            settings,
        };
        // Each value through its flag's value parser, alone, so that a bad one is reported
        // at its line with clap's message.
        for setting in &file.settings {
            file.check_together(std::slice::from_ref(setting))?;
            file.check_ips(setting)?;
        }
        Ok(file)
    }

    /// `ip = [...]` checked as a whole (one IPv4, at most three IPv6, none twice), reported
    /// at its line: each value alone has passed `--ip`'s value parser already.
    fn check_ips(&self, setting: &Setting) -> Result<(), ConfigError> {
        if setting.id != IP_FLAG {
            return Ok(());
        }
        // `--ip A --ip B ...`: every second argument is a value.
        let list: Vec<IpCidr> = setting
            .args
            .iter()
            .skip(1)
            .step_by(2)
            .filter_map(|value| parse_ip_cidr(&value.to_string_lossy()).ok())
            .collect();
        ServerIps::from_list(&list)
            .map(|_| ())
            .map_err(|message| ConfigError {
                file: self.path.clone(),
                line: Some(setting.line),
                message: format!("{}: {message}", setting.key),
            })
    }

    /// The settings whose flags the command line does not give (`on_command_line`: clap ids)
    /// and do not conflict with one it gives.
    pub fn without(&self, on_command_line: &[String]) -> Vec<Setting> {
        let serve = serve_command();
        let find = |id: &str| serve.get_arguments().find(|arg| arg.get_id() == id);
        let conflict = |a: &str, b: &str| {
            let (Some(arg_a), Some(arg_b)) = (find(a), find(b)) else {
                return false;
            };
            serve
                .get_arg_conflicts_with(arg_a)
                .iter()
                .any(|arg| arg.get_id() == b)
                || serve
                    .get_arg_conflicts_with(arg_b)
                    .iter()
                    .any(|arg| arg.get_id() == a)
        };
        self.settings
            .iter()
            .filter(|setting| {
                !on_command_line
                    .iter()
                    .any(|given| *given == setting.id || conflict(given, &setting.id))
            })
            .cloned()
            .collect()
    }

    /// Parses `settings` together (and without the command line): a bad value, or two keys
    /// that conflict, is reported at the line of the key clap names.
    fn check_together(&self, settings: &[Setting]) -> Result<(), ConfigError> {
        let mut args: Vec<OsString> = vec!["sirocco".into(), "serve".into()];
        args.extend(settings.iter().flat_map(|s| s.args.iter().cloned()));
        let Err(clap_error) = relaxed_command().try_get_matches_from(args) else {
            return Ok(());
        };
        let message = clap_message(&clap_error);
        // The setting clap's message is about: of those whose flags it names, the last in the
        // file (of two keys that conflict, the second is the one that adds the conflict).
        let named = settings
            .iter()
            .filter(|s| {
                // clap names a flag by its long name, also when the file used an old one.
                let long = s.id.replace('_', "-");
                settings.len() == 1
                    || [&s.key, &long].iter().any(|name| {
                        let flag = format!("'--{name}");
                        message.contains(&format!("{flag} "))
                            || message.contains(&format!("{flag}'"))
                    })
            })
            .max_by_key(|s| s.line);
        Err(ConfigError {
            file: self.path.clone(),
            line: named.map(|s| s.line),
            message: match named {
                Some(s) => format!("{}: {message}", s.key),
                None => message,
            },
        })
    }
}

/// Whether `name` is the long name of `arg`, or one of its old names (hidden aliases such as
/// `idle-wait` for `sleep-when-idle`), which the file accepts as the command line does.
fn answers_to(arg: &clap::Arg, name: &str) -> bool {
    arg.get_long() == Some(name)
        || arg
            .get_all_aliases()
            .is_some_and(|aliases| aliases.contains(&name))
}

/// Whether a flag can be set in the file: every long flag of `serve` except `--config` itself
/// and the help and version flags.
fn is_settable(arg: &clap::Arg) -> bool {
    arg.get_id() != CONFIG_FLAG
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// The message for a key that is not a flag of `serve`, with the closest key when one is close.
fn unknown_key(serve: &clap::Command, name: &str) -> String {
    if name == CONFIG_FLAG {
        return "'config' cannot be set in the configuration file itself".to_string();
    }
    let known: Vec<&str> = serve
        .get_arguments()
        .filter(|arg| is_settable(arg))
        .filter_map(|arg| arg.get_long())
        .collect();
    let dashed = name.replace('_', "-");
    let renamed = serve
        .get_arguments()
        .find(|arg| answers_to(arg, &dashed) && is_settable(arg))
        .and_then(|arg| arg.get_long());
    let closest = if let Some(long) = renamed {
        Some(long)
    } else {
        known
            .iter()
            .map(|k| (edit_distance(name, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min()
            .map(|(_, k)| k)
    };
    match closest {
        Some(key) => format!("unknown key '{name}' (did you mean '{key}'?)"),
        None => format!(
            "unknown key '{name}': the keys are the long flags of `sirocco serve` without their dashes (see `sirocco serve --help`)"
        ),
    }
}

/// Levenshtein distance, for suggesting a key: a few dozen short names, so the plain
/// dynamic programme is plenty.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The command-line arguments for `key = value`, where `key` is the long name of `arg`.
fn arguments_for(arg: &clap::Arg, key: &str, value: &DeValue<'_>) -> Result<Vec<OsString>, String> {
    let flag = OsString::from(format!("--{key}"));
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            DeValue::Boolean(true) => Ok(vec![flag]),
            DeValue::Boolean(false) => Ok(vec![]),
            _ => Err(format!(
                "{key} is a switch: write `{key} = true` or `{key} = false`"
            )),
        },
        ArgAction::Set => match value {
            DeValue::Array(_) => Err(format!(
                "{key} takes one value, not an array: write it as on the command line, e.g. `{key} = \"...\"`"
            )),
            scalar => Ok(vec![flag, scalar_text(arg, key, scalar)?.into()]),
        },
        ArgAction::Append => {
            let items: Vec<&DeValue<'_>> = match value {
                DeValue::Array(items) => items.iter().map(|item| item.get_ref()).collect(),
                scalar => vec![scalar],
            };
            let mut args = Vec::new();
            for item in items {
                args.push(flag.clone());
                args.push(scalar_text(arg, key, item)?.into());
            }
            Ok(args)
        }
        _ => Err(format!("{key} cannot be set in a configuration file")),
    }
}

/// The text a scalar TOML value stands for on the command line.
fn scalar_text(arg: &clap::Arg, key: &str, value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Integer(n) => {
            // `as_str` is the digits without prefix or underscores, in `radix`.
            i128::from_str_radix(n.as_str(), n.radix())
                .map(|n| n.to_string())
                .map_err(|_| format!("{key}: {n} is too large"))
        }
        DeValue::Float(x) => Ok(x.as_str().to_string()),
        DeValue::Boolean(on) => {
            let names: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            if names.iter().any(|n| n == "on") && names.iter().any(|n| n == "off") {
                Ok(if *on { "on" } else { "off" }.to_string())
            } else {
                Ok(on.to_string())
            }
        }
        DeValue::Datetime(_) => Err(format!("{key}: a date is not a value of --{key}")),
        DeValue::Array(_) => Err(format!("{key}: an array cannot hold arrays")),
        DeValue::Table(_) => Err(format!(
            "{key}: tables are not allowed: the file is one flat table of `sirocco serve` flags"
        )),
    }
}

/// The line (from 1) of the byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Queues, ServeArgs};

    /// A file with `text`, written under the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let dir =
                std::env::temp_dir().join(format!("sirocco-config-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("sirocco.toml");
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// `sirocco serve --config FILE EXTRA...` with `text` as the file.
    fn serve_with(name: &str, text: &str, extra: &[&str]) -> Result<ServeArgs, CliError> {
        let file = TempFile::new(name, text);
        let mut args: Vec<OsString> = vec![
            "sirocco".into(),
            "serve".into(),
            "--config".into(),
            file.0.clone().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        parse_cli_from(args).map(|cli| match cli.command {
            Command::Serve(serve) => *serve,
            _ => unreachable!("serve parses as serve"),
        })
    }

    fn config_error(result: Result<ServeArgs, CliError>) -> ConfigError {
        match result {
            Err(CliError::Config(error)) => error,
            Err(CliError::Clap(error)) => panic!("a clap error, not a file one: {error}"),
            Ok(args) => panic!("accepted: {args:?}"),
        }
    }

    #[test]
    fn the_file_sets_flags_and_the_command_line_wins() {
        let text = "iface = \"eth1\"\nip = \"198.18.0.2/24\"\nqueue = 1\nport = 8080\n\
                    max-connections = 20_000\nsleep-when-idle = true\ncompress = false\nsack = false\n";
        let args = serve_with("file", text, &[]).unwrap();
        assert_eq!(args.iface.as_deref(), Some("eth1"));
        assert_eq!(args.ips().unwrap().cidrs(), "198.18.0.2/24");
        assert_eq!(args.queue, Some(1));
        assert_eq!(args.common.port, 8080);
        assert_eq!(args.common.max_connections, 20_000);
        assert!(args.common.sleep_when_idle);
        assert!(!args.common.compress);
        assert!(!args.common.sack.is_on());
        assert!(args.config.is_some());

        // The command line wins, and a flag there drops the file's conflicting one
        // (`--queues` against the file's `queue`) instead of failing.
        let args = serve_with(
            "cli",
            text,
            &["--iface", "eth2", "--port", "81", "--queues", "0-3"],
        )
        .unwrap();
        assert_eq!(args.iface.as_deref(), Some("eth2"));
        assert_eq!(args.common.port, 81);
        assert_eq!(args.queue, None);
        assert_eq!(args.queues, Some(Queues::List(vec![0, 1, 2, 3])));
        // What the command line does not give still comes from the file.
        assert_eq!(args.common.max_connections, 20_000);
        assert!(args.common.sleep_when_idle);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line_and_the_closest_key() {
        let error = config_error(serve_with(
            "unknown",
            "ip = \"198.18.0.2/24\"\n# a comment\n\nmax-conections = 5\n",
            &[],
        ));
        assert_eq!(error.line, Some(4));
        assert!(
            error.message.contains("unknown key 'max-conections'")
                && error.message.contains("did you mean 'max-connections'"),
            "{error}"
        );
        assert!(error.to_string().contains("sirocco.toml:4: unknown key"));

        let error = config_error(serve_with("underscore", "\nsleep_when_idle = true\n", &[]));
        assert_eq!(error.line, Some(2));
        assert!(
            error.message.contains("did you mean 'sleep-when-idle'"),
            "{error}"
        );
        // An old name with underscores points to the new name.
        let error = config_error(serve_with("old", "idle_wait = true\n", &[]));
        assert!(
            error.message.contains("did you mean 'sleep-when-idle'"),
            "{error}"
        );

        let error = config_error(serve_with("far", "frobnicate = 1\n", &[]));
        assert!(
            error.message.contains("unknown key 'frobnicate'") && !error.message.contains("mean"),
            "{error}"
        );
        let error = config_error(serve_with("config", "config = \"other.toml\"\n", &[]));
        assert!(error.message.contains("cannot be set"), "{error}");
        let error = config_error(serve_with("help", "help = true\n", &[]));
        assert!(error.message.contains("unknown key 'help'"), "{error}");
    }

    #[test]
    fn bad_values_get_clap_s_own_message_with_the_line() {
        let error = config_error(serve_with(
            "badip",
            "iface = \"eth1\"\n\nip = \"198.18.0.300/24\"\n",
            &[],
        ));
        assert_eq!(error.line, Some(3));
        // The same words as the command line's error.
        let on_command_line =
            Cli::try_parse_from(["sirocco", "serve", "--ip", "198.18.0.300/24"]).unwrap_err();
        let expected = clap_message(&on_command_line);
        assert!(expected.contains("is not an IPv4 address"), "{expected}");
        assert_eq!(error.message, format!("ip: {expected}"));

        for (text, line, words) in [
            (
                "ip = \"198.18.0.2/24\"\nport = 0\n",
                2,
                "0 is not in 1..=65535",
            ),
            (
                "ip = \"198.18.0.2/24\"\nsack = \"maybe\"\n",
                2,
                "possible values",
            ),
            (
                "ip = \"198.18.0.2/24\"\nstats-interval = 1.5\n",
                2,
                "invalid digit",
            ),
            (
                "ip = \"198.18.0.2/24\"\nqueues = \"3-1\"\n",
                2,
                "lower number first",
            ),
        ] {
            let error = config_error(serve_with("values", text, &[]));
            assert_eq!(error.line, Some(line), "{text}: {error}");
            assert!(error.message.contains(words), "{text}: {error}");
        }
    }

    #[test]
    fn switches_take_booleans_only() {
        let error = config_error(serve_with(
            "switch",
            "ip = \"198.18.0.2/24\"\nsleep-when-idle = \"yes\"\n",
            &[],
        ));
        assert_eq!(error.line, Some(2));
        assert!(
            error.message.contains("sleep-when-idle is a switch"),
            "{error}"
        );
        // A switch set to false in the file, and given on the command line, is on.
        let args = serve_with(
            "switch-cli",
            "ip = \"198.18.0.2/24\"\ncompress = false\n",
            &["--compress"],
        )
        .unwrap();
        assert!(args.common.compress);
        // on/off flags take booleans or their own words.
        let args = serve_with(
            "onoff",
            "ip = \"198.18.0.2/24\"\nrack = \"off\"\ntail-loss-probe = true\n",
            &[],
        )
        .unwrap();
        assert!(!args.common.rack.is_on() && args.common.tail_loss_probe.is_on());
    }

    #[test]
    fn lists_are_strings_as_on_the_command_line_and_arrays_need_a_repeatable_flag() {
        let args = serve_with(
            "lists",
            "ip = \"198.18.0.2/24\"\nqueues = \"0,2,5-7\"\ncpus = \"2-3\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(args.queues, Some(Queues::List(vec![0, 2, 5, 6, 7])));
        assert_eq!(args.cpus.map(|c| c.0), Some(vec![2, 3]));
        let args = serve_with("count", "ip = \"198.18.0.2/24\"\nqueues = 4\n", &[]).unwrap();
        assert_eq!(args.queues, Some(Queues::Count(4)));

        let error = config_error(serve_with(
            "array",
            "ip = \"198.18.0.2/24\"\nqueues = [0, 1]\n",
            &[],
        ));
        assert_eq!(error.line, Some(2));
        assert!(error.message.contains("not an array"), "{error}");

        // A flag that may be repeated takes an array: one flag per element.
        let repeated = clap::Arg::new("header")
            .long("header")
            .action(ArgAction::Append);
        let table = DeTable::parse("header = [\"a\", 2]\n").unwrap();
        let (_, value) = table.get_ref().iter().next().unwrap();
        let args = arguments_for(&repeated, "header", value.get_ref()).unwrap();
        assert_eq!(args, ["--header", "a", "--header", "2"].map(OsString::from));
    }

    #[test]
    fn conflicts_in_the_file_and_missing_values_are_reported() {
        let error = config_error(serve_with(
            "conflict",
            "ip = \"198.18.0.2/24\"\nqueues = 4\nqueue = 1\n",
            &[],
        ));
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.message.contains("cannot be used with"), "{error}");

        let error = config_error(serve_with("noip", "iface = \"eth1\"\n", &[]));
        assert!(
            error.message.contains("--ip")
                && error.message.contains("in the file or on the command line"),
            "{error}"
        );
        // Given on the command line, it is not missing.
        serve_with("ipcli", "iface = \"eth1\"\n", &["--ip", "198.18.0.2/24"]).unwrap();

        let error = config_error(serve_with("toml", "ip = \n", &[]));
        assert_eq!(error.line, Some(1));
        assert!(error.message.contains("not valid TOML"), "{error}");
        let error = config_error(serve_with(
            "table",
            "[serve]\nip = \"198.18.0.2/24\"\n",
            &[],
        ));
        assert!(error.message.contains("tables are not allowed"), "{error}");
        assert_eq!(error.line, Some(1));
    }

    #[test]
    fn ip_is_a_string_or_a_list_of_both_families() {
        let args = serve_with(
            "ip-list",
            "ip = [\"198.18.0.2/24\", \"2001:2::2/64\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(args.ips().unwrap().cidrs(), "198.18.0.2/24, 2001:2::2/64");
        let args = serve_with("ip-v6", "ip = \"2001:2::2/64\"\n", &[]).unwrap();
        let ips = args.ips().unwrap();
        assert_eq!((ips.ipv4, ips.ipv6.len()), (None, 1));
        // The command line's --ip replaces the file's list as a whole.
        let args = serve_with(
            "ip-cli",
            "ip = [\"198.18.0.2/24\", \"2001:2::2/64\"]\n",
            &["--ip", "2001:2::9/64"],
        )
        .unwrap();
        assert_eq!(args.ips().unwrap().cidrs(), "2001:2::9/64");

        for (text, line, words) in [
            (
                "iface = \"eth1\"\nip = [\"198.18.0.2/24\", \"198.18.0.3/24\"]\n",
                2,
                "ip: two IPv4 addresses, 198.18.0.2/24 and 198.18.0.3/24",
            ),
            (
                "\nip = [\"2001:2::2/64\", \"2001:2::3/64\", \"2001:2::4/64\", \"2001:2::5/64\"]\n",
                2,
                "ip: 4 IPv6 addresses",
            ),
            (
                "port = 80\nip = [\"198.18.0.2/24\", \"fe80::2/64\"]\n",
                2,
                "link-local address from the MAC",
            ),
            ("\n\nip = \"2001:2::2\"\n", 3, "has no prefix length"),
            ("ip = \"2001:2::2/129\"\n", 1, "from 1 to 128"),
            (
                "ip = [\"198.18.0.2/24\", 5]\n",
                1,
                "'5' has no prefix length",
            ),
        ] {
            let error = config_error(serve_with("ip-bad", text, &[]));
            assert_eq!(error.line, Some(line), "{text}: {error}");
            assert!(error.message.contains(words), "{text}: {error}");
        }
    }

    #[test]
    fn ip_mistakes_on_the_command_line_are_clap_errors() {
        for (ips, words) in [
            (
                &["198.18.0.2/24", "198.18.0.3/24"][..],
                "two IPv4 addresses",
            ),
            (
                &[
                    "2001:2::2/64",
                    "2001:2::3/64",
                    "2001:2::4/64",
                    "2001:2::5/64",
                ],
                "at most 3",
            ),
            (&["::ffff:198.18.0.2/96"], "IPv4-mapped"),
        ] {
            let mut args = vec!["sirocco", "serve"];
            for ip in ips {
                args.extend(["--ip", ip]);
            }
            match parse_cli_from(args) {
                Err(CliError::Clap(error)) => {
                    assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
                    let message = clap_message(&error);
                    assert!(
                        message.contains("'--ip <ADDR/PREFIX>'") && message.contains(words),
                        "{message}"
                    );
                }
                other => panic!("{ips:?}: {other:?}"),
            }
        }
        // Also with a file that does not set ip.
        let error = serve_with(
            "ip-cli-bad",
            "port = 81\n",
            &["--ip", "198.18.0.2/24", "--ip", "198.18.0.3/24"],
        );
        assert!(
            matches!(&error, Err(CliError::Clap(e)) if clap_message(e).contains("two IPv4")),
            "{error:?}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_and_no_config_parses_as_before() {
        let result = parse_cli_from(["sirocco", "serve", "--config", "/nonexistent/s.toml"]);
        let Err(CliError::Config(error)) = result else {
            panic!("{result:?}")
        };
        assert!(error.message.contains("cannot read"), "{error}");
        assert!(matches!(
            parse_cli_from(["sirocco", "serve"]),
            Err(CliError::Clap(e)) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
        ));
        assert!(parse_cli_from(["sirocco", "serve", "--ip", "198.18.0.2/24"]).is_ok());
        assert!(matches!(
            parse_cli_from(["sirocco", "--version"]),
            Err(CliError::Clap(e)) if e.kind() == clap::error::ErrorKind::DisplayVersion
        ));
    }

    #[test]
    fn the_example_file_parses() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = repo.join("sirocco.toml");
        let file = ConfigFile::load(&example).unwrap();
        for key in [
            "iface",
            "ip",
            "root",
            "queues",
            "max-connections",
            "sleep-when-idle",
        ] {
            assert!(
                file.settings.iter().any(|s| s.key == key),
                "the example does not set {key}"
            );
        }
    }

    #[test]
    fn old_flag_names_still_work_in_the_file() {
        let text = "ip = \"198.18.0.2/24\"\nidle-wait = true\nxdp-redirect-all = true\n\
                    pcap-out = \"answers.pcap\"\n";
        let args = serve_with("renamed", text, &[]).unwrap();
        assert!(args.common.sleep_when_idle && args.dedicated_nic);
        assert_eq!(args.common.capture, Some(PathBuf::from("answers.pcap")));
        let args = serve_with(
            "renamed-netmap",
            "ip = \"198.18.0.2/24\"\nnetmap-nic-only = true\n",
            &[],
        )
        .unwrap();
        assert!(args.dedicated_nic);
        // The command line wins over the file whichever names the two use.
        let args = serve_with(
            "renamed-cli",
            "ip = \"198.18.0.2/24\"\npcap-out = \"file.pcap\"\n",
            &["--capture", "cli.pcap"],
        )
        .unwrap();
        assert_eq!(args.common.capture, Some(PathBuf::from("cli.pcap")));
    }

    #[test]
    fn old_flag_names_still_work_on_the_command_line_and_stay_hidden() {
        let parse = |flags: &[&str]| {
            let mut args = vec!["sirocco", "serve", "--ip", "198.18.0.2/24"];
            args.extend(flags);
            match Cli::try_parse_from(args).unwrap().command {
                Command::Serve(serve) => *serve,
                _ => unreachable!("serve parses as serve"),
            }
        };
        let old = parse(&["--idle-wait", "--xdp-redirect-all", "--pcap-out", "a.pcap"]);
        let new = parse(&[
            "--sleep-when-idle",
            "--dedicated-nic",
            "--capture",
            "a.pcap",
        ]);
        assert!(old.common.sleep_when_idle && new.common.sleep_when_idle);
        assert!(old.dedicated_nic && new.dedicated_nic);
        assert_eq!(old.common.capture, new.common.capture);
        assert!(parse(&["--netmap-nic-only"]).dedicated_nic);
        // Giving the old and the new name of one flag is giving it twice.
        assert!(
            Cli::try_parse_from([
                "sirocco",
                "serve",
                "--ip",
                "198.18.0.2/24",
                "--pcap-out",
                "a",
                "--capture",
                "b"
            ])
            .is_err()
        );

        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        for new in ["--sleep-when-idle", "--dedicated-nic", "--capture"] {
            assert!(help.contains(new), "{new} missing from serve --help");
        }
        for old in [
            "--idle-wait",
            "--xdp-redirect-all",
            "--netmap-nic-only",
            "--pcap-out",
        ] {
            assert!(!help.contains(old), "{old} shown in serve --help");
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("port", "port"), 0);
    }
}
