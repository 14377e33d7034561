//! SASL in front of the mock cluster, which has no SASL: the Kafka
//! requests a client sends before it is authenticated (ApiVersions,
//! SaslHandshake, SaslAuthenticate) answered the way a broker with a
//! `SASL_SSL` listener answers them, for one user with PLAIN or
//! SCRAM-SHA-256/512 (RFC 5802, the server side, with ring).
//! [`TlsProxy::start_sasl`] runs it on each connection after the TLS
//! handshake.
//!
//! [`TlsProxy::start_sasl`]: crate::tls::TlsProxy::start_sasl

use std::io;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A SASL mechanism the proxy can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN`: the password in clear (inside TLS).
    Plain,
    /// `SCRAM-SHA-256`: a salted challenge; the password never travels.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// Its name, as `sasl.mechanisms` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The one user a SASL proxy accepts, and how it must authenticate.
#[derive(Clone, Debug)]
pub struct SaslUser {
    /// The only mechanism offered.
    pub mechanism: Mechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: String,
}

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What a Kafka broker says when the credentials are wrong.
const INVALID_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

/// Serves the client's requests until it authenticates: `Ok(true)` once it
/// did as `user` (the connection is then the broker's), `Ok(false)` when it
/// failed (the client has been told why; close the connection).
pub async fn authenticate(
    client: &mut (impl AsyncRead + AsyncWrite + Unpin),
    broker: &mut (impl AsyncRead + AsyncWrite + Unpin),
    user: &SaslUser,
) -> io::Result<bool> {
    let mut scram: Option<ScramExchange> = None;
    loop {
        let request = read_frame(client).await?;
        let mut reader = Reader(&request);
        let api_key = reader.i16()?;
        let api_version = reader.i16()?;
        let correlation_id = reader.i32()?;
        match api_key {
            API_VERSIONS => {
                // The broker's versions, plus the SASL requests it lacks.
                broker.write_all(&frame(&request)).await?;
                let response = read_frame(broker).await?;
                let response = with_sasl_versions(&response, api_version).unwrap_or(response);
                client.write_all(&frame(&response)).await?;
            }
            SASL_HANDSHAKE => {
                reader.nullable_string()?; // client id
                let offered = reader.string()? == user.mechanism.name();
                let error = if offered {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                let mut response = Vec::new();
                response.extend(correlation_id.to_be_bytes());
                response.extend(error.to_be_bytes());
                response.extend(1i32.to_be_bytes());
                push_string(&mut response, user.mechanism.name());
                client.write_all(&frame(&response)).await?;
                if !offered {
                    return Ok(false);
                }
            }
            SASL_AUTHENTICATE => {
                reader.nullable_string()?; // client id
                let token = reader.bytes()?;
                let step = match user.mechanism {
                    Mechanism::Plain => plain(token, user),
                    Mechanism::ScramSha256 | Mechanism::ScramSha512 => match scram.take() {
                        None => {
                            let (exchange, step) = ScramExchange::start(token, user);
                            scram = exchange;
                            step
                        }
                        Some(exchange) => exchange.finish(token),
                    },
                };
                let mut response = Vec::new();
                response.extend(correlation_id.to_be_bytes());
                match step.error {
                    None => {
                        response.extend(0i16.to_be_bytes());
                        response.extend((-1i16).to_be_bytes()); // no error message
                    }
                    Some(message) => {
                        response.extend(SASL_AUTHENTICATION_FAILED.to_be_bytes());
                        push_string(&mut response, message);
                    }
                }
                let reply_len = i32::try_from(step.reply.len()).expect("a short reply");
                response.extend(reply_len.to_be_bytes());
                response.extend(&step.reply);
                if api_version >= 1 {
                    response.extend(0i64.to_be_bytes()); // session lifetime: none
                }
                client.write_all(&frame(&response)).await?;
                client.flush().await?;
                if step.error.is_some() {
                    return Ok(false);
                }
                if step.done {
                    return Ok(true);
                }
            }
            // A broker refuses other requests before authentication.
            _ => return Ok(false),
        }
    }
}

/// One SaslAuthenticate round's answer.
struct Step {
    /// The bytes for the client.
    reply: Vec<u8>,
    /// Why authentication failed, if it did.
    error: Option<&'static str>,
    /// Whether the client is authenticated.
    done: bool,
}

impl Step {
    fn failed() -> Self {
        Self {
            reply: Vec::new(),
            error: Some(INVALID_CREDENTIALS),
            done: false,
        }
    }
}

/// PLAIN: `authzid NUL authcid NUL password` (RFC 4616).
fn plain(token: &[u8], user: &SaslUser) -> Step {
    let mut parts = token.split(|b| *b == 0);
    let _authzid = parts.next();
    let accepted = parts.next() == Some(user.username.as_bytes())
        && parts.next() == Some(user.password.as_bytes())
        && parts.next().is_none();
    if accepted {
        Step {
            reply: Vec::new(),
            error: None,
            done: true,
        }
    } else {
        Step::failed()
    }
}

/// The server's half of a SCRAM exchange (RFC 5802), between its first
/// message and the client's proof.
struct ScramExchange {
    hmac: hmac::Algorithm,
    digest: &'static digest::Algorithm,
    salted_password: Vec<u8>,
    nonce: String,
    /// `client-first-bare,server-first,`: the start of the AuthMessage.
    auth_message: String,
}

impl ScramExchange {
    /// Answers `client-first` (`n,,n=user,r=nonce`) with the salt, the
    /// iteration count and the combined nonce.
    fn start(token: &[u8], user: &SaslUser) -> (Option<Self>, Step) {
        let Ok(client_first) = std::str::from_utf8(token) else {
            return (None, Step::failed());
        };
        // The GS2 header (`n,,`: no channel binding) and the bare message.
        let Some(bare) = client_first.splitn(3, ',').nth(2) else {
            return (None, Step::failed());
        };
        let (Some(name), Some(client_nonce)) = (attribute(bare, 'n'), attribute(bare, 'r')) else {
            return (None, Step::failed());
        };
        if name != user.username {
            return (None, Step::failed());
        }
        let (hmac, digest, pbkdf2) = match user.mechanism {
            Mechanism::ScramSha512 => (
                hmac::HMAC_SHA512,
                &digest::SHA512,
                pbkdf2::PBKDF2_HMAC_SHA512,
            ),
            _ => (
                hmac::HMAC_SHA256,
                &digest::SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
            ),
        };
        let random = ring::rand::SystemRandom::new();
        let mut salt = [0u8; 16];
        let mut server_nonce = [0u8; 18];
        random.fill(&mut salt).expect("random bytes");
        random.fill(&mut server_nonce).expect("random bytes");
        let iterations = 4096;
        let mut salted_password = vec![0u8; digest.output_len()];
        pbkdf2::derive(
            pbkdf2,
            NonZeroU32::new(iterations).expect("non-zero"),
            &salt,
            user.password.as_bytes(),
            &mut salted_password,
        );
        let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        let exchange = Self {
            hmac,
            digest,
            salted_password,
            nonce,
            auth_message: format!("{bare},{server_first},"),
        };
        let step = Step {
            reply: server_first.into_bytes(),
            error: None,
            done: false,
        };
        (Some(exchange), step)
    }

    /// Checks `client-final` (`c=..,r=nonce,p=proof`) and answers with the
    /// server's signature.
    fn finish(self, token: &[u8]) -> Step {
        let Ok(client_final) = std::str::from_utf8(token) else {
            return Step::failed();
        };
        let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
            return Step::failed();
        };
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Step::failed();
        }
        let Ok(proof) = BASE64.decode(proof) else {
            return Step::failed();
        };
        let auth_message = format!("{}{without_proof}", self.auth_message);
        let sign = |key: &[u8], data: &[u8]| {
            hmac::sign(&hmac::Key::new(self.hmac, key), data)
                .as_ref()
                .to_vec()
        };
        let client_key = sign(&self.salted_password, b"Client Key");
        let stored_key = digest::digest(self.digest, &client_key);
        let client_signature = sign(stored_key.as_ref(), auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Step::failed();
        }
        let presented_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if digest::digest(self.digest, &presented_key).as_ref() != stored_key.as_ref() {
            return Step::failed();
        }
        let server_key = sign(&self.salted_password, b"Server Key");
        let server_signature = sign(&server_key, auth_message.as_bytes());
        Step {
            reply: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            error: None,
            done: true,
        }
    }
}

/// The value of SCRAM attribute `name` (`n=orders`) in a message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// An ApiVersions response with SaslHandshake v0-1 and SaslAuthenticate v0-1
/// added, or `None` when it is an error (the client retries another
/// version) or cannot be read.
fn with_sasl_versions(response: &[u8], version: i16) -> Option<Vec<u8>> {
    let mut reader = Reader(response);
    let correlation_id = reader.i32().ok()?;
    let error = reader.i16().ok()?;
    if error != 0 {
        return None;
    }
    let flexible = version >= 3;
    let count = if flexible {
        usize::try_from(reader.uvarint().ok()?.checked_sub(1)?).ok()?
    } else {
        usize::try_from(reader.i32().ok()?).ok()?
    };
    let entry_len = if flexible { 7 } else { 6 };
    let entries = reader.take(count * entry_len).ok()?;
    let rest = reader.0;
    let mut out = Vec::with_capacity(response.len() + 2 * entry_len + 4);
    out.extend(correlation_id.to_be_bytes());
    out.extend(error.to_be_bytes());
    if flexible {
        push_uvarint(&mut out, u32::try_from(count + 3).ok()?);
    } else {
        out.extend(i32::try_from(count + 2).ok()?.to_be_bytes());
    }
    out.extend(entries);
    for api in [SASL_HANDSHAKE, SASL_AUTHENTICATE] {
        out.extend(api.to_be_bytes());
        out.extend(0i16.to_be_bytes());
        out.extend(1i16.to_be_bytes());
        if flexible {
            out.push(0); // no tagged fields
        }
    }
    out.extend(rest);
    Some(out)
}

async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative frame length"))?;
    let mut frame = vec![0; len];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = i32::try_from(payload.len()).expect("a frame under 2 GiB");
    let mut out = len.to_be_bytes().to_vec();
    out.extend(payload);
    out
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    let len = i16::try_from(text.len()).expect("a short string");
    out.extend(len.to_be_bytes());
    out.extend(text.as_bytes());
}

fn push_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short frame"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> io::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn uvarint(&mut self) -> io::Result<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "varint too long",
        ))
    }

    fn nullable_string(&mut self) -> io::Result<Option<&'a [u8]>> {
        let len = self.i16()?;
        match usize::try_from(len) {
            Ok(len) => self.take(len).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn string(&mut self) -> io::Result<String> {
        let bytes = self.nullable_string()?.unwrap_or_default();
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = self.i32()?;
        self.take(usize::try_from(len).unwrap_or(0))
    }
}
