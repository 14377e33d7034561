//! Secret-valued librdkafka properties and how their values are hidden
//! wherever kafka-handler prints a configuration or an error.

use std::fmt;

use rdkafka::error::KafkaError;

/// What a secret value is printed as (librdkafka's own word for it).
pub(crate) const REDACTED: &str = "[redacted]";

/// The properties librdkafka itself marks sensitive (`_RK_SENSITIVE` in
/// `rdkafka_conf.c` of librdkafka 2.12.1), and redacts in its own dumps.
const SENSITIVE: [&str; 13] = [
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
];

/// Whether `key`'s value is a secret: a property librdkafka marks
/// sensitive, or one whose name says it holds a password, secret or
/// private key (a later librdkafka's new property, a typo'd one that
/// librdkafka rejects with its value in the error).
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    SENSITIVE.contains(&key.as_str())
        || ["password", "secret", "passphrase", "private", ".key.pem"]
            .iter()
            .any(|word| key.contains(word))
}

/// `value`, or [`REDACTED`] when `key` holds a secret.
pub(crate) fn value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

/// Properties as `key=value, key=value`, secrets redacted.
pub(crate) struct Properties<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Display for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, raw)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key}={}", value(key, raw))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, raw)| (key, value(key, raw))))
            .finish()
    }
}

/// `err` with the value of a rejected secret property hidden. librdkafka
/// puts a rejected property's value in the error (and quotes it in the
/// description of some), which the binary prints and logs.
pub(crate) fn error(err: KafkaError) -> KafkaError {
    match err {
        KafkaError::ClientConfig(code, description, key, raw) if is_secret(&key) => {
            let description = if raw.is_empty() {
                description
            } else {
                description.replace(&raw, REDACTED)
            };
            KafkaError::ClientConfig(code, description, key, REDACTED.to_owned())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;

    #[test]
    fn librdkafkas_sensitive_properties_and_lookalikes_are_secret() {
        for key in [
            "sasl.password",
            "sasl.username",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "SASL.PASSWORD",
            "sasl.pasword.typo.password",
            "sasl.oauthbearer.assertion.private.key.passphrase",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "security.protocol",
            "sasl.mechanisms",
            "ssl.ca.location",
            "ssl.certificate.location",
            "bootstrap.servers",
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.token.endpoint.url",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }

    #[test]
    fn properties_print_with_secrets_redacted() {
        let properties = [
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ("sasl.password".to_owned(), "hunter2".to_owned()),
        ];
        let shown = Properties(&properties).to_string();
        assert_eq!(
            shown,
            "security.protocol=SASL_SSL, sasl.password=[redacted]"
        );
        let debug = format!("{:?}", Properties(&properties));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("SASL_SSL"), "{debug}");
    }

    #[test]
    fn a_rejected_secret_property_keeps_its_value_out_of_the_error() {
        // A real rejection: librdkafka refuses an unknown property with its
        // value in the error.
        let rejected = |key: &str, value: &str| match ClientConfig::new()
            .set(key, value)
            .create_native_config()
        {
            Ok(_) => panic!("librdkafka accepts {key}"),
            Err(err) => err,
        };
        let err = rejected("sasl.oauthbearer.client.secrett", "hunter2");
        assert!(format!("{err}").contains("hunter2"), "{err}");
        let redacted = error(err);
        for shown in [format!("{redacted}"), format!("{redacted:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("sasl.oauthbearer.client.secrett"), "{shown}");
        }

        let public = rejected("session.timeout.msx", "1500");
        assert!(format!("{}", error(public)).contains("1500"));
    }
}
