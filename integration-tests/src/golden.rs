//! Golden files: a test's output compared with `tests/golden/<name>`
//! (`MAGNETAR_UPDATE_GOLDEN=1` rewrites them).

/// Asserts `actual` equals the golden file `name` (rewriting it first when asked to).
pub fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("MAGNETAR_UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "golden file {name} differs (MAGNETAR_UPDATE_GOLDEN=1 to rewrite)"
    );
}
