//! What a failed connection to the brokers means, from librdkafka's error
//! text, and the setting that fixes it: the causes an operator meets when
//! first pointing a consumer at a secured cluster (TLS, client
//! certificates, SASL).

/// A connection failure's cause and fix, both for one line of `--check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    pub(crate) cause: &'static str,
    pub(crate) fix: &'static str,
}

/// The known cause of librdkafka's connection error `reason`, if any.
pub(crate) fn connection_failure(reason: &str) -> Option<Diagnosis> {
    let reason = reason.to_ascii_lowercase();
    let has = |needle: &str| reason.contains(needle);
    let diagnosis = if has("certificate verify failed")
        || has("error:0a000086")
        || has("failed to verify broker certificate")
    {
        // OpenSSL's verdict does not say whether the chain or the host name
        // failed: name both.
        Diagnosis {
            cause: "the brokers' TLS certificate could not be verified: it is not signed by a CA \
                    the client trusts, or does not name the host connected to",
            fix: "set ssl.ca.location to the cluster's CA certificate (a PEM file; for a \
                  publicly signed cluster, install the ca-certificates package), and connect \
                  with a host name the certificate holds",
        }
    } else if has("client ssl authentication might be required")
        || has("certificate required")
        || has("peer did not return a certificate")
    {
        Diagnosis {
            cause: "the brokers require a client certificate (mutual TLS) and got none they accept",
            fix: "set ssl.certificate.location and ssl.key.location to a certificate the \
                  cluster's CA signed and its key (ssl.key.password via --set-file if the key is \
                  encrypted)",
        }
    } else if has("connecting to a plaintext broker listener")
        // A TLS listener answers a bad handshake with an alert; closing the
        // connection in the middle of it is what a plaintext one does (the
        // hint above comes only when librdkafka's TLS layer saw it first).
        || (has("disconnected") && has("in state ssl_handshake"))
        || has("wrong version number")
        || has("packet length too long")
        || has("record layer failure")
    {
        Diagnosis {
            cause: "the listener does not speak TLS",
            fix: "use the cluster's TLS port in --brokers, or security.protocol=PLAINTEXT \
                  (SASL_PLAINTEXT with SASL) if this listener is meant to be plaintext",
        }
    } else if has("connecting to a ssl listener")
        // Closed on the first request: a TLS listener given plaintext (a
        // broker's name says `ssl://` or `sasl_ssl://` when TLS is on).
        || (has("disconnected") && has("in state apiversion_query") && !has("ssl://"))
    {
        Diagnosis {
            cause: "the listener expects TLS and the client speaks plaintext",
            fix: "set security.protocol=SSL (SASL_SSL with a user name and password), and \
                  ssl.ca.location if the cluster's CA is private",
        }
    } else if has("unsupported sasl mechanism")
        || has("not supported by broker")
        || has("sasl handshake failed")
    {
        Diagnosis {
            cause: "the brokers do not offer the SASL mechanism the client asked for",
            fix: "set sasl.mechanisms to one the cluster enables (PLAIN, SCRAM-SHA-256, \
                  SCRAM-SHA-512 or OAUTHBEARER)",
        }
    } else if has("sasl authentication error")
        || has("authentication failed")
        || has("invalid username or password")
    {
        Diagnosis {
            cause: "the brokers refused the credentials",
            fix: "check sasl.username and sasl.password (give the password with --set-file or \
                  --set-env) and that sasl.mechanisms matches the user's (PLAIN, SCRAM-SHA-256 \
                  or SCRAM-SHA-512)",
        }
    } else if has("require sasl authentication") {
        Diagnosis {
            cause: "the brokers require SASL authentication",
            fix: "set security.protocol=SASL_SSL (or SASL_PLAINTEXT), sasl.mechanisms, \
                  sasl.username and sasl.password",
        }
    } else {
        return None;
    };
    Some(diagnosis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka 2.12.1's texts (rdkafka_ssl.c, rdkafka_broker.c,
    /// rdkafka_request.c); the end-to-end tests in `tests/tests/secured.rs`
    /// meet them for real.
    #[test]
    fn librdkafkas_connection_errors_map_to_a_cause_and_a_fix() {
        let cases = [
            (
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
                 routines::certificate verify failed: broker certificate could not be verified, \
                 verify that ssl.ca.location is correctly configured or root CA certificates \
                 are installed (install ca-certificates package) (after 3ms in state \
                 SSL_HANDSHAKE)",
                "ssl.ca.location",
            ),
            (
                "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: connecting \
                 to a PLAINTEXT broker listener? (after 0ms in state SSL_HANDSHAKE)",
                "security.protocol=PLAINTEXT",
            ),
            (
                "0/1 brokers are down (ssl://127.0.0.1:9092/bootstrap: Disconnected: connection \
                 reset by peer (after 0ms in state SSL_HANDSHAKE))",
                "security.protocol=PLAINTEXT",
            ),
            (
                "127.0.0.1:9093/bootstrap: Disconnected while requesting ApiVersion: might be \
                 caused by incorrect security.protocol configuration (connecting to a SSL \
                 listener?) or broker version is < 0.10 (see api.version.request)",
                "security.protocol=SSL",
            ),
            (
                "1/1 brokers are down (127.0.0.1:9093/bootstrap: Disconnected: connection closed \
                 by peer: receive 0 after POLLIN (after 0ms in state APIVERSION_QUERY))",
                "security.protocol=SSL",
            ),
            (
                "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication \
                 failed: Invalid username or password (after 5ms in state AUTH_REQ)",
                "sasl.password",
            ),
            (
                "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A00045C:SSL \
                 routines::tlsv13 alert certificate required",
                "ssl.certificate.location",
            ),
        ];
        for (reason, fix) in cases {
            let diagnosis = connection_failure(reason).unwrap_or_else(|| panic!("{reason}"));
            assert!(diagnosis.fix.contains(fix), "{reason}: {diagnosis:?}");
        }
        assert_eq!(connection_failure("Connection refused"), None);
        // A TLS client closed on while negotiating is not this.
        assert_eq!(
            connection_failure(
                "ssl://127.0.0.1:9093/bootstrap: Disconnected (after 0ms in state \
                 APIVERSION_QUERY)"
            ),
            None
        );
    }
}
