//! SASL/PLAIN in front of the mock cluster, which has no SASL: the Kafka
//! requests a client sends before it is authenticated (ApiVersions,
//! SaslHandshake, SaslAuthenticate) answered the way a broker with a
//! `SASL_SSL` listener answers them. [`TlsProxy::start_sasl_plain`] runs it
//! on each connection after the TLS handshake.
//!
//! [`TlsProxy::start_sasl_plain`]: crate::tls::TlsProxy::start_sasl_plain

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The one user a SASL proxy accepts.
#[derive(Clone, Debug)]
pub struct PlainCredentials {
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

/// Serves the client's requests until it authenticates: `Ok(true)` once it
/// did with `credentials` (the connection is then the broker's), `Ok(false)`
/// when it failed (the client has been told why; close the connection).
pub async fn authenticate(
    client: &mut (impl AsyncRead + AsyncWrite + Unpin),
    broker: &mut (impl AsyncRead + AsyncWrite + Unpin),
    credentials: &PlainCredentials,
) -> io::Result<bool> {
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
                let mechanism = reader.string()?;
                let error = if mechanism == "PLAIN" {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                let mut response = Vec::new();
                response.extend(correlation_id.to_be_bytes());
                response.extend(error.to_be_bytes());
                response.extend(1i32.to_be_bytes());
                push_string(&mut response, "PLAIN");
                client.write_all(&frame(&response)).await?;
                if error != 0 {
                    return Ok(false);
                }
            }
            SASL_AUTHENTICATE => {
                reader.nullable_string()?; // client id
                let token = reader.bytes()?;
                // authzid NUL authcid NUL password (RFC 4616).
                let mut parts = token.split(|b| *b == 0);
                let _authzid = parts.next();
                let accepted = parts.next() == Some(credentials.username.as_bytes())
                    && parts.next() == Some(credentials.password.as_bytes())
                    && parts.next().is_none();
                let mut response = Vec::new();
                response.extend(correlation_id.to_be_bytes());
                if accepted {
                    response.extend(0i16.to_be_bytes());
                    response.extend((-1i16).to_be_bytes()); // no error message
                } else {
                    response.extend(SASL_AUTHENTICATION_FAILED.to_be_bytes());
                    // What a Kafka broker's PLAIN authenticator says.
                    push_string(
                        &mut response,
                        "Authentication failed: Invalid username or password",
                    );
                }
                response.extend(0i32.to_be_bytes()); // no auth bytes back
                if api_version >= 1 {
                    response.extend(0i64.to_be_bytes()); // session lifetime: none
                }
                client.write_all(&frame(&response)).await?;
                client.flush().await?;
                return Ok(accepted);
            }
            // A broker refuses other requests before authentication.
            _ => return Ok(false),
        }
    }
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
