//! Cookies: proof that a bookie's disks are the ones the cluster knows. The same cookie is
//! kept in every data directory and under `bookies/cookies/<id>` in the metadata store; a
//! wiped or swapped disk (a directory missing its cookie, or holding another bookie's)
//! refuses to start, because serving from it would silently lose acknowledged entries.
//!
//! File `cookie`: magic (8) | version u32 | length u32 | protobuf `Cookie` | crc32c u32.

use std::path::Path;

use common::BookieId;
use meta::{BookieRegistry, PutCondition};
use prost::Message;
use proto::meta::Cookie;

use crate::error::{BookieError, Result};
use crate::format::{COOKIE_MAGIC, COOKIE_VERSION};
use crate::storage::checkpoint::write_atomic_real;

const FILE: &str = "cookie";

/// What a directory holds.
#[derive(Debug, PartialEq)]
pub enum LocalCookie {
    /// No cookie file.
    Absent,
    /// A readable cookie.
    Present(Cookie),
}

/// Reads the cookie of one directory. An unreadable one is `Corrupt`, never "absent".
pub fn read_local(dir: &Path) -> Result<LocalCookie> {
    let path = dir.join(FILE);
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalCookie::Absent),
        Err(e) => return Err(BookieError::io(&path)(e)),
    };
    let corrupt = |reason: &str| BookieError::Corrupt {
        location: path.display().to_string(),
        reason: reason.into(),
    };
    if b.len() < 20 || &b[..8] != COOKIE_MAGIC {
        return Err(corrupt("not a cookie file"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if common::checksum::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(corrupt("checksum mismatch"));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
    if version != COOKIE_VERSION {
        return Err(BookieError::UnsupportedVersion {
            path,
            found: version,
            supported: COOKIE_VERSION,
        });
    }
    let len = u32::from_le_bytes(b[12..16].try_into().unwrap_or_default()) as usize;
    if body.len() != 16 + len {
        return Err(corrupt("length does not match the file"));
    }
    Cookie::decode(&body[16..])
        .map(LocalCookie::Present)
        .map_err(|e| corrupt(&format!("cookie does not decode: {e}")))
}

/// Writes a directory's cookie atomically.
pub fn write_local(dir: &Path, cookie: &Cookie) -> Result<()> {
    let payload = cookie.encode_to_vec();
    let mut b = Vec::with_capacity(20 + payload.len());
    b.extend_from_slice(COOKIE_MAGIC);
    b.extend_from_slice(&COOKIE_VERSION.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&payload);
    let crc = common::checksum::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    write_atomic_real(dir, FILE, &b)
}

/// True if a directory already holds bookie data (journal or ledger files).
fn has_data(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| {
        it.any(|e| {
            e.ok().is_some_and(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".jnl") || name == "ledgers" || name == "checkpoint"
            })
        })
    })
}

/// The bookie id recorded in the cookies of `dirs`, when any holds one: a bookie started
/// without `bookie_id` keeps the identity of its disks, so a container that comes back with a
/// new address (a recreated Compose replica) is still the bookie its ledgers name. Cookies
/// naming different ids are an error; `verify_or_create` then checks the rest.
pub fn id_on_disk(dirs: &[&Path]) -> Result<Option<String>> {
    let mut found: Option<(String, &Path)> = None;
    for d in dirs {
        if !d.exists() {
            continue;
        }
        if let LocalCookie::Present(c) = read_local(d)? {
            match &found {
                Some((id, other)) if *id != c.bookie_id => {
                    return Err(BookieError::Cookie(format!(
                        "{} holds the cookie of bookie {id} but {} holds that of bookie {}: these directories belong to different bookies",
                        other.display(),
                        d.display(),
                        c.bookie_id
                    )));
                }
                Some(_) => {}
                None => found = Some((c.bookie_id, d)),
            }
        }
    }
    Ok(found.map(|(id, _)| id))
}

/// Checks (or, on a bookie's first start, creates) the cookies of `journal_dir` and
/// `ledger_dir` against the metadata store.
pub async fn verify_or_create(
    registry: &BookieRegistry,
    id: &BookieId,
    journal_dir: &Path,
    ledger_dir: &Path,
) -> Result<()> {
    let instance_id = registry.instance_id().await?;
    let expected = Cookie {
        format_version: proto::meta::FORMAT_VERSION,
        bookie_id: id.to_string(),
        instance_id,
        journal_dirs: vec![journal_dir.display().to_string()],
        ledger_dirs: vec![ledger_dir.display().to_string()],
    };
    let remote = registry.cookie(id).await?;
    let dirs = [journal_dir, ledger_dir];
    let mut locals = Vec::new();
    for d in dirs {
        std::fs::create_dir_all(d).map_err(BookieError::io(d))?;
        locals.push(read_local(d)?);
    }
    let fix = format!(
        "if the disk was replaced on purpose, run `magnetar ledgers decommission {id}` \
         (or delete the key bookies/cookies/{id}) and start again with empty directories"
    );
    match remote {
        None => {
            for (d, local) in dirs.iter().zip(&locals) {
                if let LocalCookie::Present(c) = local {
                    let hint = if c.bookie_id == id.as_str() {
                        "this disk belongs to another cluster or the metadata was lost"
                    } else {
                        "the configured bookie id differs from the one on disk: leave bookie_id empty to keep the disk's, or start this id with empty directories"
                    };
                    return Err(BookieError::Cookie(format!(
                        "{} holds the cookie of bookie {} (cluster {}) but the metadata store has none for {id}; {hint}",
                        d.display(),
                        c.bookie_id,
                        c.instance_id
                    )));
                }
                if has_data(d) {
                    return Err(BookieError::Cookie(format!(
                        "{} holds data but no cookie; refusing to adopt it as bookie {id}",
                        d.display()
                    )));
                }
            }
            for d in dirs {
                write_local(d, &expected)?;
            }
            match registry.put_cookie(&expected, PutCondition::Absent).await {
                Ok(_) => {
                    tracing::info!(bookie = %id, "new bookie: cookie created");
                    Ok(())
                }
                Err(meta::MetaError::AlreadyExists { .. }) => Err(BookieError::Cookie(format!(
                    "another bookie registered the id {id} at the same time"
                ))),
                Err(e) => Err(e.into()),
            }
        }
        Some((cookie, _)) => {
            for (d, local) in dirs.iter().zip(&locals) {
                match local {
                    LocalCookie::Absent => {
                        return Err(BookieError::Cookie(format!(
                            "{} has no cookie but the cluster knows bookie {id}: the directory \
                             was wiped or swapped, and serving from it would lose acknowledged \
                             entries; {fix}",
                            d.display()
                        )));
                    }
                    LocalCookie::Present(c)
                        if c.instance_id != cookie.instance_id
                            || c.bookie_id != cookie.bookie_id =>
                    {
                        return Err(BookieError::Cookie(format!(
                            "{} holds the cookie of bookie {} in cluster {}, expected bookie {id} in cluster {}; {fix}",
                            d.display(),
                            c.bookie_id,
                            c.instance_id,
                            cookie.instance_id
                        )));
                    }
                    LocalCookie::Present(_) => {}
                }
            }
            Ok(())
        }
    }
}
