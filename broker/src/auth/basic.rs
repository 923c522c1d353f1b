//! The `basic` provider: users and password hashes from an htpasswd file (Pulsar's
//! `basicAuthConf`), each line exactly `user:hash`; `$apr1$` hashes are Apache MD5, anything
//! else traditional DES crypt — the two Pulsar accepts.

use std::collections::HashMap;

use super::{AuthError, Role, Secret};

/// Checks passwords.
pub struct BasicProvider {
    users: HashMap<String, String>,
}

impl BasicProvider {
    /// Reads the user file now.
    pub fn new(conf: &Secret) -> Result<Self, AuthError> {
        if conf.0.is_empty() {
            return Err(AuthError::Config(
                "the basic provider needs basicAuthConf".into(),
            ));
        }
        let bytes = super::key::read(&conf.0, "basicAuthConf")?;
        let text = String::from_utf8(bytes)
            .map_err(|_| AuthError::Config("basicAuthConf: not text".into()))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split(':').collect();
            let [user, hash] = parts[..] else {
                return Err(AuthError::Config(format!(
                    "basicAuthConf line {}: not `user:hash`",
                    i + 1
                )));
            };
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(BasicProvider { users })
    }

    /// The role of `user:password` (the user).
    pub fn authenticate(&self, data: &[u8]) -> Result<Role, AuthError> {
        let unknown = || AuthError::Invalid("Unknown user or invalid password".into());
        let text = std::str::from_utf8(data).map_err(|_| unknown())?;
        let parts: Vec<&str> = text.split(':').collect();
        let [user, password] = parts[..] else {
            return Err(unknown());
        };
        let hash = self.users.get(user).ok_or_else(unknown)?;
        let ok = if hash.starts_with("$apr1$") {
            htpasswd_verify::md5::verify_apr1_hash(hash, password).unwrap_or(false)
        } else {
            pwhash::unix_crypt::verify(password, hash)
        };
        if ok {
            Ok(user.to_owned())
        } else {
            Err(unknown())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's vectors (the Python suite's and Pulsar's test files).
    #[test]
    fn apr1_and_des_crypt() {
        let file = "admin:$apr1$FG4AO6aX$KGYPuMoLUou3i6vUkPUUf.\nsuperUser:mQQQIsyvvKRtU\nsuperUser2:$apr1$foobarmq$kuSZlLgOITksCkRgl57ie/\n";
        let p = BasicProvider::new(&Secret(format!(
            "data:;base64,{}",
            super::super::key::encode_base64(file.as_bytes())
        )))
        .unwrap();
        assert_eq!(p.authenticate(b"admin:123456").unwrap(), "admin");
        assert_eq!(p.authenticate(b"superUser:supepass").unwrap(), "superUser");
        assert_eq!(
            p.authenticate(b"superUser2:superpassword").unwrap(),
            "superUser2"
        );
        for bad in [
            &b"admin:12345"[..],
            b"nobody:x",
            b"admin",
            b"admin:1:2",
            b"superUser:supepasX",
        ] {
            assert!(p.authenticate(bad).is_err(), "{bad:?}");
        }
        let bad_file = Secret(format!(
            "data:;base64,{}",
            super::super::key::encode_base64(b"a:b:c\n")
        ));
        assert!(BasicProvider::new(&bad_file).is_err());
    }
}
