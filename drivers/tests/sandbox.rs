//! The sandbox of `sirocco serve` (`sirocco_drivers::sandbox`), tested in child processes: a
//! filter cannot be taken off again, and a forbidden call kills the whole process.
//!
//! Each child is this test binary run again with `SIROCCO_SANDBOX_CHILD=<case>`, which makes
//! [`zz_child_process_entry`] play that case instead of doing nothing. The parent checks how
//! the child ended: by `SIGSYS` for a call outside the filter, or normally for the calls the
//! server makes (threads, reading a tree, sleeping, channels, allocation). Dropping privileges
//! needs root: without it, that test checks that the drop is refused with a clear error.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sirocco_drivers::sandbox::{self, SandboxError, User};

const CHILD: &str = "SIROCCO_SANDBOX_CHILD";
const CHILD_DIR: &str = "SIROCCO_SANDBOX_CHILD_DIR";

/// A fresh directory with a small tree (two files and a subdirectory), readable by everyone,
/// removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        use std::os::unix::fs::PermissionsExt;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("sirocco-sandbox-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).expect("create the test tree");
        std::fs::write(root.join("index.html"), "hello\n").expect("write index.html");
        std::fs::write(root.join("sub/data.bin"), vec![7u8; 300_000]).expect("write data.bin");
        for (path, mode) in [
            (root.clone(), 0o755),
            (root.join("sub"), 0o755),
            (root.join("index.html"), 0o644),
            (root.join("sub/data.bin"), 0o644),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .expect("chmod the test tree");
        }
        Tree(root)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `case` in a child (this binary again, with no core dump) and returns how it ended.
fn child(case: &str, dir: &Path) -> Output {
    child_with(case, dir, &[])
}

fn child_with(case: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new("sh")
        .envs(env.iter().copied())
        .args(["-c", "ulimit -c 0 && exec \"$@\"", "sh"])
        .arg(exe)
        .args(["--exact", "zz_child_process_entry", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, case)
        .env(CHILD_DIR, dir)
        .output()
        .expect("run the child")
}

fn describe(output: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_killed_by_sigsys(case: &str, output: &Output) {
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSYS),
        "{case}: the child was not killed by SIGSYS: {}",
        describe(output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("FILTER-INSTALLED"),
        "{case}: died before the filter was in: {}",
        describe(output)
    );
    assert!(
        !stdout.contains("SURVIVED"),
        "{case}: ran on after the forbidden call: {}",
        describe(output)
    );
}

fn supported() -> bool {
    if !sandbox::SECCOMP_SUPPORTED {
        assert!(matches!(
            sandbox::install_seccomp_filter(),
            Err(SandboxError::Unsupported)
        ));
        eprintln!("NOT RUN: no seccomp filter on this platform");
    }
    sandbox::SECCOMP_SUPPORTED
}

#[test]
fn a_forbidden_system_call_kills_the_process_with_sigsys() {
    if !supported() {
        return;
    }
    let tree = Tree::new("forbidden");
    // socket(2): a compromised server opening a connection.
    let output = child("forbidden", &tree.0);
    assert_killed_by_sigsys("socket", &output);
    // openat(2) for writing: the server only reads files once it runs.
    let output = child("open-for-writing", &tree.0);
    assert_killed_by_sigsys("openat(O_WRONLY|O_CREAT)", &output);
    assert!(!tree.0.join("created.txt").exists(), "the file was created");
    // A new process (clone without CLONE_THREAD, or its pipe2 first): never.
    let output = child("spawn", &tree.0);
    assert_killed_by_sigsys("starting a process", &output);
    // fcntl is allowed to read a descriptor's flags only, not to duplicate it.
    let output = child("fcntl-dup", &tree.0);
    assert_killed_by_sigsys("fcntl(F_DUPFD)", &output);
}

#[test]
fn the_calls_the_server_makes_still_work_under_the_filter() {
    if !supported() {
        return;
    }
    let tree = Tree::new("allowed");
    let output = child("allowed", &tree.0);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ALLOWED-OK"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_panic_under_the_filter_is_reported_with_its_backtrace_not_killed() {
    if !supported() {
        return;
    }
    let tree = Tree::new("panic");
    let output = child_with("panic", &tree.0, &[("RUST_BACKTRACE", "1")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // libtest reports the failed test and exits 101.
    assert_eq!(output.status.code(), Some(101), "{}", describe(&output));
    assert!(
        stderr.contains("PANIC-UNDER-FILTER"),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("stack backtrace"), "{}", describe(&output));
}

#[test]
fn a_user_that_does_not_exist_or_is_root_is_refused_with_a_clear_error() {
    let missing = User::lookup("sirocco-no-such-user").unwrap_err();
    assert!(
        matches!(missing, SandboxError::NoSuchUser(_)),
        "{missing:?}"
    );
    assert!(
        missing
            .to_string()
            .contains("no user named 'sirocco-no-such-user'")
    );
    assert!(matches!(
        User::lookup("bad\0name"),
        Err(SandboxError::NoSuchUser(_))
    ));
    let root = User::lookup("root").unwrap_err();
    assert!(matches!(root, SandboxError::RootUser(_)), "{root:?}");
}

#[test]
fn dropping_to_nobody_leaves_no_way_back_to_root() {
    let Ok(nobody) = User::lookup("nobody") else {
        eprintln!("NOT RUN: this system has no user nobody");
        return;
    };
    assert_ne!(nobody.uid, 0);
    assert!(nobody.groups.contains(&nobody.gid), "{nobody:?}");
    if !sandbox::is_root() {
        // Not root: the drop is refused, with the reason.
        let refused = sandbox::drop_privileges(&nobody).unwrap_err();
        assert!(matches!(refused, SandboxError::NotRoot(_)), "{refused:?}");
        assert!(refused.to_string().contains("needs root"), "{refused}");
        eprintln!("NOT RUN (in part): dropping privileges needs root");
        return;
    }
    let tree = Tree::new("drop");
    let output = child("drop", &tree.0);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("DROP-OK"),
        "{}",
        describe(&output)
    );
}

/// Not a test of its own: the body of a child process started by the tests above. In a normal
/// run (no `SIROCCO_SANDBOX_CHILD`) it does nothing.
#[test]
fn zz_child_process_entry() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).expect("the child's directory"));
    match case.as_str() {
        "forbidden" => {
            install();
            sandbox::forbidden_syscall();
            say("SURVIVED");
        }
        "open-for-writing" => {
            install();
            let _ = std::fs::File::create(dir.join("created.txt"));
            say("SURVIVED");
        }
        "spawn" => {
            install();
            let _ = Command::new("true").status();
            say("SURVIVED");
        }
        "fcntl-dup" => {
            install();
            // SAFETY: F_DUPFD on standard input only makes a new descriptor (or fails); no
            // memory is passed.
            let _ = unsafe { libc::fcntl(0, libc::F_DUPFD, 100) };
            say("SURVIVED");
        }
        "allowed" => {
            install();
            exercise_allowed_calls(&dir);
            say("ALLOWED-OK");
        }
        "panic" => {
            install();
            panic!("PANIC-UNDER-FILTER");
        }
        "drop" => drop_to_nobody(&dir),
        other => panic!("unknown child case {other}"),
    }
}

