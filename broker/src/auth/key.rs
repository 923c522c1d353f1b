//! Pulsar's forms of a key or file given in configuration (`AuthTokenUtils.readKeyFromUrl`):
//! `data:;base64,<base64>`, `file:///path`, a path that exists, or bare base64.

use base64::Engine as _;

use super::AuthError;

/// The bytes `spec` names.
pub fn read(spec: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix("data:") {
        let (_, b64) = rest.split_once(',').ok_or_else(|| {
            AuthError::Config(format!("{what}: a data: URL needs `;base64,` and the data"))
        })?;
        return decode_base64(b64).map_err(|_| AuthError::Config(format!("{what}: not base64")));
    }
    if let Some(path) = spec.strip_prefix("file://") {
        return std::fs::read(path)
            .map_err(|e| AuthError::Config(format!("{what}: cannot read {path}: {e}")));
    }
    if std::path::Path::new(spec).is_file() {
        return std::fs::read(spec)
            .map_err(|e| AuthError::Config(format!("{what}: cannot read {spec}: {e}")));
    }
    decode_base64(spec).map_err(|_| {
        AuthError::Config(format!(
            "{what}: neither data:, file://, an existing file nor base64"
        ))
    })
}

/// Standard base64 (padding optional), or URL-safe.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
}

/// Standard base64 with padding.
pub fn encode_base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let bytes: Vec<u8> = (0..32).collect();
        let b64 = encode_base64(&bytes);
        assert_eq!(read(&format!("data:;base64,{b64}"), "k").unwrap(), bytes);
        assert_eq!(read(&b64, "k").unwrap(), bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read(&format!("file://{}", path.display()), "k").unwrap(),
            bytes
        );
        assert_eq!(read(&path.display().to_string(), "k").unwrap(), bytes);
        assert!(read("file:///nonexistent/x", "k").is_err());
        assert!(read("not base64 !!", "k").is_err());
    }
}
