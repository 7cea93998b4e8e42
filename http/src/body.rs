//! The body of every response the server sends: whole, or a function's stream passed on chunk by
//! chunk as the function produces it (never buffered here).

use std::pin::Pin;
use std::task::Context;
use std::task::Poll;

use bytes::Bytes;
use functions_runtime::BodyStream;
use hyper::body::Frame;
use hyper::body::SizeHint;

/// A response body.
pub enum Body {
    /// All of it (`None` once sent).
    Full(Option<Bytes>),
    /// A function's `ReadableStream`.
    Stream(BodyStream),
}

impl Body {
    /// A whole body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }
}

/// Why a streamed body stopped early: the function's stream failed.
#[derive(Debug, thiserror::Error)]
#[error("the function's response stream failed: {0}")]
pub struct StreamFailed(String);

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = StreamFailed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamFailed>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::Stream(stream) => stream.poll_next(cx).map(|chunk| {
                chunk.map(|chunk| {
                    chunk
                        .map(|bytes| Frame::data(Bytes::from(bytes)))
                        .map_err(StreamFailed)
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}
