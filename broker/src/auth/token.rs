//! The `token` provider: a JWT signed with the broker's secret key (HS256/384/512, as Pulsar's
//! `tokenSecretKey`), its role the `tokenAuthClaim` claim (a string, or the first string of a
//! list), `exp` checked when present (no leeway), and the audience when one is configured.

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::DecodingKey;
use serde_json::Value;

use super::{AuthError, AuthSettings, Role};

/// Verifies tokens.
pub struct TokenProvider {
    key: DecodingKey,
    claim: String,
    audience: Option<(String, String)>,
}

impl TokenProvider {
    /// Reads the secret key now.
    pub fn new(s: &AuthSettings) -> Result<Self, AuthError> {
        if s.token_secret_key.0.is_empty() {
            return Err(AuthError::Config(
                "the token provider needs tokenSecretKey (public keys are not supported yet)"
                    .into(),
            ));
        }
        let secret = super::key::read(&s.token_secret_key.0, "tokenSecretKey")?;
        let key = DecodingKey::from_secret(&secret)
            .map_err(|e| AuthError::Config(format!("tokenSecretKey: {e}")))?;
        Ok(TokenProvider {
            key,
            claim: if s.token_auth_claim.is_empty() {
                "sub".into()
            } else {
                s.token_auth_claim.clone()
            },
            audience: s.token_audience.clone(),
        })
    }

    /// The role of a token (its bytes as the client sent them).
    pub fn authenticate(&self, data: &[u8]) -> Result<Role, AuthError> {
        let fail =
            |why: String| AuthError::Invalid(format!("Failed to authentication token: {why}"));
        let claims = self.claims(data)?;
        match claims.get(&self.claim) {
            Some(Value::String(r)) if !r.is_empty() => Ok(r.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find_map(|r| r.as_str().map(str::to_owned))
                .ok_or_else(|| fail(format!("the {} claim holds no role", self.claim))),
            _ => Err(fail(format!("no {} claim", self.claim))),
        }
    }

    /// The claims of a token whose signature, expiry and audience verify.
    pub fn claims(&self, data: &[u8]) -> Result<Value, AuthError> {
        let fail =
            |why: String| AuthError::Invalid(format!("Failed to authentication token: {why}"));
        let token = std::str::from_utf8(data)
            .map_err(|_| fail("not text".into()))?
            .trim();
        if token.is_empty() {
            return Err(fail("empty".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| fail(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(fail(format!(
                "algorithm {:?} needs a public key",
                header.alg
            )));
        }
        // The signature over `header.payload`, then the claims as JSON: roles may be lists,
        // which a fixed claims struct would refuse.
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| fail("not a compact JWT".into()))?;
        let valid =
            jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &self.key, header.alg)
                .map_err(|e| fail(e.to_string()))?;
        if !valid {
            return Err(fail("invalid signature".into()));
        }
        let payload = signed
            .split_once('.')
            .map(|(_, p)| p)
            .ok_or_else(|| fail("not a compact JWT".into()))?;
        let payload =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .map_err(|_| fail("the payload is not base64url".into()))?;
        let claims: Value =
            serde_json::from_slice(&payload).map_err(|e| fail(format!("the payload: {e}")))?;
        // `exp` when present, no leeway; none: the token never expires (Pulsar's rule).
        if let Some(exp) = claims.get("exp") {
            let exp = exp
                .as_f64()
                .ok_or_else(|| fail("exp is not a number".into()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            if now >= exp {
                return Err(fail("the token has expired".into()));
            }
        }
        if let Some((claim, audience)) = &self.audience {
            let ok = match claims.get(claim) {
                Some(Value::String(a)) => a == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(fail(format!("the {claim} claim does not hold {audience}")));
            }
        }
        Ok(claims)
    }
}

/// A token's `exp` claim (seconds since the epoch), read without verifying: for tokens
/// already verified, to know when to challenge their connection.
pub fn expiry(data: &[u8]) -> Option<f64> {
    let token = std::str::from_utf8(data).ok()?;
    let (_, payload) = show(token).ok()?;
    serde_json::from_str::<Value>(&payload)
        .ok()?
        .get("exp")?
        .as_f64()
}

/// Signs `claims` with a secret key as Pulsar's `bin/pulsar tokens create` does: a compact
/// JWT whose header is exactly `{"alg":"HS256"}` (no `typ`), so tokens made by either tool
/// are byte-for-byte alike.
/// `claims` keep their order (`sub` before `exp`, as Pulsar writes them).
pub fn sign_with_secret(
    secret: &[u8],
    claims: &[(&str, Value)],
    alg: Algorithm,
) -> Result<String, AuthError> {
    use base64::Engine;
    let name = match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        other => {
            return Err(AuthError::Config(format!(
                "{other:?} is not a secret-key algorithm (HS256, HS384, HS512)"
            )));
        }
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(format!("{{\"alg\":\"{name}\"}}"));
    let fields: Vec<String> = claims
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    let payload = b64.encode(format!("{{{}}}", fields.join(",")));
    let signed = format!("{header}.{payload}");
    let key = jsonwebtoken::EncodingKey::from_secret(secret)
        .map_err(|e| AuthError::Config(e.to_string()))?;
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, alg)
        .map_err(|e| AuthError::Config(e.to_string()))?;
    Ok(format!("{signed}.{signature}"))
}

/// A token's header and payload as JSON text, unverified (`tokens show`).
pub fn show(token: &str) -> Result<(String, String), AuthError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid(
            "not a compact JWT (header.payload.signature)".into(),
        ));
    };
    let text = |part: &str| {
        b64.decode(part)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| AuthError::Invalid("a part is not base64url text".into()))
    };
    Ok((text(h)?, text(p)?))
}

