//! OTLP over gRPC, by hand: a unary call is an HTTP/2 `POST` to
//! `/opentelemetry.proto.collector.{signal}.v1.{Service}/Export` whose body
//! is one length-prefixed message (a compressed flag byte, a 4-byte
//! big-endian length, the protobuf bytes, gzipped when the flag is set and
//! `grpc-encoding: gzip` says so); the answer is one such message followed
//! by trailers carrying `grpc-status`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame};
use hyper::header::{HeaderMap, HeaderValue};

use super::Signal;

/// The signal a gRPC path exports, if it is one of the collector's.
pub(super) fn signal_of(path: &str) -> Option<Signal> {
    match path {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Some(Signal::Metrics),
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
        _ => None,
    }
}

/// The message of a request body, and whether its flag said compressed.
/// `grpc_encoding` is the request's `grpc-encoding` header.
pub(super) fn unframe(body: &[u8], grpc_encoding: &str) -> Result<(Vec<u8>, bool), String> {
    let [flag, a, b, c, d, message @ ..] = body else {
        return Err(format!(
            "a gRPC body of {} bytes has no frame header",
            body.len()
        ));
    };
    let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if message.len() != length {
        return Err(format!(
            "the frame says {length} bytes, the body has {} after the header",
            message.len()
        ));
    }
    match (flag, grpc_encoding) {
        (0, _) => Ok((message.to_vec(), false)),
        (1, "gzip") => super::gunzip(message).map(|message| (message, true)),
        (1, other) => Err(format!("a compressed message with grpc-encoding {other:?}")),
        (other, _) => Err(format!("compressed flag {other}")),
    }
}

/// A gRPC answer: `message` framed, then `grpc-status: 0`; or, for an
/// `error`, trailers only with `grpc-status: 3` (invalid argument).
pub(super) fn answer(result: Result<Vec<u8>, String>) -> GrpcBody {
    let mut trailers = HeaderMap::new();
    let data = match result {
        Ok(message) => {
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let mut framed = Vec::with_capacity(message.len() + 5);
            framed.push(0);
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(&message);
            Some(Bytes::from(framed))
        }
        Err(error) => {
            trailers.insert("grpc-status", HeaderValue::from_static("3"));
            let message = HeaderValue::from_str(&error.replace(['\r', '\n'], " "))
                .unwrap_or_else(|_| HeaderValue::from_static("invalid request"));
            trailers.insert("grpc-message", message);
            None
        }
    };
    GrpcBody {
        data,
        trailers: Some(trailers),
    }
}

/// A response body of at most one data frame, then trailers.
#[derive(Debug)]
pub(super) struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}
