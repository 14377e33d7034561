//! `--set-file` and `--set-env`: a librdkafka property's value read from a
//! file (a mounted Kubernetes or Docker secret) or from an environment
//! variable, so that passwords and keys stay off the command line, where
//! `ps` and shell history show them.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::redact;

/// Where a property's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `--set-file KEY=PATH`: the file's contents, without a trailing
    /// line break.
    File(PathBuf),
    /// `--set-env KEY=VARIABLE`: the variable's value.
    Env(String),
}

impl Source {
    fn flag(&self) -> &'static str {
        match self {
            Source::File(_) => "--set-file",
            Source::Env(_) => "--set-env",
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Env(variable) => variable.clone(),
        }
    }
}

/// `properties` (from `--set`) followed by the properties `sources` name,
/// read with `env` for environment variables. A property given twice,
/// a file that cannot be read, an unset variable or an empty value is an
/// error naming the flag and the fix, never the value.
pub(crate) fn resolve(
    properties: &[(String, String)],
    sources: &[(String, Source)],
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(String, String)>, String> {
    let mut resolved = properties.to_vec();
    for (key, source) in sources {
        let flag = source.flag();
        let given = format!("{flag} {key}={}", source.describe());
        if resolved.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "{given}: `{key}` is also given by --set or another {flag}; keep one"
            ));
        }
        let value = match source {
            Source::File(path) => {
                let bytes = std::fs::read(path).map_err(|err| {
                    format!(
                        "{given}: cannot read {}: {err} (mount the secret at that path, or \
                         correct it)",
                        path.display()
                    )
                })?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("{given}: the file is not UTF-8 text"))?;
                // `echo secret > file` and most secret stores end the file
                // with a line break that is not part of the secret.
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
            Source::Env(variable) => env(variable)
                .ok_or_else(|| format!("{given}: the variable {variable} is not set"))?
                .into_string()
                .map_err(|_| format!("{given}: the variable {variable} is not UTF-8"))?,
        };
        if value.is_empty() {
            return Err(format!(
                "{given}: the value is empty (librdkafka would treat `{key}` as unset)"
            ));
        }
        resolved.push((key.clone(), value));
    }
    Ok(resolved)
}

/// The passwords, keys and client secrets among `properties` given on the
/// command line itself, where other users see them in `ps`. Secret-valued
/// properties that hold a path (`ssl.key.location`: the file is the
/// secret) or a user name are redacted in output but not worth a warning.
pub(crate) fn on_command_line(properties: &[(String, String)]) -> Vec<&str> {
    properties
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| redact::is_secret(key))
        .filter(|key| {
            !(key.ends_with(".location") || key.ends_with(".file") || key.ends_with(".username"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn values_come_from_files_and_variables_after_set() {
        let dir = std::env::temp_dir().join(format!("kh-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "hunter2\r\n").unwrap();
        let env = |name: &str| (name == "KAFKA_SECRET").then(|| OsString::from("s3cr3t"));
        let resolved = resolve(
            &[pair("security.protocol", "SASL_SSL")],
            &[
                ("sasl.password".into(), Source::File(file.clone())),
                (
                    "sasl.oauthbearer.client.secret".into(),
                    Source::Env("KAFKA_SECRET".into()),
                ),
            ],
            env,
        )
        .unwrap();
        assert_eq!(
            resolved,
            [
                pair("security.protocol", "SASL_SSL"),
                pair("sasl.password", "hunter2"),
                pair("sasl.oauthbearer.client.secret", "s3cr3t"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_empty_or_duplicated_source_names_the_flag_not_the_value() {
        let dir = std::env::temp_dir().join(format!("kh-secrets-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.join("missing");
        let cases = [
            (
                vec![],
                ("sasl.password", Source::File(missing.clone())),
                "cannot read",
            ),
            (
                vec![],
                ("sasl.password", Source::File(empty)),
                "the value is empty",
            ),
            (
                vec![],
                ("sasl.password", Source::Env("KAFKA_PASSWORD".into())),
                "the variable KAFKA_PASSWORD is not set",
            ),
            (
                vec![pair("sasl.password", "hunter2")],
                ("sasl.password", Source::Env("KAFKA_PASSWORD".into())),
                "also given by --set",
            ),
        ];
        for (set, (key, source), needle) in cases {
            let flag = source.flag();
            let error = resolve(&set, &[(key.to_owned(), source)], no_env).unwrap_err();
            assert!(error.starts_with(&format!("{flag} {key}=")), "{error}");
            assert!(error.contains(needle), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_passwords_and_keys_count_as_secrets_on_the_command_line() {
        let properties = [
            pair("security.protocol", "SASL_SSL"),
            pair("sasl.username", "orders"),
            pair("sasl.password", "hunter2"),
            pair("ssl.key.location", "/etc/kafka/client.key"),
            pair("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
        ];
        assert_eq!(
            on_command_line(&properties),
            ["sasl.password", "ssl.key.pem"]
        );
    }
}