#[cfg(test)]
mod tests {
    use super::super::{AuthSettings, Secret};
    use super::*;

    const KEY: &str = "data:;base64,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn provider(audience: Option<(&str, &str)>) -> TokenProvider {
        TokenProvider::new(&AuthSettings {
            token_secret_key: Secret(KEY.into()),
            token_audience: audience.map(|(c, a)| (c.into(), a.into())),
            ..Default::default()
        })
        .unwrap()
    }

    fn sign(claims: Value) -> String {
        let key: Vec<u8> = (0..32).collect();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&key).unwrap(),
        )
        .unwrap()
    }

    /// The reference's vectors (made by Pulsar's `bin/pulsar tokens create`).
    #[test]
    fn pulsar_made_tokens() {
        let p = provider(None);
        let good = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwifQ.41DwdfALedR7gRdB5FUikoIlpD9Mnf-L52VdRvKEuXc";
        assert_eq!(p.authenticate(good.as_bytes()).unwrap(), "token-principal");
        let expired = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwiLCJleHAiOjEwMDAwMDAwMDB9.XBChExL2gaCx1Pr66mRhcNbVlDPp8Hi_92WMNf1AHWE";
        let e = p.authenticate(expired.as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("Failed to authentication token"),
            "{e}"
        );
        let mut forged = good.to_owned();
        forged.pop();
        forged.push('x');
        assert!(p.authenticate(forged.as_bytes()).is_err());
    }

    /// Tokens we sign are byte-for-byte Pulsar's (the reference's vectors).
    #[test]
    fn signing_matches_pulsar() {
        let key: Vec<u8> = (0..32).collect();
        let t =
            sign_with_secret(&key, &[("sub", "token-principal".into())], Algorithm::HS256).unwrap();
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwifQ.41DwdfALedR7gRdB5FUikoIlpD9Mnf-L52VdRvKEuXc"
        );
        let expired = sign_with_secret(
            &key,
            &[
                ("sub", "token-principal".into()),
                ("exp", 1_000_000_000.into()),
            ],
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            expired,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwiLCJleHAiOjEwMDAwMDAwMDB9.XBChExL2gaCx1Pr66mRhcNbVlDPp8Hi_92WMNf1AHWE"
        );
        let (h, p) = show(&t).unwrap();
        assert_eq!(h, r#"{"alg":"HS256"}"#);
        assert_eq!(p, r#"{"sub":"token-principal"}"#);
        assert!(show("a.b").is_err());
        assert!(sign_with_secret(&key, &[], Algorithm::RS256).is_err());
    }

    #[test]
    fn claims_lists_and_audience() {
        let p = provider(None);
        assert_eq!(
            p.authenticate(sign(serde_json::json!({"sub": ["a", "b"]})).as_bytes())
                .unwrap(),
            "a"
        );
        assert!(
            p.authenticate(sign(serde_json::json!({"other": "x"})).as_bytes())
                .is_err()
        );
        assert!(p.authenticate(b"").is_err());
        assert!(p.authenticate(&[0xff, 0xfe]).is_err());
        let a = provider(Some(("aud", "magnetar")));
        assert!(
            a.authenticate(sign(serde_json::json!({"sub": "r", "aud": "pulsar"})).as_bytes())
                .is_err()
        );
        assert_eq!(
            a.authenticate(
                sign(serde_json::json!({"sub": "r", "aud": ["x", "magnetar"]})).as_bytes()
            )
            .unwrap(),
            "r"
        );
    }
}
