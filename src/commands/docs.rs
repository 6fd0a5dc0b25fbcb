//! `sirocco completions SHELL` and `sirocco man`: shell completions and the man page, generated
//! from the clap definitions in `cli.rs`, so they list every command and flag as `--help` does.
//!
//! Both are built in memory and then written in one go: a reader that goes away early
//! (`sirocco man | head`) ends the command quietly instead of with a broken-pipe panic.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sirocco", &mut out);
    out
}

/// The man page of the command named by `path` (empty: `sirocco` itself), in roff. Each
/// command's page is named as the top page refers to it: `sirocco-serve(1)`, `sirocco-lab-up(1)`.
pub fn man(path: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    for word in path {
        let names: Vec<String> = command
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect();
        let Some(sub) = command.find_subcommand(word).cloned() else {
            anyhow::bail!(
                "`{}` has no command `{word}`; its commands: {}",
                command.get_display_name().unwrap_or("sirocco"),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        };
        command = sub;
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .context("rendering the man page")?;
    Ok(out)
}

/// Writes `text` to standard output. `Ok(true)` also when the reader went away.
pub fn print(text: &[u8]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn every_shell_gets_a_script_that_knows_the_commands_and_flags() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let script = completions(shell);
            let script = text(&script);
            for word in [
                "serve",
                "demo",
                "lab",
                "check-config",
                "max-connections",
                "syn-cache-size",
                "config",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn the_bash_script_parses() {
        let dir = std::env::temp_dir().join(format!("sirocco-completions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sirocco.bash");
        std::fs::write(&path, completions(Shell::Bash)).unwrap();
        let check = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("run bash -n");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            check.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    /// `man -l` of `page`: what it printed, after checking it said nothing on stderr. `None`
    /// when `man` is not installed, which only `SIROCCO_REQUIRE_LAB=1` (CI, `tools/test` as
    /// root, which installs man-db) turns into a failure, as for the lab tests' tools.
    fn shown_by_man(page: &[u8], name: &str) -> Option<String> {
        let installed = Command::new("man").arg("--version").output().is_ok();
        if !installed {
            let required = std::env::var_os("SIROCCO_REQUIRE_LAB").is_some_and(|v| v == "1");
            assert!(
                !required,
                "man is not installed (tools/test installs man-db)"
            );
            eprintln!("NOT RUN: man -l {name}: man is not installed (tools/test installs man-db)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("sirocco-man-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).unwrap();
        let shown = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("run man -l (tools/test installs man-db)");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            shown.status.success() && shown.stderr.is_empty(),
            "man -l {name}: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
        Some(String::from_utf8_lossy(&shown.stdout).into_owned())
    }

    #[test]
    fn every_page_renders_and_man_reads_it() {
        let page = man(&[]).unwrap();
        let roff = text(&page);
        assert!(roff.contains(".TH sirocco 1"));
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "SUBCOMMANDS"] {
            assert!(roff.contains(&format!(".SH {section}")), "no {section}");
        }
        if let Some(shown) = shown_by_man(&page, "sirocco") {
            assert!(shown.contains("sirocco-serve(1)"), "{shown}");
            assert!(shown.contains("completions"), "{shown}");
        }

        let page = man(&["serve".to_string()]).unwrap();
        assert!(text(&page).contains(".TH sirocco-serve 1"));
        for flag in [
            "syn-cache-size",
            "keepalive-timeout",
            "user",
            "max-connections",
            "config",
        ] {
            assert!(
                text(&page).contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))),
                "sirocco-serve(1) has no --{flag}"
            );
        }
        if let Some(shown) = shown_by_man(&page, "sirocco-serve") {
            assert!(shown.contains("--syn-cache-size"), "{shown}");
        }
        let page = man(&["check-config".to_string()]).unwrap();
        assert!(text(&page).contains(".TH sirocco-check-config 1"));
        assert!(text(&page).contains("FILE"));
        shown_by_man(&page, "sirocco-check-config");
        let page = man(&["lab".to_string(), "up".to_string()]).unwrap();
        assert!(text(&page).contains(".TH sirocco-lab-up 1"));
        shown_by_man(&page, "sirocco-lab-up");

        let error = man(&["nosuch".to_string()]).unwrap_err().to_string();
        assert!(
            error.contains("no command `nosuch`") && error.contains("serve"),
            "{error}"
        );
    }
}
