//! `magnetar tokens`: Pulsar's `bin/pulsar tokens` — make a secret key, make and inspect
//! tokens signed with it — with Pulsar's flags and output, so keys and tokens made by either
//! tool work with both (`docs/security.md`). Public-key tokens (create-key-pair, RS256/ES256)
//! are not supported yet.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use broker::auth::token;

/// `magnetar tokens …`.
#[derive(Debug, clap::Subcommand)]
pub enum Tokens {
    /// Make a random secret key for HMAC-signed tokens (raw bytes; Pulsar's format).
    CreateSecretKey {
        /// HS256 (32 bytes), HS384 (48) or HS512 (64).
        #[arg(short = 'a', long = "signature-algorithm", default_value = "HS256")]
        algorithm: String,
        /// Write the key to this file (mode 0600) instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Base64-encode the key.
        #[arg(short = 'b', long)]
        base64: bool,
    },
    /// Make a token for a role, signed with a secret key.
    Create {
        /// The role (the `sub` claim).
        #[arg(short = 's', long)]
        subject: String,
        /// Lifetime, e.g. 30m, 12h, 7d, 1y (default: never expires).
        #[arg(short = 'e', long = "expiry-time")]
        expiry_time: Option<String>,
        /// The secret key: data:;base64,…, file:///path, a path, or base64 (`-sk`).
        #[arg(long = "secret-key")]
        secret_key: Option<String>,
        /// A private key (public-key tokens, not supported yet) (`-pk`).
        #[arg(long = "private-key")]
        private_key: Option<String>,
        /// HS256, HS384 or HS512.
        #[arg(short = 'a', long = "signature-algorithm", default_value = "HS256")]
        algorithm: String,
    },
    /// Print a token's header and claims (not verified).
    Show {
        /// The token.
        token: Option<String>,
        /// Read the token from standard input.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Read the token from a file.
        #[arg(short = 'f', long = "token-file")]
        token_file: Option<PathBuf>,
    },
    /// Check a token's signature and expiry; print its claims.
    Validate {
        /// The token.
        token: Option<String>,
        /// Read the token from standard input.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Read the token from a file.
        #[arg(short = 'f', long = "token-file")]
        token_file: Option<PathBuf>,
        /// The secret key (`-sk`).
        #[arg(long = "secret-key")]
        secret_key: Option<String>,
        /// A public key (not supported yet) (`-pk`).
        #[arg(long = "public-key")]
        public_key: Option<String>,
    },
}

/// Pulsar's multi-letter short flags (`-sk`, `-pk`), which clap does not have: turned into
/// their long forms before parsing.
pub fn rewrite_args(args: Vec<String>) -> Vec<String> {
    if args.get(1).map(String::as_str) != Some("tokens") {
        return args;
    }
    let pk = if args.get(2).map(String::as_str) == Some("validate") {
        "--public-key"
    } else {
        "--private-key"
    };
    args.into_iter()
        .map(|a| match a.as_str() {
            "-sk" => "--secret-key".into(),
            "-pk" => pk.into(),
            _ => a,
        })
        .collect()
}

fn algorithm(name: &str) -> anyhow::Result<(token::Algorithm, usize)> {
    Ok(match name {
        "HS256" => (token::Algorithm::HS256, 32),
        "HS384" => (token::Algorithm::HS384, 48),
        "HS512" => (token::Algorithm::HS512, 64),
        "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512" | "PS256" | "PS384" | "PS512" => {
            bail!("{name}: public-key tokens are not supported yet (use HS256, HS384 or HS512)")
        }
        other => bail!("{other:?} is not a signature algorithm (HS256, HS384, HS512)"),
    })
}

/// Pulsar's RelativeTimeUtil: a number and one of s, m, h, d, w, y.
fn parse_lifetime(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("{s:?}: expected e.g. 30m, 12h, 7d, 1y"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        other => bail!("{s:?}: unknown unit {other:?} (s, m, h, d, w, y)"),
    };
    n.checked_mul(unit).context("the lifetime is too long")
}

fn read_token(token: Option<String>, stdin: bool, file: Option<PathBuf>) -> anyhow::Result<String> {
    let t = match (token, stdin, file) {
        (Some(t), false, None) => t,
        (None, true, None) => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t)?;
            t
        }
        (None, false, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        _ => bail!("give the token as an argument, or -i, or -f FILE (one of them)"),
    };
    Ok(t.trim().to_owned())
}

/// Runs a `tokens` subcommand.
pub fn run(cmd: Tokens) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    match cmd {
        Tokens::CreateSecretKey {
            algorithm: alg,
            output,
            base64,
        } => {
            let (_, len) = algorithm(&alg)?;
            let mut key = vec![0u8; len];
            rand::fill(&mut key[..]);
            let bytes = if base64 {
                broker::auth::key::encode_base64(&key).into_bytes()
            } else {
                key
            };
            match output {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    f.write_all(&bytes)?;
                    f.sync_all()?;
                }
                None => out.write_all(&bytes)?,
            }
        }
        Tokens::Create {
            subject,
            expiry_time,
            secret_key,
            private_key,
            algorithm: alg,
        } => {
            if private_key.is_some() {
                bail!("--private-key: public-key tokens are not supported yet (use --secret-key)");
            }
            let Some(spec) = secret_key else {
                bail!("--secret-key (-sk) is required");
            };
            let (alg, _) = algorithm(&alg)?;
            let secret = broker::auth::key::read(&spec, "--secret-key")?;
            let mut claims = vec![("sub", serde_json::Value::from(subject))];
            if let Some(e) = expiry_time {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs();
                claims.push(("exp", (now + parse_lifetime(&e)?).into()));
            }
            writeln!(out, "{}", token::sign_with_secret(&secret, &claims, alg)?)?;
        }
        Tokens::Show {
            token: t,
            stdin,
            token_file,
        } => {
            let (header, payload) = token::show(&read_token(t, stdin, token_file)?)?;
            writeln!(out, "{header}\n---\n{payload}")?;
        }
        Tokens::Validate {
            token: t,
            stdin,
            token_file,
            secret_key,
            public_key,
        } => {
            if public_key.is_some() {
                bail!("--public-key: public-key tokens are not supported yet (use --secret-key)");
            }
            let Some(spec) = secret_key else {
                bail!("--secret-key (-sk) is required");
            };
            let t = read_token(t, stdin, token_file)?;
            let provider = token::TokenProvider::new(&broker::auth::AuthSettings {
                token_secret_key: broker::auth::Secret(spec),
                ..Default::default()
            })?;
            let claims = provider.claims(t.as_bytes())?;
            writeln!(out, "{claims}")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_and_flags() {
        assert_eq!(parse_lifetime("30").unwrap(), 30);
        assert_eq!(parse_lifetime("2h").unwrap(), 7200);
        assert_eq!(parse_lifetime("1y").unwrap(), 365 * 86_400);
        assert!(parse_lifetime("3x").is_err());
        assert!(parse_lifetime("h").is_err());
        assert!(parse_lifetime("99999999999999999999y").is_err());
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rewrite_args(args(&["magnetar", "tokens", "create", "-sk", "k"])),
            args(&["magnetar", "tokens", "create", "--secret-key", "k"])
        );
        assert_eq!(
            rewrite_args(args(&["magnetar", "admin", "-sk"])),
            args(&["magnetar", "admin", "-sk"])
        );
    }
}
