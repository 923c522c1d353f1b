//! Running `magnetar admin` against a broker's HTTP address, as a user would.

use std::process::Command;

/// `magnetar admin --admin-url URL ARGS…`: (success, stdout, stderr).
pub fn admin(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crate::bin::magnetar())
        .args(["admin", "--admin-url", url])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs an admin command that must succeed; its stdout.
pub fn ok(url: &str, args: &[&str]) -> String {
    let (success, out, err) = admin(url, args);
    assert!(success, "magnetar admin {args:?} failed: {err}");
    out
}

/// Runs an admin command that must fail; its one-line error.
pub fn fails(url: &str, args: &[&str]) -> String {
    let (success, out, err) = admin(url, args);
    assert!(!success, "magnetar admin {args:?} succeeded: {out}");
    let line = err.trim().to_owned();
    assert_eq!(line.lines().count(), 1, "not one line: {line}");
    line
}

/// A command's JSON output.
pub fn json(url: &str, args: &[&str]) -> serde_json::Value {
    let out = ok(url, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}