fn install() {
    let allowed = sandbox::install_seccomp_filter().expect("install the filter");
    assert_eq!(allowed, sandbox::allowed_syscalls().len());
    say("FILTER-INSTALLED");
}

/// A line on stdout, flushed at once (the parent reads it even if the process dies next).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What the running server does, the SIGHUP reload's thread above all.
fn exercise_allowed_calls(dir: &Path) {
    let dir = dir.to_path_buf();
    let (to_main, from_thread) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let reload = std::thread::Builder::new()
        .name("sandbox-reload".into())
        .spawn(move || {
            // The reload walks the tree, reads metadata, resolves the root and reads files.
            let root = dir.canonicalize().expect("canonicalize");
            let mut sizes = HashMap::new();
            for entry in std::fs::read_dir(root.join("sub")).expect("read_dir") {
                let entry = entry.expect("dir entry");
                let meta = entry.metadata().expect("metadata");
                sizes.insert(entry.file_name(), meta.len());
            }
            assert_eq!(sizes.len(), 1);
            let _ = std::fs::symlink_metadata(root.join("index.html")).expect("lstat");
            let mut big = Vec::new();
            for _ in 0..4 {
                big.extend(std::fs::read(root.join("sub/data.bin")).expect("read data.bin"));
            }
            big.shrink_to_fit();
            to_main
                .send(std::fs::read(root.join("index.html")).expect("read"))
                .unwrap();
            big.len()
        })
        .expect("spawn a thread under the filter");
    let index = from_thread
        .recv_timeout(Duration::from_secs(10))
        .expect("the thread's answer");
    assert_eq!(index, b"hello\n");
    assert_eq!(reload.join().expect("join"), 1_200_000);
    // What debug builds of the standard library do before closing a descriptor.
    // SAFETY: F_GETFD only reads standard input's descriptor flags; no memory is passed.
    let flags = unsafe { libc::fcntl(0, libc::F_GETFD) };
    assert!(
        flags >= 0,
        "fcntl(F_GETFD): {}",
        std::io::Error::last_os_error()
    );
    std::thread::sleep(Duration::from_millis(2));
    eprintln!("stderr works");
}

fn drop_to_nobody(dir: &Path) {
    let nobody = User::lookup("nobody").expect("look up nobody");
    sandbox::drop_privileges(&nobody).expect("drop to nobody");
    // This thread's: no_new_privs is a thread's attribute (the filter's TSYNC gives it to all).
    let status =
        std::fs::read_to_string("/proc/thread-self/status").expect("read /proc/thread-self/status");
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/thread-self/status"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(field("Uid:"), vec![nobody.uid.to_string(); 4]);
    assert_eq!(field("Gid:"), vec![nobody.gid.to_string(); 4]);
    for caps in ["CapEff:", "CapPrm:", "CapAmb:"] {
        assert_eq!(field(caps), vec!["0000000000000000"], "{caps}");
    }
    assert_eq!(field("NoNewPrivs:"), vec!["1"]);
    let caps = sandbox::capabilities().expect("capget");
    assert_eq!((caps.effective, caps.permitted), (0, 0));
    // Once dropped, dropping again (or to anyone else) is refused.
    assert!(matches!(
        sandbox::drop_privileges(&nobody),
        Err(SandboxError::NotRoot(uid)) if uid == nobody.uid
    ));
    // The reload still reads a tree that everyone may read, now as nobody and under the filter.
    if sandbox::SECCOMP_SUPPORTED {
        install();
    }
    exercise_allowed_calls(dir);
    say("DROP-OK");
}
